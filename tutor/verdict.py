"""Confidence-aware verdicts for "Check my answer": correct, incorrect, or "I'm not sure".

The tutor's reference answer is only as good as the model's candidates. This module judges a
student's answer against those candidates (their extracted final answers, grouped by
``tutor.answers.equivalent``, with reward scores when every one has one) and says how sure it is:

    from tutor.verdict import Cand, judge
    cands = [Cand("2", shown=True), Cand("x=2"), Cand("5"), Cand("2", reward=None), Cand("")]
    v = judge(cands, "x = 2")
    v.verdict, v.confidence.level            # ('correct', 'strong'): 3 of 5 agree on 2
    v.headline("en")                         # 'Correct! Your answer $x = 2$ agrees with ... (3 of 5 ...).'
    v.to_json()                              # what Tutor.check stores on the attempt (sampling["verdict"])

Confidence (``Confidence.level``):

- ``strong``: a gold answer (the problem's own, or the drill family's exact one, ``source``), or at
  least ``MIN_CANDIDATES`` candidates of which more than half (``share``) agree on the reference,
  and, when there are reward scores, the reward ranks the same group first.
- ``weak``: a reference exists but not like that (one candidate, no majority, reward and votes
  disagreeing). ``Tutor.check`` then solves again with ``RESOLVE_N`` more candidates first.
- ``none``: no candidate has a final answer.

The reference is the best group: by the log-sum-exp of its members' rewards (``engine.rerank``'s
``reward+vote``: a Bradley-Terry strength) when every answered candidate has a score, else by size;
ties go to the group of the answer the tutor showed (``Cand.shown``), then to the first.
``margin`` is that score minus the next group's (None without scores or without a rival group).

Verdict rules, in order:

1. no student answer to read, or no reference at all: ``unsure``;
2. a gold answer: ``correct`` when equivalent, else ``incorrect`` (certain: gold is the truth);
3. the student's answer equals the answer the tutor showed, or the reference, and the
   confidence is not strong: ``unsure`` -- never ``incorrect`` (an answer equal to the tutor's own is
   never called wrong);
4. strong: ``correct`` when it equals the reference, else ``incorrect`` (also for a minority group);
5. weak: ``unsure`` (the student's answer matches a minority group, or none, of an unsure tutor).

The headline (``Verdict.headline(lang)``) is the tutor's own words, in the reply language only, and
always agrees with the verdict; the reference is shown as a clean answer (``show_answer``), never
as the model's sentence. Pure Python: no model, no engine import.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tutor.answers import equivalent, extract_final

VERDICTS = ("correct", "incorrect", "unsure")
LEVELS = ("strong", "weak", "none")
SOURCES = ("gold", "drill", "candidates", "none")
MIN_CANDIDATES = 3  # a strong reference needs at least this many candidates ...
MAJORITY = 0.5  # ... and more than this share of them agreeing on it
RESOLVE_N = 4  # more candidates solved when the reference is weak (capped by tutor.limits.MAX_N)
SHORT_TEXT, MAX_THINKING = 120, 2000  # a solution this short is shown with its thinking, when that is short
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_FULLWIDTH = str.maketrans("：，；（）＝＋－", ":,;()=+-")


@dataclass(frozen=True)
class Cand:
    """What the verdict needs of one candidate solution (``tutor.store.CandidateInfo`` or
    ``engine.core.Candidate`` through :func:`cands_from`)."""

    answer: str  # the extracted final answer; "" when it gave none (or never finished its thinking)
    reward: float | None = None
    shown: bool = False  # the answer the tutor showed the student (the latest solve's chosen candidate)
    text: str = ""  # its answer part (the worked solution), for the step-by-step check
    thinking: str = ""  # its thinking, shown with a short answer part (a small model's steps are there)


@dataclass
class AnswerGroup:
    """Candidates (by position) whose final answers are equivalent."""

    answer: str  # the first member's answer
    members: list[int]
    score: float | None = None  # log-sum-exp of the members' rewards, when every candidate has one
    shown: bool = False

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class Confidence:
    level: str  # "strong" | "weak" | "none"
    n: int  # candidates considered
    agree: int  # candidates in the reference group
    share: float  # agree / n
    margin: float | None  # reward margin of the reference group over the next one
    reasons: tuple[str, ...]  # codes: gold, drill, majority, single, few, no_majority, reward_disagrees, no_answer


@dataclass
class Verdict:
    verdict: str  # "correct" | "incorrect" | "unsure"
    confidence: Confidence
    source: str  # where the reference came from: "gold" | "drill" | "candidates" | "none"
    reference: str | None  # the reference final answer (raw; show it with show_answer)
    student: str  # the student's final answer as read ("" when none could be read)
    student_group: int | None  # the candidate group the student's answer equals (None: none)
    groups: list[AnswerGroup] = field(default_factory=list)
    shown: str | None = None  # the answer the tutor showed
    shown_wrong: bool = False  # a gold answer disagrees with the answer the tutor showed
    resolved: int = 0  # candidates solved again for this verdict (Tutor.check sets it)

    @property
    def certain(self) -> bool:
        return self.verdict in ("correct", "incorrect")

    def headline(self, lang: str) -> str:
        """The verdict in the tutor's words, in ``lang`` only (see :func:`headline`)."""
        return headline(self, lang)

    def to_json(self) -> dict:
        """The stored form (JSON): the verdict, its confidence and reasons, the answers compared."""
        c = self.confidence
        return {"verdict": self.verdict, "confidence": c.level, "reasons": list(c.reasons), "n": c.n,
                "agree": c.agree, "share": round(c.share, 4), "margin": None if c.margin is None else round(c.margin, 4),
                "source": self.source, "reference": self.reference, "student": self.student,
                "student_group": self.student_group, "groups": [[g.answer, g.size] for g in self.groups],
                "shown": self.shown, "resolved": self.resolved}


