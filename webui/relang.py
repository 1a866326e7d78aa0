"""Put what the page already shows into the language the student just switched to.

    from webui.relang import retranslate, relang_answer, relang_chat
    retranslate("Done in 3.2 s.", "zh")            # '完成，用时 3.2 秒。'
    retranslate("⚠️ something else", "zh")          # None: not one of the page's strings
    relang_answer("**Final answer:** $x$", "zh")   # '**最终答案:** $x$'
    relang_chat(chat_value, "zh")                   # thinking titles and the page's own chips swapped

The language toggle relabels the components; these helpers cover the text handlers wrote before the
switch: the status line and the history message (any string of ``webui.i18n.STRINGS``, with its
fields, e.g. the seconds of "Done in 3.2 s."), the labels of the answer panel, and in the chat the
thinking block's title and the student's chips the page wrote ("💡 Next hint", "My answer: x"). The
tutor's replies and the student's own words are left as they are: they are in the reply language.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from webui.i18n import LANGS, STRINGS, norm_lang, t

_FIELD = re.compile(r"\{(\w+)(?::[^{}]*)?\}")
_CHIPS = ("hint", "practice", "regenerate", "no_answer")
_NOTES = ("out_of_budget_thinking", "out_of_budget_answer", "out_of_context")  # webui.view.budget_note


@cache
def _patterns(lang: str) -> list[tuple[re.Pattern, str]]:
    """(regex matching the string in ``lang`` with its fields captured, key) for every string."""
    out = []
    for key in STRINGS:
        template = t(key, lang)
        parts, names, at = [], [], 0
        for m in _FIELD.finditer(template):
            parts.append(re.escape(template[at:m.start()]))
            if m.group(1) in names:  # a field used twice: match the same text again
                parts.append(f"(?P={m.group(1)})")
            else:
                parts.append(f"(?P<{m.group(1)}>.+?)")
                names.append(m.group(1))
            at = m.end()
        parts.append(re.escape(template[at:]))
        out.append((re.compile("".join(parts), re.S), key))
    return out


def _fill(template: str, fields: dict[str, str]) -> str:
    return _FIELD.sub(lambda m: fields.get(m.group(1), m.group(0)), template)


def retranslate(text: Any, lang: str) -> str | None:
    """``text`` in ``lang`` when it is one of the page's strings in either language (a "⚠️ " prefix
    kept), else None."""
    if not isinstance(text, str) or not text.strip():
        return text if isinstance(text, str) else None
    lang = norm_lang(lang)
    for prefix in ("", "⚠️ "):  # a string of its own, or a message the page prefixed with a warning sign
        if text.startswith(prefix):
            out = _pieces(text[len(prefix):], lang, 0)
            if out is not None:
                return prefix + out
    return None


_STOP = {"en": ".", "zh": "。"}


def _pieces(body: str, lang: str, depth: int) -> str | None:
    """``body`` as one page string, or as several in a row ("Done in 1.2 s. Correct.": the status line
    with the check's verdict after it), each put into ``lang``; None when any part is not one."""
    if body.strip() in _STOP.values():
        return _STOP[lang]
    for src in LANGS:
        for pattern, key in _patterns(src):
            m = pattern.fullmatch(body)
            if m:
                return _fill(STRINGS[key][1 if lang == "zh" else 0], m.groupdict())
    if depth > 3:
        return None
    for src in LANGS:
        for pattern, key in _patterns(src):
            m = pattern.match(body)
            if m and m.end() and m.end() < len(body):
                rest = _pieces(body[m.end():].lstrip(), lang, depth + 1)
                if rest is not None:
                    sep = " " if lang == "en" and rest not in _STOP.values() else ""
                    return _fill(STRINGS[key][1 if lang == "zh" else 0], m.groupdict()) + sep + rest
    return None


def _swap_notes(text: str, lang: str) -> str:
    """The page's "ran out of thinking budget" notes inside ``text``, put into ``lang`` with their numbers."""
    for src in LANGS:
        for pattern, key in _patterns(src):
            if key in _NOTES:
                text = pattern.sub(lambda m, k=key: _fill(STRINGS[k][1 if lang == "zh" else 0], m.groupdict()), text)
    return text


def relang_answer(markdown: Any, lang: str) -> Any:
    """The answer panel's labels ("**Problem:**", "**Final answer:**", "no final answer", a budget
    note) in ``lang``."""
    if not isinstance(markdown, str):
        return markdown
    for other in LANGS:
        for key in ("asked", "final"):
            markdown = markdown.replace(f"**{t(key, other)}:**", f"**{t(key, lang)}:**")
        markdown = markdown.replace(t("no_final", other), t("no_final", lang))
    return _swap_notes(markdown, lang)


def _swap_text(text: str, lang: str) -> str:
    for other in LANGS:
        for key in _CHIPS:
            if text.strip() == t(key, other):
                return t(key, lang)
        mine = f"{t('my_answer', other)}: "
        if text.startswith(mine):
            return f"{t('my_answer', lang)}: " + text[len(mine):]
    return _swap_notes(text, lang)


def relang_chat(chat: Any, lang: str) -> Any:
    """A copy of the chat value with the page's own words in ``lang`` (see the module docstring)."""
    if not isinstance(chat, list):
        return chat
    out = copy.deepcopy(chat)
    titles = {t("thinking", other) for other in LANGS}
    for msg in out:
        if not isinstance(msg, dict):
            continue
        meta = msg.get("metadata")
        if isinstance(meta, dict) and meta.get("title") in titles:
            meta["title"] = t("thinking", lang)
        content = msg.get("content")
        if isinstance(content, str):
            msg["content"] = _swap_text(content, lang)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    part["text"] = _swap_text(part["text"], lang)
    return out
