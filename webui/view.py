"""Pure helpers that turn tutor/engine results into what the page shows (no Gradio import).

    from webui.view import stream_messages, result_messages, candidate_rows, explain_choice
    msgs = stream_messages(raw_text_so_far, "zh")     # thinking block (open) + answer so far
    live = LiveRender(); stream_messages(raw, "zh", live)   # the same, rendering only what is new
    msgs = result_messages(thinking, text, "zh")      # the finished turn (thinking folded)
    rows = candidate_rows(solution.candidates, solution.chosen, "en")

Chat messages are Gradio 6 "messages" dicts. The thinking is a message whose ``metadata`` has a
title and a status: ``"pending"`` keeps the block open while the model thinks, ``"done"`` folds it
once the answer starts. All model text goes through :func:`tutor.render.to_markdown`, so math
reaches the page with the delimiters the Chatbot's ``latex_delimiters`` know. While a turn streams,
:class:`LiveRender` keeps the Markdown of the paragraphs already complete, so an update renders the
current paragraph rather than the whole thinking again (which grew with every update: ~0.1 s for
100k characters on one CPU core, holding the GIL next to the model's decoding).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tutor.reasoning import CLOSE, split_reasoning
from tutor.render import split_segments, to_markdown
from tutor.sanitize import literal_text
from tutor.transcript import conversation_turns
from webui.i18n import CHOICES, t

LATEX_DELIMITERS = [
    {"left": "$$", "right": "$$", "display": True},
    {"left": "$", "right": "$", "display": False},
    {"left": "\\(", "right": "\\)", "display": False},
    {"left": "\\[", "right": "\\]", "display": True},
]

_MATHY = re.compile(r"^[\x20-\x7e]+$")  # printable ASCII: safe to put inside \boxed{} for KaTeX


# In prose, these may still find their partner in text not written yet (``$`` never looks past a
# blank line; a bare \boxed's braces, code spans and fences, display and bracket math may).
_MAY_CLOSE_LATER = ("\\(", "\\[", "$$", "`", "~~~", "\\boxed", "\\fbox")


class LiveText:
    """``to_markdown`` of a text that grows, with the same result, rendering only what is new.

    The part up to the last blank line is rendered once and kept when nothing in it is left open
    (no segment runs to its end, and its prose holds no opener from ``_MAY_CLOSE_LATER``); then
    ``to_markdown(kept + rest) == to_markdown(kept) + to_markdown(rest)``, since an inline ``$``
    never pairs across a blank line. Anything else, or a text that does not extend the last one,
    is rendered whole, as before."""

    def __init__(self) -> None:
        self._raw, self._md = "", ""

    def render(self, text: str) -> str:
        if not text.startswith(self._raw):
            self._raw, self._md = "", ""
        cut = text.rfind("\n\n") + 2
        if cut > len(self._raw) + 2:
            piece = text[len(self._raw):cut]
            segs = split_segments(piece)
            if segs and segs[-1].kind == "text" and not any(
                    s.kind == "text" and any(o in s.body for o in _MAY_CLOSE_LATER) for s in segs):
                self._md += to_markdown(piece)
                self._raw = text[:cut]
        return self._md + to_markdown(text[len(self._raw):])


class LiveRender:
    """The incremental renderers of one streamed turn: its thinking and its answer."""

    def __init__(self) -> None:
        self.thinking, self.answer = LiveText(), LiveText()


def thinking_message(thinking: str, lang: str, done: bool, live: LiveText | None = None) -> dict:
    """The collapsible thinking block: open while ``done`` is False, folded once the answer starts."""
    body = (live.render if live else to_markdown)(thinking.strip()) or t("thinking_dots", lang)
    return {"role": "assistant", "content": body,
            "metadata": {"title": t("thinking", lang), "status": "done" if done else "pending"}}


def stream_messages(raw: str, lang: str, live: LiveRender | None = None) -> list[dict]:
    """Assistant messages for raw model text streamed so far (thinking, ``</think>``, answer).
    ``live``: the turn's :class:`LiveRender`, to render only what is new since the last call."""
    if CLOSE not in raw:
        return [thinking_message(raw, lang, done=False, live=live and live.thinking)]
    r = split_reasoning(raw)
    msgs = [thinking_message(r.thinking, lang, done=True, live=live and live.thinking)]
    if r.answer.strip():
        msgs.append({"role": "assistant", "content": (live.answer.render if live else to_markdown)(r.answer)})
    return msgs