def cands_from(candidates: Sequence[Any], shown: bool = False) -> list[Cand]:
    """``Cand``s from stored or engine candidates (anything with ``answer``, optional ``reward``,
    ``text``, ``truncated``, ``chosen``). ``shown``: mark the chosen one as the answer shown."""
    out = []
    for c in candidates:
        answer = "" if getattr(c, "truncated", False) else (getattr(c, "answer", "") or "").strip()
        out.append(Cand(answer, getattr(c, "reward", None), shown and bool(getattr(c, "chosen", False)),
                        getattr(c, "text", "") or "", getattr(c, "thinking", "") or ""))
    return out


def show_answer(answer: str | None) -> str:
    """A final answer as the page shows it: ``$...$`` math (no box, no ``$`` inside, ASCII
    punctuation), or the plain words for a text answer."""
    s = (answer or "").strip()
    m = re.fullmatch(r"\\(?:boxed|fbox)\s*\{(.*)\}", s, re.S)
    if m:
        s = m.group(1).strip()
    s = s.replace("$", "").strip().rstrip("。.，,;；")
    if not s:
        return ""
    if _CJK.search(s) or re.fullmatch(r"[A-Za-z][A-Za-z ]{3,}", s):
        return s
    return f"${s.translate(_FULLWIDTH)}$"


