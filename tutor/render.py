"""Turn model text (prose with LaTeX math) into Markdown for the page and MathML HTML for exports.

    from tutor.render import to_markdown, to_mathml_html, export_problem_html

    md = to_markdown(answer_text)       # for gr.Chatbot / gr.Markdown with latex_delimiters
    html = to_mathml_html(answer_text)  # an HTML fragment, math as MathML, no JavaScript needed
    page = export_problem_html({"title": ..., "question": ..., "images": [jpeg_bytes],
                                "solution": {"text": ..., "thinking": ..., "answer": ...}})

Both renderers share one scanner that splits text into prose, code (fenced blocks and inline
spans, never touched) and math (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` and a bare
``\\boxed{...}`` written outside any delimiters). Neither function ever raises on any input: a
delimiter with no partner is shown literally, a broken ``\\boxed`` (``\\boxed}``, no closing brace, or
a box holding sentences over several lines, as small models write) is shown as its text, and math that latex2mathml cannot convert cleanly
(truncated, unknown commands, markup leaking through ``\\text{}``) is shown as escaped LaTeX source
in a ``<code>``. Converted MathML is parsed and checked against an element/attribute allow-list
before it is used, both as XML and as the browser's HTML5 parser reads it (``tutor.sanitize``), so the
export never carries script or event handlers; the page also carries a strict Content-Security-Policy
(nothing loads or runs but its inline styles and ``data:`` images). On the page, model prose keeps
Markdown formatting but no raw HTML, link, image or autolink (``tutor.sanitize.inert_prose``).
"""

from __future__ import annotations

import base64
import html
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from latex2mathml.converter import convert as _latex2mathml

from tutor.sanitize import EXPORT_CSP, inert_code, inert_prose, literal_text, mathml_as_browser_reads

log = logging.getLogger(__name__)

MAX_MATH_CHARS = 4000  # longer formulas are shown as source rather than converted

_FENCE = re.compile(r"(?m)^[ ]{0,3}(`{3,}|~{3,})[^\n]*$")
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_TICKS = re.compile("`+")
_LEAKED_COMMAND = re.compile(r"\\[A-Za-z]")

_MATHML_TAGS = frozenset(
    "math mi mn mo ms mtext mspace mrow mfrac msqrt mroot mstyle merror mpadded mphantom mfenced "
    "menclose msub msup msubsup munder mover munderover mmultiscripts mprescripts none mtable mtr "
    "mlabeledtr mtd semantics annotation".split()
)
_MATHML_ATTRS = frozenset(
    "xmlns display mathvariant notation stretchy fence form separator accent accentunder movablelimits "
    "largeop symmetric lspace rspace minsize maxsize width height depth voffset scriptlevel "
    "displaystyle columnalign rowalign columnspacing rowspacing columnlines rowlines frame framespacing "
    "linethickness bevelled numalign denomalign open close separators align rowspan columnspan "
    "mathsize mathcolor mathbackground encoding".split()
)


@dataclass
class Segment:
    """A piece of text: ``kind`` is "text", "code" or "math"; math keeps its delimiters."""

    kind: str
    body: str
    left: str = ""
    right: str = ""
    display: bool = False


def _escaped(s: str, i: int) -> bool:
    """True when s[i] is preceded by an odd number of backslashes."""
    n = 0
    while i - 1 - n >= 0 and s[i - 1 - n] == "\\":
        n += 1
    return n % 2 == 1


def _find_dollar(s: str, start: int, double: bool) -> tuple[int, int]:
    """(index of the closing ``$`` or ``$$`` from ``start``, or -1; where the search stopped).

    Inline math stops at a blank line or at a ``$$``, and never closes on a ``$`` before a digit.
    A failed search from ``start`` also fails from any later start before the stop position.
    """
    para_end = len(s) if double else (s.find("\n\n", start) % (len(s) + 1))
    i = start
    while True:
        i = s.find("$", i, para_end)
        if i < 0:
            return -1, para_end
        if _escaped(s, i):
            i += 1
            continue
        if double:
            if s.startswith("$$", i):
                return i, i
            i += 1
            continue
        if s.startswith("$$", i):
            return -1, i  # "$$" opens display math; it never closes inline math
        if s[i + 1 : i + 2].isdigit():
            i += 1  # "$5 and $10": a closing "$" is never followed by a digit (as in Pandoc)
            continue
        return i, i


def _find_closer(s: str, start: int, closer: str) -> int:
    i = start
    while True:
        i = s.find(closer, i)
        if i < 0 or not _escaped(s, i):
            return i
        i += 1