def result_messages(thinking: str, text: str, lang: str) -> list[dict]:
    """The finished turn: folded thinking (when there was any) and the reply."""
    msgs = [thinking_message(thinking, lang, done=True)] if thinking.strip() else []
    if thinking.strip() and text.strip() == thinking.strip():  # cut off while thinking: no answer part
        text = t("no_answer", lang)
    if text.strip():
        msgs.append({"role": "assistant", "content": to_markdown(text)})
    return msgs


def budget_note(solution: Any, lang: str) -> str:
    """What to say when the shown candidate hit its token budget with no final answer: it ran out of
    thinking budget (raise it), or the model's context was full (``engine.core`` cut the budget to the
    positions left). "" otherwise."""
    cands = list(getattr(solution, "candidates", None) or [])
    if not cands:
        return ""
    chosen = getattr(solution, "chosen", 0)
    c = next((c for c in cands if c.index == chosen), cands[0])
    if getattr(c, "finish_reason", "") != "length" or (c.answer and not c.truncated):
        return ""
    timings = getattr(solution, "timings", None) or {}
    budget = timings.get("max_new_tokens") or c.tokens
    if timings.get("context_limit"):
        return t("out_of_context", lang, context=timings["context_limit"], budget=budget)
    return t("out_of_budget_thinking" if c.truncated else "out_of_budget_answer", lang, budget=budget)


def with_note(messages: list[dict], note: str, lang: str) -> list[dict]:
    """``messages`` of a finished turn with ``note`` in place of the generic "stopped before an answer"
    line (or after the reply)."""
    if not note:
        return messages
    generic = to_markdown(t("no_answer", lang))
    kept = [m for m in messages if m.get("content") != generic or m.get("metadata")]
    return kept + [{"role": "assistant", "content": to_markdown(note)}]


def user_messages(text: str, image_paths: Sequence[str] = ()) -> list[dict]:
    """The student's turn: their photos (as files) and their text, shown as typed (HTML and Markdown
    markup escaped) with its math rendered."""
    msgs: list[dict] = [{"role": "user", "content": {"path": str(p)}} for p in image_paths]
    if text.strip():
        msgs.append({"role": "user", "content": to_markdown(text, literal=True)})
    return msgs