def _logsumexp(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return -math.inf
    top = max(finite)
    return top if math.isinf(top) else top + math.log(sum(math.exp(v - top) for v in finite))


def group(cands: Sequence[Cand], equal: Callable[[str, str], bool] = equivalent) -> list[AnswerGroup]:
    """Groups of equivalent final answers, best first: by reward (log-sum-exp) when every answered
    candidate has a score, else by size; ties: the shown answer's group, then the first to appear."""
    groups: list[AnswerGroup] = []
    for i, c in enumerate(cands):
        if not c.answer:
            continue
        for g in groups:
            if c.answer == g.answer or equal(g.answer, c.answer):
                g.members.append(i)
                g.shown = g.shown or c.shown
                break
        else:
            groups.append(AnswerGroup(c.answer, [i], shown=c.shown))
    scored = bool(groups) and all(cands[i].reward is not None for g in groups for i in g.members)
    if scored:
        for g in groups:
            g.score = _logsumexp([float(cands[i].reward) for i in g.members])
    groups.sort(key=lambda g: (-(g.score if g.score is not None and not math.isnan(g.score) else -math.inf)
                               if scored else 0, -g.size, not g.shown, g.members[0]))
    return groups


def confidence(cands: Sequence[Cand], groups: Sequence[AnswerGroup]) -> Confidence:
    """How far the best group of ``groups`` can be trusted as the reference (see the module docstring)."""
    n = len(cands)
    if not groups:
        return Confidence("none", n, 0, 0.0, None, ("no_answer",))
    ref = groups[0]
    share = ref.size / n if n else 0.0
    margin = None
    if ref.score is not None and len(groups) > 1:
        margin = ref.score - groups[1].score
    by_size = max(groups, key=lambda g: g.size)
    reasons: list[str] = []
    if n == 1:
        reasons.append("single")
    elif n < MIN_CANDIDATES:
        reasons.append("few")
    if share <= MAJORITY and n > 1:
        reasons.append("no_majority")
    if ref.score is not None and by_size.size > ref.size:
        reasons.append("reward_disagrees")
    if not reasons:
        return Confidence("strong", n, ref.size, share, margin, ("majority",))
    return Confidence("weak", n, ref.size, share, margin, tuple(reasons))


def _student(answer: str) -> str:
    answer = (answer or "").strip()
    return (extract_final(answer) or answer).strip() if answer else ""


def judge(cands: Sequence[Cand], student_answer: str, *, gold: str | None = None, gold_source: str = "gold",
          equal: Callable[[str, str], bool] = equivalent) -> Verdict:
    """The verdict on ``student_answer`` given the candidates (and a gold answer, when the tutor knows
    one: ``gold_source`` "gold" for the problem's own, "drill" for the drill family's exact answer)."""
    given = _student(student_answer)
    groups = group(cands, equal)
    shown_group = next((g for g in groups if g.shown), None)
    shown = shown_group.answer if shown_group else None
    sg = next((k for k, g in enumerate(groups) if given and equal(g.answer, given)), None) if given else None
    if gold:
        conf = Confidence("strong", len(cands), groups[0].size if groups else 0, 0.0, None, (gold_source,))
        ok = bool(given) and equal(gold, given)
        verdict = "correct" if ok else ("incorrect" if given else "unsure")
        wrong_shown = shown is not None and not equal(gold, shown)
        return Verdict(verdict, conf, gold_source, gold, given, sg, groups, shown, wrong_shown)
    conf = confidence(cands, groups)
    if conf.level == "none" or not given:
        return Verdict("unsure", conf, "none" if conf.level == "none" else "candidates",
                       groups[0].answer if groups else None, given, sg, groups, shown)
    ref = groups[0]
    equals_ref = sg == 0
    equals_shown = sg is not None and groups[sg].shown
    if conf.level == "strong":
        verdict = "correct" if equals_ref else "incorrect"
        if verdict == "incorrect" and equals_shown:  # never wrong when it equals the tutor's own answer
            verdict = "unsure"
    else:
        verdict = "unsure"
    return Verdict(verdict, conf, "candidates", ref.answer, given, sg, groups, shown)


def needs_resolve(v: Verdict) -> bool:
    """Whether ``Tutor.check`` should solve again with more candidates before giving ``v``."""
    return v.source in ("candidates", "none") and v.confidence.level != "strong"


RESOLVE = "resolve"  # Attempt.sampling["purpose"] of a check's extra solve


def reference_pool(attempts: Sequence[Any]) -> tuple[list[Cand], bool]:
    """The candidates the reference comes from, over stored attempts (``AttemptInfo``-like, oldest
    first): the latest solve that has candidates (its chosen one is the answer shown), then every
    extra solve a check made after it (``sampling["purpose"] == RESOLVE``). Also whether such an
    extra solve was made already (then a check does not solve again)."""
    start = next((k for k in range(len(attempts) - 1, -1, -1)
                  if attempts[k].mode == "solve" and attempts[k].candidates), None)
    pool: list[Cand] = []
    resolved = False
    for a in attempts[start or 0:]:
        if a.mode == "solve" and start is not None and a is attempts[start]:
            pool += cands_from(a.candidates, shown=True)
        elif a.mode == "check" and (a.sampling or {}).get("purpose") == RESOLVE:
            pool += cands_from(a.candidates)
            resolved = True
    return pool, resolved


_VERDICT_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{\s*(?:\\text\s*\{)?\s*(correct|incorrect|正确|不正确|错误)\s*\}?\s*\}",
                          re.I)
_SAID = {"correct": "correct", "incorrect": "incorrect", "正确": "correct", "不正确": "incorrect", "错误": "incorrect"}


def model_check(text: str, said: str, v: Verdict, lang: str,
                equal: Callable[[str, str], bool] = equivalent) -> str | None:
    """The model's check reply (``text``, its extracted final answer ``said``) made ready to show under
    the verdict ``v``: its boxed verdict written as a word of ``lang``. None when it must not be shown:
    empty, in Chinese for an English reply, or contradicting a sure verdict (the opposite verdict, or
    a final answer other than the reference)."""
    text = (text or "").strip()
    said = re.sub(r"^\\text\s*\{(.*)\}$", r"\1", (said or "").strip()).strip()
    model = _SAID.get(said.lower()) or _SAID.get(said)
    if v.certain and model is not None and model != v.verdict:
        return None
    if v.certain and model is None and said and v.reference and not equal(v.reference, said):
        return None
    if lang == "en" and text:
        letters = [ch for ch in text if ch.isalpha()]
        if letters and sum(1 for ch in letters if _CJK.match(ch)) > 0.3 * len(letters):
            return None
    text = _VERDICT_BOX.sub(lambda m: "**" + words("said_" + _said(m.group(1)), lang) + "**", text)
    return text.strip() or None