def _brace_pairs(s: str) -> dict[int, int]:
    """For every ``{`` in ``s`` that is closed, its index -> the index just past its ``}``."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for j, c in enumerate(s):
        if c not in "{}" or _escaped(s, j):
            continue
        if c == "{":
            stack.append(j)
        elif stack:
            pairs[stack.pop()] = j + 1
    return pairs


def split_segments(text: str) -> list[Segment]:
    """Split ``text`` into prose, code and math segments (see the module docstring)."""
    segs: list[Segment] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            segs.append(Segment("text", "".join(buf)))
            buf.clear()

    i, n = 0, len(text)
    # Positions before which a search for a closer is known to fail (keeps long inputs linear).
    dead: dict[str, int] = {"$": -1, "$$": -1, "\\)": -1, "\\]": -1}
    dead_ticks: dict[int, int] = {}
    braces: dict[int, int] | None = None  # computed when the first bare \\boxed is seen
    while i < n:
        c = text[i]
        line_start = text.rfind("\n", max(0, i - 4), i) + 1 if c in "`~" else -1
        if c in "`~" and (line_start > 0 or i <= 3) and not text[line_start:i].strip(" "):
            m = _FENCE.match(text, line_start)
            if m and m.start(1) == i:
                fence = m.group(1)
                close = re.compile(rf"(?m)^[ ]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
                end_m = close.search(text, m.end())
                end = end_m.end() if end_m else n
                flush()
                segs.append(Segment("code", text[i:end]))
                i = end
                continue
        if c == "`":
            run = _TICKS.match(text, i).end() - i
            ticks = "`" * run
            j = text.find(ticks, i + run) if i > dead_ticks.get(run, -1) else -1
            while j >= 0 and text.startswith("`", j + run):
                j = text.find(ticks, j + run + 1)
            if j < 0:
                dead_ticks[run] = n
            if j >= 0:
                flush()
                segs.append(Segment("code", text[i : j + run]))
                i = j + run
            else:
                buf.append(ticks)
                i += run
            continue
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt in "([":
                closer = "\\)" if nxt == "(" else "\\]"
                j = _find_closer(text, i + 2, closer) if i + 2 > dead[closer] else -1
                if j < 0:
                    dead[closer] = n
                else:
                    flush()
                    segs.append(Segment("math", text[i + 2 : j], "\\" + nxt, closer, nxt == "["))
                    i = j + 2
                    continue
            if text.startswith("\\boxed", i) and not text[i + 6 : i + 7].isalpha():
                k = i + 6
                while k < n and text[k] == " ":
                    k += 1
                if braces is None:
                    braces = _brace_pairs(text)
                end = braces.get(k, -1)
                if end > 0:
                    flush()
                    segs.append(Segment("math", text[i:end]))
                    i = end
                    continue
            buf.append(text[i : i + 2])
            i += 2
            continue
        if c == "$":
            double = text.startswith("$$", i)
            start = i + (2 if double else 1)
            delim = "$$" if double else "$"
            j = -1
            if start > dead[delim]:
                j, stop = _find_dollar(text, start, double)
                if j < 0:
                    dead[delim] = stop
            if j >= 0:
                flush()
                segs.append(Segment("math", text[start:j], delim, delim, double))
                i = j + len(delim)
            else:
                buf.append(text[i:start])  # unmatched: stays literal text
                i = start
            continue
        buf.append(c)
        i += 1
    flush()
    return segs


_BROKEN_BOX = re.compile(r"(?<!\\)\\(?:boxed|fbox)(?![A-Za-z])\s*[{}]?")


def repaired(segs: list[Segment]) -> list[Segment]:
    """The segments with broken ``\\boxed`` markup made text: in prose, a ``\\boxed`` that found no brace
    pair (``\\boxed}``, ``\\boxed{`` never closed) loses the command and keeps its text; a bare box whose
    content runs over lines or holds a full stop (``\\boxed{9。\\n十位：8+7=11}``) becomes that content."""
    out: list[Segment] = []
    for seg in segs:
        if seg.kind == "text" and "\\" in seg.body:
            seg = Segment("text", _BROKEN_BOX.sub("", seg.body))
        elif seg.kind == "math" and not seg.left and "{" in seg.body:
            inner = seg.body[seg.body.index("{") + 1 : -1]
            if "\n" in inner or "。" in inner:
                seg = Segment("text", inner)
        out.append(seg)
    return out


def to_markdown(text: str, literal: bool = False) -> str:
    """Markdown for a Gradio page whose ``latex_delimiters`` are ``$``, ``$$``, ``\\(\\)``, ``\\[\\]``.

    Math is kept with its delimiters (``<``/``>`` inside it become ``\\lt``/``\\gt`` so they are not
    read as HTML); a bare ``\\boxed{...}`` is wrapped in ``$...$``; a ``$`` with no partner is
    escaped; code is left alone. ``literal`` (what a student typed): the prose is shown as text, its
    HTML and Markdown markup escaped (``<img src=x>``, ``x<y>z`` and ``2*3*4`` appear as typed), while
    the math still renders.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    out: list[str] = []
    for seg in repaired(split_segments(text)):
        if seg.kind == "code":
            out.append(inert_code(seg.body))
            continue
        if seg.kind == "text":
            # Any unescaped "$" left in prose has no partner: escape it so the page shows it as is.
            body = re.sub(r"(?<!\\)((?:\\\\)*)\$", r"\1\\$", seg.body)
            out.append(literal_text(body) if literal else inert_prose(body))
            continue
        body = seg.body.replace("<", "\\lt ").replace(">", "\\gt ")
        if seg.left:
            out.append(f"{seg.left}{body}{seg.right}")
        else:
            out.append(f"${body}$")
    return "".join(out)