def as_text(s: Any) -> str:
    """Text from outside the project (the name a model server gives itself) for a Markdown component:
    shown as written, building no element, link or image."""
    return literal_text(str(s))


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s.replace("\\{", "").replace("\\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def answer_markdown(answer: str | None, lang: str) -> str:
    """The final-answer box: a boxed formula when the answer is plain math, else the text itself."""
    answer = (answer or "").strip()
    if not answer:
        return f"**{t('final', lang)}:** {t('no_final', lang)}"
    if "$" not in answer and "\\(" not in answer and _MATHY.match(answer) and _balanced(answer):
        shown = f"$\\boxed{{{answer}}}$"
    else:
        shown = answer
    return f"**{t('final', lang)}:** {to_markdown(shown)}"


def question_markdown(question: str, lang: str) -> str:
    """The problem as the student typed it, shown as text with its math rendered (an empty question
    shows nothing)."""
    return f"**{t('asked', lang)}:** {to_markdown(question, literal=True)}" if question.strip() else ""


def answer_box(question: str, answer: str | None, lang: str, note: str = "") -> str:
    """The panel under the chat: the problem as typed (when there is text) and the final answer (or,
    with no answer, ``note``: why, e.g. :func:`budget_note`)."""
    final = answer_markdown(answer, lang) if (answer or "").strip() or not note else \
        f"**{t('final', lang)}:** {to_markdown(note)}"
    return "\n\n".join(p for p in (question_markdown(question, lang), final) if p)


def _reward(c: Any) -> str:
    r = getattr(c, "reward", None)
    return "" if r is None else f"{r:.3g}"


def candidate_rows(candidates: Sequence[Any], chosen: int, lang: str) -> list[list[Any]]:
    """One table row per candidate: index (1-based), answer, reward, group, tokens, finish, chosen mark."""
    rows = []
    for c in candidates:
        group = getattr(c, "group", None)
        rows.append([
            c.index + 1, c.answer or "—", _reward(c), "" if group is None else group + 1,
            getattr(c, "tokens", ""), getattr(c, "finish_reason", ""), "✓" if c.index == chosen else "",
        ])
    return rows


def candidate_headers(lang: str) -> list[str]:
    return t("cand_cols", lang).split("|")


def explain_choice(candidates: Sequence[Any], chosen: int, lang: str) -> str:
    """Why ``chosen`` won: reward score within the largest group, answer agreement, or no answers."""
    if not candidates:
        return ""
    by_index = {c.index: c for c in candidates}
    best = by_index.get(chosen, candidates[0])
    n = len(candidates)
    if not best.answer:
        return t("why_none", lang, i=best.index + 1)
    group = getattr(best, "group", None)
    k = sum(1 for c in candidates if group is not None and getattr(c, "group", None) == group) or 1
    if getattr(best, "reward", None) is not None:
        return t("why_reward", lang, i=best.index + 1, score=best.reward, k=k, n=n)
    return t("why_group", lang, i=best.index + 1, k=k, n=n)


def solution_notes(solution: Any, lang: str) -> str:
    """The engine's notes on a solution (``Solution.notes``: e.g. the reward server failed, so the answer
    was chosen by agreement), one per line in the page language; "" when there are none."""
    notes = getattr(solution, "notes", None) or []
    return "\n\n".join(f"⚠ {to_markdown(n.get('zh' if lang == 'zh' else 'en', ''))}" for n in notes if n)


def history_caption(summary: Any, answer: str | None, lang: str) -> str:
    """"#12 · Math · ABD · 2026-11-29 14:03" for one problem in the history list."""
    date = summary.created_at.strftime("%Y-%m-%d %H:%M") if getattr(summary, "created_at", None) else ""
    parts = [f"#{summary.number}", t(summary.subject, lang) if summary.subject in ("math", "physics", "chemistry",
                                                                                 "biology") else summary.subject]
    if answer:
        parts.append(answer if len(answer) <= 24 else answer[:23] + "…")
    parts.append(date)
    return " · ".join(p for p in parts if p)


def chosen_candidate(attempt: Any) -> Any:
    """The chosen stored candidate of an attempt (``CandidateInfo``), or None."""
    return next((c for c in getattr(attempt, "candidates", ()) if c.chosen), None)


def latest_answer(problem: Any) -> str | None:
    """The final answer of the latest finished solve of a stored problem."""
    for a in reversed(problem.attempts):
        c = chosen_candidate(a)
        if a.mode == "solve" and c is not None and c.answer:
            return c.answer
    return None


def problem_messages(problem: Any, lang: str) -> list[dict]:
    """Rebuild the chat of a stored problem: photos, every turn, and each reply's thinking (folded)."""
    attempts = {a.id: a for a in problem.attempts}
    msgs: list[dict] = [{"role": "user", "content": {"path": str(img.path)}} for img in problem.images]
    for m in problem.messages:
        if m.role == "user":
            msgs += user_messages(m.content)
        elif m.role == "assistant":
            c = chosen_candidate(attempts.get(m.attempt_id)) if m.attempt_id else None
            msgs += result_messages(c.thinking if c else "", m.content, lang)
    return msgs


def export_payload(problem: Any, image_bytes: Sequence[bytes]) -> dict:
    """The dict :func:`tutor.render.export_problem_html` takes, for a stored problem."""
    solution: dict = {}
    shown = None  # the solve attempt shown as the solution; the conversation lists every other turn
    for a in reversed(problem.attempts):
        c = chosen_candidate(a)
        if a.mode == "solve" and c is not None:
            solution = {"text": c.text, "thinking": c.thinking, "answer": c.answer}
            shown = a.id
            break
    subject = t(problem.subject, problem.lang) if problem.subject in CHOICES["subject"] else problem.subject
    return {"title": f"R1V Tutor #{problem.number}", "question": problem.question, "images": list(image_bytes),
            "lang": problem.lang, "subject": subject, "solution": solution,
            "turns": conversation_turns(problem, skip_attempt=shown)}


def progress_text(raw: str, tokens: int, lang: str) -> str:
    return t("answering_now" if CLOSE in raw else "thinking_now", lang, tokens=tokens)