def _said(word: str) -> str:
    return _SAID.get(word.lower()) or _SAID.get(word) or "incorrect"


def solution_text(v: Verdict, cands: Sequence[Cand], lang: str) -> str | None:
    """A worked solution of the reference group (the shown candidate first), usable in ``lang``; None
    when there is none."""
    if v.source != "candidates" or not v.groups:
        return None
    members = sorted(v.groups[0].members, key=lambda i: not cands[i].shown)
    for i in members:
        c = cands[i]
        steps = c.text.strip()
        if len(steps) < SHORT_TEXT and c.thinking.strip() and len(c.thinking) <= MAX_THINKING:
            steps = f"{c.thinking.strip()}\n\n{steps}"
        text = model_check(steps, "", v, lang)
        if text:
            return text
    return None


# ------------------------------------------------------------------------------------ the words

_WORDS = {
    "en": {
        "correct": "Correct!",
        "incorrect": "Not correct.",
        "unsure": "I'm not sure — let's check it step by step.",
        "agrees": "Your answer {s} agrees with the tutor's answer",
        "answer_is": "The answer is {r}",
        "yours_none": "your answer {s} matches none of the tutor's solutions.",
        "yours_wrong": "your answer is {s}.",
        "yours_minority": "your answer {s} is given by only {k} of {n} of the tutor's solutions.",
        "yours_shown_wrong": "The answer I showed earlier ({a}) was wrong.",
        "gold": "(the problem's given answer)",
        "drill": "(worked out exactly by the tutor)",
        "support": "({k} of {n} of the tutor's solutions agree{m})",
        "margin": "; reward margin {m:.2f}",
        "single": "only one solution was written, so I cannot compare it with others",
        "few": "only {n} solutions were written",
        "no_majority": "the tutor's solutions do not agree: the most supported answer, {r}, has {k} of {n}",
        "reward_disagrees": "the reward model prefers {r}, but more solutions give {b}",
        "no_answer": "none of the tutor's {n} solutions reached a clear final answer",
        "no_student": "I could not read a final answer in what you typed",
        "weak_match": "Your answer {s} agrees with the tutor's most supported answer, but {why}.",
        "weak_minority": "Your answer {s} matches a solution the tutor wrote, but {why}.",
        "weak_none": "Your answer {s} differs from the tutor's answer {r}, but {why}.",
        "why": "Why: {why}.",
        "resolved": "(Before judging, I solved the problem again with {k} more solutions.)",
        "shown_minority": "Your answer {s} is the answer I showed earlier, but now most of my solutions give {r} "
                          "({k} of {n}).",
        "step_model": "The model's step-by-step check of your work:",
        "step_solution": "The tutor's solution (answer {r}), to compare with yours step by step:",
        "step_drill": "The worked solution, step by step:",
        "step_none": "Check it yourself: put your answer back into the problem and redo each step.",
        "said_correct": "correct",
        "said_incorrect": "incorrect",
    },
    "zh": {
        "correct": "回答正确！",
        "incorrect": "答案不正确。",
        "unsure": "我不确定——我们一步一步来检查。",
        "agrees": "你的答案 {s} 与辅导程序的答案一致",
        "answer_is": "正确答案是 {r}",
        "yours_none": "你的答案 {s} 与辅导程序的所有解答都不同。",
        "yours_wrong": "你的答案是 {s}。",
        "yours_minority": "你的答案 {s} 只在辅导程序的 {n} 个解答中出现了 {k} 次。",
        "yours_shown_wrong": "我之前给出的答案（{a}）是错的。",
        "gold": "（题目给定的答案）",
        "drill": "（由辅导程序精确算出）",
        "support": "（辅导程序的 {n} 个解答中有 {k} 个一致{m}）",
        "margin": "；奖励分差 {m:.2f}",
        "single": "只有一个解答，无法与其他解答比较",
        "few": "只有 {n} 个解答",
        "no_majority": "辅导程序的解答不一致：得票最多的答案 {r} 只占 {n} 个中的 {k} 个",
        "reward_disagrees": "奖励模型更看好 {r}，但更多的解答给出 {b}",
        "no_answer": "辅导程序的 {n} 个解答都没有给出明确的最终答案",
        "no_student": "我没能从你输入的内容里读出最终答案",
        "weak_match": "你的答案 {s} 与辅导程序得票最多的答案一致，但{why}。",
        "weak_minority": "你的答案 {s} 与辅导程序的某个解答一致，但{why}。",
        "weak_none": "你的答案 {s} 与辅导程序的答案 {r} 不同，但{why}。",
        "why": "原因：{why}。",
        "resolved": "（判断之前，我又多解了 {k} 遍这道题。）",
        "shown_minority": "你的答案 {s} 是我之前给出的答案，但现在我的大多数解答给出 {r}（{n} 个中有 {k} 个）。",
        "step_model": "模型对你的解答的逐步检查：",
        "step_solution": "辅导程序的解答（答案 {r}），请逐步与你的解答对照：",
        "step_drill": "逐步解题过程：",
        "step_none": "请自己检查：把你的答案代回原题，逐步验算。",
        "said_correct": "正确",
        "said_incorrect": "不正确",
    },
}