def _source_fallback(seg: Segment) -> str:
    src = f"{seg.left}{seg.body}{seg.right}"
    return f'<code class="latex">{html.escape(src)}</code>'


def _braces_balanced(latex: str) -> bool:
    depth = 0
    for j, c in enumerate(latex):
        if c in "{}" and _escaped(latex, j):
            continue
        depth += 1 if c == "{" else -1 if c == "}" else 0
        if depth < 0:
            return False
    return depth == 0


def _mathml_is_clean(markup: str) -> bool:
    if "<!" in markup or "<?" in markup:  # a comment, CDATA or PI: XML and HTML parsers read them differently
        return False
    try:
        root = ET.fromstring(markup)
    except ET.ParseError:
        return False
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag not in _MATHML_TAGS:
            return False
        if any(name.rsplit("}", 1)[-1] not in _MATHML_ATTRS for name in el.attrib):
            return False
        if any(_LEAKED_COMMAND.search(t or "") for t in (el.text, el.tail)):
            return False
    return "<script" not in markup.lower() and mathml_as_browser_reads(markup, _MATHML_TAGS, _MATHML_ATTRS, root)


@lru_cache(maxsize=4096)
def math_to_mathml(latex: str, display: bool = False) -> str | None:
    """MathML for ``latex`` (math only), or None when it cannot be converted cleanly."""
    latex = latex.strip()
    if not latex or len(latex) > MAX_MATH_CHARS or not _braces_balanced(latex):
        return None
    if latex.count("\\begin{") != latex.count("\\end{") or latex.count("\\left") != latex.count("\\right"):
        return None
    try:
        markup = _latex2mathml(latex, display="block" if display else "inline")
    except Exception as e:  # noqa: BLE001 - any failure means "show the source instead"
        log.debug("latex2mathml failed on %r: %s", latex[:80], e)
        return None
    return markup if _mathml_is_clean(markup) else None


def _prose_html(text: str) -> str:
    s = html.escape(text.replace("\\$", "$"))
    s = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"<strong>\1</strong>", s)
    return s.replace("\n", "<br />")


