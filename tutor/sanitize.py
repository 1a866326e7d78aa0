"""Make model text safe for what the browser will parse: the page's Markdown and the export's MathML.

    from tutor.sanitize import inert_prose, inert_code, mathml_as_browser_reads, EXPORT_CSP

    md = inert_prose("see <img src=http://x/a.png> ![a](http://x) http://x")  # Markdown that builds no element
    md = inert_code("`a<b`")                # a code segment, kept as code only when misparsing it is harmless
    ok = mathml_as_browser_reads(markup, tags, attrs, xml_root)   # the HTML5 view equals the checked XML view
    meta = f'<meta http-equiv="Content-Security-Policy" content="{EXPORT_CSP}" />'

Why each piece (issue 22):

* The page (``tutor.render.to_markdown``): Gradio turns message Markdown into HTML with its own
  parser and keeps ``style``, ``<form>``, ``<input>``, ``<img>`` and ``<iframe>``. An allow-list of
  "harmless" tags is not enough at the Markdown level: any tag alone on a line (``<b>``) opens an
  HTML block, inside which a following code span is raw HTML again; a ``|`` inside a code span splits
  a table cell and frees the rest. So model prose carries no raw HTML at all (``<`` is ``&lt;``), no
  Markdown link or image (``[``/``]`` as character references) and no bare-URL autolink; formatting
  comes from Markdown itself (bold, lists, tables, headings). A code segment that would build an element
  if it were misparsed (a tag opener, ``![``, ``](``) is shown as escaped text instead.
* The export (``tutor.render.math_to_mathml``): latex2mathml copies ``\\tag{...}`` text unescaped;
  the XML parser reads ``<!--> <img onerror> -->`` as a comment, the browser as a live ``<img>``.
  The MathML is read with an HTML5 parser (nh3, on html5ever, the parser family browsers use) under
  the same allow-list, and used only when that reading equals the XML one: no comment, processing
  instruction, CDATA or other construct the two parsers read differently gets through.
* ``EXPORT_CSP``: the exported page's Content-Security-Policy: nothing may load or run except its own
  inline styles and ``data:`` images, whatever markup slipped through.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from html import escape
from html.parser import HTMLParser

import nh3

EXPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
              "base-uri 'none'; form-action 'none'")

_PROSE = str.maketrans({"<": "&lt;", "[": "&#91;", "]": "&#93;", "@": "&#64;"})
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])://|\bwww\.")
# in code, what would build an element if a parser did not see the code as code: a tag, comment or
# declaration opener, an image, a link target or a reference definition (a URL alone is only a link)
_CODE_RISK = re.compile(r"<[A-Za-z/!?]|!\[|\]\s*[(:\[]")
_MD_MARKUP = {c: f"&#{ord(c)};" for c in "*_[]~|#`@"}


def _no_autolink(s: str) -> str:
    return _AUTOLINK.sub(lambda m: "&#58;//" if m[0] == "://" else "www&#46;", s)


def inert_prose(prose: str) -> str:
    """Model prose as Markdown that builds no HTML element beyond Markdown's own formatting: ``<`` as
    ``&lt;`` (no tag, comment or HTML block), ``[``, ``]`` and ``@`` as character references (no link,
    image, reference definition or e-mail autolink), and ``://`` and ``www.`` broken (no bare-URL
    autolink). The text shown is the text written."""
    return _no_autolink(prose.translate(_PROSE))


def literal_text(text: str) -> str:
    """Text shown exactly as written: HTML escaped and Markdown's inline markup as character references,
    a line starting with ``-``, ``+`` or ``1.`` kept from becoming a list item, no autolink."""
    s = "".join(_MD_MARKUP.get(c, c) for c in escape(text, quote=False))
    s = re.sub(r"(?m)^([ \t]*(?:\d+)?)([-+.)])(?=[ \t])", lambda m: f"{m[1]}&#{ord(m[2])};", s)
    return _no_autolink(s)


def inert_code(code: str) -> str:
    """A code segment (inline span or fenced block) of model text for the page. Kept as code when even a
    parser that does not see it as code (a ``|`` splitting a table cell, a fence ended early by a list)
    builds nothing from it (no ``<`` before a letter, ``/``, ``!`` or ``?``, no ``![``, no ``](``,
    ``]:`` or ``][``); any other is shown as escaped text, its lines kept."""
    if not _CODE_RISK.search(code):
        return code
    if code.startswith(("```", "~~~")):
        lines = code.split("\n")[1:]
        if lines and lines[-1].strip() and not lines[-1].strip().strip(code[0]):
            lines = lines[:-1]  # the closing fence
        return "\n\n" + "  \n".join(literal_text(line) for line in lines) + "\n\n"
    return literal_text(code)


class _Events(HTMLParser):
    """The (start tag + attributes | end tag | text) events an HTML parser reads from a fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.events.append(("start", tag, _attrs(attrs)))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)
        self.events.append(("end", tag))

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag))

    def handle_data(self, data: str) -> None:
        _text(self.events, data)

    def unknown_decl(self, data: str) -> None:
        self.events.append(("decl", data))

    def handle_comment(self, data: str) -> None:
        self.events.append(("comment", data))

    def handle_pi(self, data: str) -> None:
        self.events.append(("pi", data))


def _attrs(attrs: Iterable[tuple[str, str | None]]) -> tuple:
    return tuple(sorted((k.rsplit("}", 1)[-1].lower(), v or "") for k, v in attrs if k != "xmlns"))


def _text(events: list[tuple], data: str | None) -> None:
    if not data:
        return
    if events and events[-1][0] == "text":
        events[-1] = ("text", events[-1][1] + data)
    else:
        events.append(("text", data))


def _xml_events(el: ET.Element, out: list[tuple]) -> None:
    tag = el.tag.rsplit("}", 1)[-1].lower()
    out.append(("start", tag, _attrs(el.attrib.items())))
    _text(out, el.text)
    for child in el:
        _xml_events(child, out)
        _text(out, child.tail)
    out.append(("end", tag))


def mathml_as_browser_reads(markup: str, tags: frozenset[str], attrs: frozenset[str], root: ET.Element) -> bool:
    """True when an HTML5 parser, keeping only ``tags`` and ``attrs`` (no comment, no URL), reads
    ``markup`` as exactly the elements, attributes and text the XML parser read (``root``): then the
    browser builds that allow-listed tree and nothing else."""
    cleaned = nh3.clean(markup, tags=set(tags), attributes={"*": set(attrs)}, strip_comments=True,
                        link_rel=None, url_schemes=set(), clean_content_tags={"script", "style"})
    seen = _Events()
    seen.feed(cleaned)
    seen.close()
    expected: list[tuple] = []
    _xml_events(root, expected)
    return seen.events == expected
