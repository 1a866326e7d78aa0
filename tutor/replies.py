"""What the tutor says in its own words when a mode is answered from the drill family, or when the
model's reply to a hint, practice or follow-up cannot be used as it is.

    from tutor import replies
    replies.drill_hint(problem, level=1, source="example", lang="en")   # 'Hint 1 of 2: 4x=12-4=8.'
    replies.usable_hint("The answer is \\\\boxed{?}.")                   # False: it says nothing
    replies.practice_unusable(candidate, "zh")                          # why the model's practice failed
    replies.truncated_note("en")                                        # the reply hit the token limit

Used by ``tutor.session`` (the modes); pure text, no model. Every reply is in the problem's reply
language (``zh`` or ``en``). Run its tests with ``python -m pytest tests/tutor/test_drills.py -q``.
"""

from __future__ import annotations

import re
from typing import Any

from tutor import drills

_SAY = {
    "en": {
        "practice_request": "Practice problem",
        "hint_of": "Hint {k} of {n}: {hint}",
        "hint_last": "That was every step (hint {n} of {n}): {hint} Now finish it yourself.",
        "read_as": "I read the photo as: {statement}. If that is not your problem, type it in the question box.",
        "no_hint_small": "This small model cannot give hints for this problem: it only solves its own drill "
                         "problems (addition, ax+b=c, fractions, f(x)=ax+b), and its reply had no usable hint.",
        "no_hint": "The model's reply was not a usable hint (it gave no step to take). Please try again.",
        "no_hint_length": "The model's hint stopped at the token limit before it said anything usable. "
                          "Please try again.",
        "practice_same": "A practice problem of the same kind (made by the tutor; I check your answer exactly):",
        "practice_any": "A practice problem of the kind this small model was trained on (made by the tutor; "
                        "I check your answer exactly):",
        "practice_fallback": "The model's practice problem could not be used ({why}), so here is one of the "
                             "same kind made by the tutor:",
        "practice_bad": "Could not make a practice problem: {why}. Please try again.",
        "why_length": "its reply stopped at the token limit",
        "why_markers": "its reply did not have the “{p}” and “{s}” sections",
        "why_empty": "its reply was empty",
        "followup_small": "This small model cannot discuss a problem; it only solves its own drill problems. "
                          "Here is the worked solution of {statement}, step by step:",
        "followup_small_note": "(This small model only solves its own drill problems: addition, ax+b=c, "
                               "fractions, f(x)=ax+b. It cannot explain other problems or answer questions.)",
        "truncated": "(The reply stopped at the token limit, so it is incomplete.)",
    },
    "zh": {
        "practice_request": "练习题",
        "hint_of": "提示 {k}/{n}：{hint}",
        "hint_last": "步骤已经全部给出（提示 {n}/{n}）：{hint} 请自己完成最后一步。",
        "read_as": "我把照片读成：{statement}。如果这不是你的题目，请把题目输入到题目框里。",
        "no_hint_small": "这个小模型无法为这道题给出提示：它只会解自己练过的题型（加法、ax+b=c、同分母分数、"
                         "f(x)=ax+b），这次的回复里也没有可用的提示。",
        "no_hint": "模型的回复不是可用的提示（没有给出下一步该做什么），请再试一次。",
        "no_hint_length": "模型的提示在达到长度上限时中断，没有给出可用的内容，请再试一次。",
        "practice_same": "同类练习题（由辅导程序出题，答案会严格核对）：",
        "practice_any": "这个小模型练过的题型的练习题（由辅导程序出题，答案会严格核对）：",
        "practice_fallback": "模型给出的练习题无法使用（{why}），下面是辅导程序出的一道同类题：",
        "practice_bad": "没能生成练习题：{why}。请再试一次。",
        "why_length": "回复在达到长度上限时中断",
        "why_markers": "回复里没有“{p}”和“{s}”两部分",
        "why_empty": "回复为空",
        "followup_small": "这个小模型无法讨论题目，只会解自己练过的题型。下面是 {statement} 的完整解题步骤：",
        "followup_small_note": "（这个小模型只会解自己练过的题型：加法、ax+b=c、同分母分数、f(x)=ax+b，"
                               "无法讲解其他题目或回答问题。）",
        "truncated": "（回复在达到长度上限时中断，内容不完整。）",
    },
}


def say(key: str, lang: str, **kw: Any) -> str:
    """One of the tutor's own sentences in ``lang`` (``zh`` unless it is ``en``)."""
    text = _SAY["en" if lang == "en" else "zh"][key]
    return text.format(**kw) if kw else text


def _statement(problem: drills.Problem) -> str:
    return " ".join(problem.lines)


def drill_hint(problem: drills.Problem, level: int, source: str, lang: str) -> str:
    """Hint ``level`` (1-based) of a drill problem: its next worked step, the final result left blank.
    ``source`` "read": the problem was known only from the model's reading of the photo, so the
    reading is shown with the hint (the student can tell a misread)."""
    ladder = drills.hints(problem)
    n = len(ladder)
    k = min(level, n)
    text = say("hint_of" if level < n else "hint_last", lang, k=k, n=n, hint=ladder[k - 1])
    if source == "read":
        text = say("read_as", lang, statement=_statement(problem)) + "\n\n" + text
    return text


_EMPTY_HINT = re.compile(
    r"(?i)\\(?:boxed|fbox)\s*\{[^{}]*\}|the\s+(?:final\s+)?answer\s+is|answer|最终答案|答案[是为]?|[?？…。.,，:：!！\s$]")


def usable_hint(text: str) -> bool:
    """Whether a model's hint (answer already blanked) says anything beyond "the answer is ?"."""
    return len(_EMPTY_HINT.sub("", text or "")) >= 4


def no_hint(lang: str, *, small: bool, truncated: bool) -> str:
    """Why there is no hint: a small model that cannot give one, or a reply that was unusable."""
    if small:
        return say("no_hint_small", lang)
    return say("no_hint_length" if truncated else "no_hint", lang)


def practice_intro(lang: str, same_kind: bool) -> str:
    return say("practice_same" if same_kind else "practice_any", lang)


def practice_unusable(candidate: Any, lang: str, markers: tuple[str, str]) -> str:
    """Why a model's practice reply could not be parsed into a problem and its solution."""
    if getattr(candidate, "finish_reason", "") == "length":
        return say("why_length", lang)
    if not (getattr(candidate, "text", "") or getattr(candidate, "thinking", "")).strip():
        return say("why_empty", lang)
    return say("why_markers", lang, p=markers[0].strip("# "), s=markers[1].strip("# "))


def drill_followup(problem: drills.Problem, source: str, lang: str) -> str:
    """A small model's follow-up on a drill problem: what it cannot do, and the worked solution."""
    head = say("followup_small", lang, statement=_statement(problem))
    if source == "read":
        head = say("read_as", lang, statement=_statement(problem)) + "\n\n" + head
    return head + "\n\n" + drills.worked_solution(problem)


def truncated_note(lang: str) -> str:
    return say("truncated", lang)