def to_mathml_html(text: str) -> str:
    """An HTML fragment: prose escaped, math as MathML, code in <pre>/<code>; never raises.

    The output is well-formed XML (it parses once wrapped in a root element) and carries no
    script: prose and code are escaped, and MathML is used only after an allow-list check.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = _INVALID_XML.sub("\ufffd", text)
    blocks: list[str] = []
    para: list[str] = []

    def end_paragraph() -> None:
        body = "".join(para).strip()
        body = re.sub(r"^(<br />)+|(<br />)+$", "", body)
        if body:
            blocks.append(f"<p>{body}</p>")
        para.clear()

    for seg in repaired(split_segments(text)):
        if seg.kind == "code":
            if seg.body.startswith(("```", "~~~")):
                end_paragraph()
                lines = seg.body.split("\n")[1:]  # drop the opening fence line
                if lines and lines[-1].strip() and not lines[-1].strip().strip(seg.body[0]):
                    lines = lines[:-1]  # drop the closing fence
                blocks.append(f"<pre><code>{html.escape(chr(10).join(lines))}</code></pre>")
            else:
                para.append(f"<code>{html.escape(seg.body.strip('`'))}</code>")
        elif seg.kind == "math":
            markup = math_to_mathml(seg.body, seg.display)  # a bare \boxed{...} converts as it is
            para.append(markup if markup is not None else _source_fallback(seg))
        else:
            chunks = re.split(r"\n[ \t]*\n", seg.body)
            for k, chunk in enumerate(chunks):
                if k:
                    end_paragraph()
                para.append(_prose_html(chunk))
    end_paragraph()
    return "\n".join(blocks)


def _sniff_image(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


_PAGE_CSS = """
body { font-family: system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; max-width: 46rem;
       margin: 2rem auto; padding: 0 1rem; line-height: 1.6; color: #222; }
img.problem { max-width: 100%; border: 1px solid #ddd; border-radius: 4px; margin: .5rem 0; }
code.latex { background: #f6f6f6; padding: 0 .2em; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; }
menclose[notation="box"] { border: 1px solid currentColor; padding: 0 .2em; }
details { margin-top: 1rem; border-left: 3px solid #ccc; padding-left: .8rem; color: #555; }
.final { font-weight: bold; }
footer { margin-top: 2rem; font-size: .8rem; color: #888; }
"""

_LABELS = {
    "en": {"question": "Question", "answer": "Final answer", "solution": "Solution",
           "thinking": "Reasoning", "title": "Problem", "footer": "Exported from R1V Tutor"},
    "zh": {"question": "题目", "answer": "最终答案", "solution": "解答",
           "thinking": "推理过程", "title": "题目", "footer": "导出自 R1V Tutor"},
}  # fmt: skip


def export_problem_html(problem: dict[str, Any]) -> str:
    """A standalone HTML page for one problem and its chosen solution; never raises on content.

    ``problem`` keys (all optional): ``title``, ``question`` (text), ``images`` (list of encoded
    image bytes, embedded as ``data:`` URIs; unrecognised bytes are skipped), ``lang`` ("zh"/"en",
    for the labels), ``subject``, and ``solution``: ``{"text": worked answer, "thinking": reasoning,
    "answer": final answer}``. The worked answer and the final answer are shown; the reasoning goes in
    a ``<details>``. All text is rendered with :func:`to_mathml_html`. ``turns`` (optional): the
    conversation after the question, from ``tutor.transcript.conversation_turns``, shown in order.
    """
    if not isinstance(problem, dict):
        problem = {}
    lang = "zh" if str(problem.get("lang", "en")).lower().startswith("zh") else "en"
    labels = _LABELS[lang]
    title = str(problem.get("title") or labels["title"])
    solution = problem.get("solution") if isinstance(problem.get("solution"), dict) else {}
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8" />',
        f'<meta http-equiv="Content-Security-Policy" content="{EXPORT_CSP}" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>{html.escape(_INVALID_XML.sub('', title))}</title><style>{_PAGE_CSS}</style></head><body>",
        f"<h1>{html.escape(_INVALID_XML.sub('', title))}</h1>",
    ]
    subject = problem.get("subject")
    if subject:
        parts.append(f'<p class="subject">{html.escape(_INVALID_XML.sub("", str(subject)))}</p>')
    parts.append(f"<section><h2>{labels['question']}</h2>")
    images = problem.get("images") or []
    for k, data in enumerate(images if isinstance(images, list | tuple) else []):
        mime = _sniff_image(data) if isinstance(data, bytes | bytearray) else None
        if mime is None:
            log.warning("export: skipping image %d (not JPEG/PNG/GIF/WebP bytes)", k)
            continue
        uri = f"data:{mime};base64,{base64.b64encode(bytes(data)).decode('ascii')}"
        parts.append(f'<img class="problem" alt="{labels["question"]} {k + 1}" src="{uri}" />')
    if problem.get("question"):
        parts.append(to_mathml_html(str(problem["question"])))
    parts.append("</section>")
    if solution:
        parts.append(f"<section><h2>{labels['solution']}</h2>")
        if solution.get("text"):
            parts.append(to_mathml_html(str(solution["text"])))
        if solution.get("answer"):
            answer = str(solution["answer"])
            shown = answer if "$" in answer or "\\(" in answer else f"${answer}$"
            parts.append(f'<div class="final"><h3>{labels["answer"]}</h3>{to_mathml_html(shown)}</div>')
        if solution.get("thinking"):
            parts.append(f"<details><summary>{labels['thinking']}</summary>")
            parts.append(to_mathml_html(str(solution["thinking"])))
            parts.append("</details>")
        parts.append("</section>")
    if problem.get("turns"):  # every later turn, in order (tutor.transcript)
        from tutor.transcript import conversation_html

        parts.append(conversation_html(problem["turns"], lang))
    parts.append(f"<footer>{labels['footer']}</footer></body></html>")
    return "\n".join(parts)