def words(key: str, lang: str, **kw: Any) -> str:
    """One of the verdict's sentences in ``lang`` (``zh`` unless it is ``en``)."""
    text = _WORDS["en" if lang == "en" else "zh"][key]
    return text.format(**kw) if kw else text


def _why(v: Verdict, lang: str) -> str:
    c, g = v.confidence, v.groups
    sep = "; " if lang == "en" else "；"
    parts = []
    for code in c.reasons:
        if code == "no_majority":
            parts.append(words(code, lang, r=show_answer(g[0].answer), k=c.agree, n=c.n))
        elif code == "reward_disagrees":
            parts.append(words(code, lang, r=show_answer(g[0].answer),
                               b=show_answer(max(g, key=lambda x: x.size).answer)))
        elif code in ("single", "few", "no_answer"):
            parts.append(words(code, lang, n=c.n))
    return sep.join(parts)


def headline(v: Verdict, lang: str) -> str:
    """The verdict's first lines in ``lang``: the verdict word (the same as ``v.verdict``), the answers
    compared (clean, via :func:`show_answer`) and why the tutor is (not) sure. Never the other
    language and never a claim the verdict does not make."""
    lang = "en" if lang == "en" else "zh"
    c = v.confidence
    s, r = show_answer(v.student) or "—", show_answer(v.reference)
    end = "." if lang == "en" else "。"
    if v.source in ("gold", "drill"):
        support = words(v.source, lang)
    else:
        m = words("margin", lang, m=c.margin) if c.margin is not None else ""
        support = words("support", lang, k=c.agree, n=c.n, m=m)
    lines = [words(v.verdict, lang)]
    sp = " " if lang == "en" else ""
    if v.verdict == "correct":
        lines.append(f"{words('agrees', lang, s=s)}{sp}{support}{end}")
    elif v.verdict == "incorrect":
        sep = "; " if lang == "en" else "；"
        theirs = (words("yours_minority", lang, s=s, k=v.groups[v.student_group].size, n=c.n)
                  if v.student_group is not None and v.source == "candidates" else words("yours_none", lang, s=s))
        if v.source != "candidates":
            theirs = words("yours_wrong", lang, s=s)
        lines.append(f"{words('answer_is', lang, r=r)}{sp}{support}{sep}{theirs}")
    elif not v.student:
        lines.append(words("no_student", lang) + end)
    elif c.level == "none":
        lines.append(words("why", lang, why=words("no_answer", lang, n=c.n)))
    elif c.level == "strong":  # sure of another answer, but the student's is the one shown before
        lines.append(words("shown_minority", lang, s=s, r=r, k=c.agree, n=c.n))
    else:
        why = _why(v, lang)
        if v.student_group == 0:
            lines.append(words("weak_match", lang, s=s, why=why))
        elif v.student_group is not None:
            lines.append(words("weak_minority", lang, s=s, why=why))
        else:
            lines.append(words("weak_none", lang, s=s, r=r, why=why))
    if v.shown_wrong and v.shown:
        lines.append(words("yours_shown_wrong", lang, a=show_answer(v.shown)))
    if v.resolved:
        lines.append(words("resolved", lang, k=v.resolved))
    joiner = " " if lang == "en" else ""
    return lines[0] + "\n\n" + joiner.join(lines[1:]) if len(lines) > 1 else lines[0]
