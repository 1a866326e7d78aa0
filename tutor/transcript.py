"""The whole conversation of a stored problem, turn by turn, for the HTML export.

    from tutor.transcript import conversation_turns, conversation_html
    turns = conversation_turns(store.get_problem(user, pid))   # [{"kind", "role", "text"}, ...] in order
    section = conversation_html(turns, "en")                   # <section> of the export page

``conversation_turns`` reads the problem's messages in order and names each one by the mode of the
attempt it belongs to (the student's turn takes the kind of the tutor's reply that follows it):
``solve``, ``hint``, ``check``, ``followup``, ``practice`` (the practice problem) and
``practice_answer`` (the student's answer to it and the verdict, stored on the practice attempt); a
student message takes the kind of the words the tutor stored for it ("Hint 2", "My answer: x"), and
a reply the tutor wrote without an attempt (a check found correct at once) the kind of the student
message before it. The first student message (the question, shown above the conversation) is left
out, and so is the solve reply the export already shows as its solution (``skip_attempt``).

``conversation_html`` renders every turn with :func:`tutor.render.to_mathml_html`: math becomes
MathML and everything else, the student's text included, is escaped, so ``<img src=x>`` typed by a
student is shown as those characters. Labels are in the export's language (``zh`` or ``en``).
"""

from __future__ import annotations

import html
import re
from typing import Any

from tutor import replies
from tutor.render import to_mathml_html
from tutor.session import _words

KINDS = ("solve", "hint", "check", "followup", "practice", "practice_answer")

_LABELS = {
    "en": {"title": "Conversation", "student": "Student", "tutor": "Tutor",
           "solve": "Solution", "hint": "Hint", "check": "Check my answer", "followup": "Follow-up",
           "practice": "Practice problem", "practice_answer": "Answer to the practice problem"},
    "zh": {"title": "对话记录", "student": "学生", "tutor": "助教",
           "solve": "解答", "hint": "提示", "check": "批改答案", "followup": "追问",
           "practice": "练习题", "practice_answer": "练习题作答"},
}  # fmt: skip

CSS = """
section.conversation .turn { margin: .6rem 0; padding: .4rem .7rem; border-radius: 6px; }
section.conversation .turn.user { background: #eef4ff; }
section.conversation .turn.assistant { background: #f6f6f6; }
section.conversation .who { font-size: .8rem; color: #666; margin: 0 0 .2rem; }
"""


def _lang(lang: Any) -> str:
    return "zh" if str(lang or "").lower().startswith("zh") else "en"


def _user_kind(text: str) -> str:
    """The mode a student message asked for, from the words the tutor stores for it ("Hint 2", "My answer: x",
    "Practice problem", in either language); anything else is a follow-up question."""
    text = (text or "").strip()
    for lang in ("en", "zh"):
        w = _words(lang)
        if text.startswith(w["my_answer"].strip()):
            return "check"
        if re.fullmatch(re.escape(w["hint"]) + r"\s*\d+", text):
            return "hint"
        if text == replies.say("practice_request", lang):
            return "practice"
    return "followup"


def conversation_turns(problem: Any, skip_attempt: int | None = None) -> list[dict]:
    """The turns of a stored problem (``tutor.store.ProblemInfo``) after its question, in order: dicts
    with ``kind`` (one of ``KINDS``), ``role`` ("user"/"assistant") and ``text``. ``skip_attempt``: the
    attempt whose reply is shown elsewhere (the export's solution)."""
    modes = {a.id: a.mode for a in getattr(problem, "attempts", ())}
    messages = [m for m in getattr(problem, "messages", ()) if m.role in ("user", "assistant")]
    if messages and messages[0].role == "user":
        messages = messages[1:]  # the question itself, shown above the conversation
    turns: list[dict] = []
    answered: set[int] = set()  # practice attempts whose problem is already in the turns
    last_user = "followup"
    for m in messages:
        mode = modes.get(m.attempt_id) if m.attempt_id is not None else None
        if m.role == "user":
            # the answer to a practice problem is stored on the practice attempt
            last_user = "practice_answer" if mode == "practice" else _user_kind(m.content)
            turns.append({"kind": last_user, "role": "user", "text": m.content})
            continue
        kind = mode if mode in KINDS else last_user  # a reply the tutor wrote without a model run
        if mode == "practice":
            kind = "practice_answer" if m.attempt_id in answered else "practice"
            answered.add(m.attempt_id)
        if m.attempt_id is None or m.attempt_id != skip_attempt:
            turns.append({"kind": kind, "role": "assistant", "text": m.content})
    return turns


def conversation_html(turns: Any, lang: str) -> str:
    """The export's conversation section ("" when there are no turns); never raises on content."""
    if not isinstance(turns, list | tuple) or not turns:
        return ""
    labels = _LABELS[_lang(lang)]
    out = [f'<section class="conversation"><style>{CSS}</style><h2>{labels["title"]}</h2>']
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        role = "user" if turn.get("role") == "user" else "assistant"
        kind = turn.get("kind") if turn.get("kind") in KINDS else "followup"
        who = labels["student" if role == "user" else "tutor"]
        out.append(f'<div class="turn {role} {kind}"><p class="who">{html.escape(who)} · '
                   f'{html.escape(labels[kind])}</p>{to_mathml_html(str(turn.get("text") or ""))}</div>')
    out.append("</section>")
    return "\n".join(out)
