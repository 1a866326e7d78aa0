"""Tests for tutor.render: Markdown for the page, MathML HTML for exports, the export page."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tutor.render import export_problem_html, math_to_mathml, split_segments, to_markdown, to_mathml_html

LATEXISH = st.lists(
    st.sampled_from(
        [
            "\\", "{", "}", "^", "_", "$", "$$", "(", ")", "[", "]", "\\(", "\\)", "\\[", "\\]",
            "\\frac", "\\sqrt", "\\boxed", "\\text", "\\left(", "\\right)", "\\begin{matrix}",
            "\\end{matrix}", "\\\\", "&", "<", ">", "<script>", "`", "```", "\n", "\n\n", " ", "x", "y",
            "1", "2", "=", "+", "\\alpha", "\\foo", "\\mathrm", "中", "\x00", "\\$", "~~~",
        ]
    ),
    max_size=40,
).map("".join)  # fmt: skip


def _well_formed(fragment: str) -> None:
    ET.fromstring(f"<root>{fragment}</root>")  # raises on anything that is not well-formed


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_never_raises(text: str) -> None:
    md = to_markdown(text)
    assert isinstance(md, str)
    out = to_mathml_html(text)
    _well_formed(out)
    assert "<script" not in out.lower()


@given(LATEXISH)
@settings(max_examples=500, deadline=None)
def test_latexish_text_never_raises_and_is_well_formed(text: str) -> None:
    to_markdown(text)
    out = to_mathml_html(text)
    _well_formed(out)
    assert "<script" not in out.lower()
    assert not re.search(r"<mi>\\[A-Za-z]", out)  # unknown commands never leak into MathML


@given(LATEXISH)
@settings(max_examples=300, deadline=None)
def test_segments_cover_the_text(text: str) -> None:
    # Every character ends up in exactly one segment, unchanged.
    rebuilt = "".join(f"{s.left}{s.body}{s.right}" for s in split_segments(text))
    assert rebuilt == text


def test_markdown_wraps_bare_boxed_and_keeps_delimiters() -> None:
    md = to_markdown("答案为 \\boxed{\\frac{1}{2}}，且 $x^2$ 与 \\(y\\) 以及 $$z$$ 和 \\[w\\]")
    assert "$\\boxed{\\frac{1}{2}}$" in md
    assert "$x^2$" in md and "\\(y\\)" in md and "$$z$$" in md and "\\[w\\]" in md
    assert to_markdown("$\\boxed{B}$") == "$\\boxed{B}$"  # already in math: not wrapped twice


def test_markdown_escapes_unbalanced_dollars() -> None:
    assert to_markdown("cost $5 and $10") == "cost \\$5 and \\$10"
    assert to_markdown("so $x = 1") == "so \\$x = 1"  # truncated stream
    assert to_markdown("$$\\frac{1}{2}") == "\\$\\$\\frac{1}{2}"
    assert to_markdown("$a$ and $b") == "$a$ and \\$b"
    assert to_markdown("price \\$3") == "price \\$3"


def test_markdown_leaves_code_alone_and_protects_lt() -> None:
    text = "see `$a$` and\n```\nx = '$b' < 3\n```\nthen $a<b$"
    md = to_markdown(text)
    assert "`$a$`" in md and "```\nx = '$b' < 3\n```" in md
    assert "$a\\lt b$" in md


def test_mathml_converts_math_and_escapes_prose() -> None:
    out = to_mathml_html("若 a<b & c，则 $\\frac{1}{2}$，答案 \\boxed{AB}")
    _well_formed(out)
    assert "a&lt;b &amp; c" in out
    assert "<mfrac>" in out and 'notation="box"' in out
    assert out.count("<math") == 2


def test_mathml_falls_back_to_source_for_bad_latex() -> None:
    for bad in ["$\\frac{1$", "$\\foo{x}$", "$x^$", "$\\text{<b>}$", "$\\begin{matrix} x$", "$a & b$"]:
        out = to_mathml_html(bad)
        _well_formed(out)
        assert '<code class="latex">' in out and "<math" not in out, bad
    assert math_to_mathml("\\frac{1") is None
    assert math_to_mathml("\\frac{1}{2}") is not None
    assert math_to_mathml("x", display=True).startswith(
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"'
    )


def test_mathml_paragraphs_and_code_blocks() -> None:
    out = to_mathml_html("first\n\nsecond **bold**\n```py\nprint('<x>')\n```\nafter")
    _well_formed(out)
    assert out.count("<p>") == 3
    assert "<strong>bold</strong>" in out
    assert "<pre><code>print(&#x27;&lt;x&gt;&#x27;)</code></pre>" in out


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_export_problem_page() -> None:
    png = _png()
    page = export_problem_html(
        {
            "title": "三角形 <ABC>",
            "lang": "zh",
            "subject": "math",
            "question": "求 $BC$ 的长。",
            "images": [png, b"not an image"],
            "solution": {
                "text": "由余弦定理 $BC^2 = 49$。",
                "thinking": "先算 $\\cos 120^\\circ$",
                "answer": "7",
            },
        }
    )
    parser = _Collector()
    parser.feed(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>三角形 &lt;ABC&gt;</title>" in page
    assert parser.tags.count("img") == 1  # the bad bytes are skipped
    src = dict(a for a in parser.attrs if a[0] == "src")["src"]
    assert src == "data:image/png;base64," + base64.b64encode(png).decode()
    assert "<details><summary>推理过程</summary>" in page
    assert page.index("<details>") > page.index("最终答案")
    assert "<script" not in page.lower() and page.count("<math") >= 4
    _well_formed(page.split("\n", 1)[1])  # everything after the doctype is well-formed XML


def test_export_never_raises_on_odd_input() -> None:
    for problem in [{}, {"solution": "text"}, {"images": "x"}, {"question": "$\\frac{1"}, None]:
        page = export_problem_html(problem)  # type: ignore[arg-type]
        assert page.startswith("<!DOCTYPE html>")


def test_broken_boxes_are_shown_as_text() -> None:
    """Small models write ``\\boxed}`` or box a sentence: the page and the export show text, never the markup."""
    for broken, shown in (("答案是 \\boxed}。", "答案是 。"), ("so \\boxed{3", "so 3"),
                          ("答案是 \\boxed{9。\n十位：8+7=11}。", "答案是 9。\n十位：8+7=11。")):
        assert to_markdown(broken) == shown
        assert "boxed" not in to_mathml_html(broken)
    assert to_markdown("x \\boxed{\\frac{1}{2}}") == "x $\\boxed{\\frac{1}{2}}$"  # a good box stays math


# ------------------------------------------------------------------ the whole conversation in the export


def test_export_has_the_whole_conversation_in_order(tmp_path) -> None:
    """A problem with every kind of turn, built through the tutor on the real tiny engine: the export
    shows each turn in order (hint, both checks with the student's answer and verdict, the follow-up
    and its reply, the practice problem and the answer to it), math as MathML, the student's HTML as
    text, and the subject's display name, not its key."""
    from engine.core import Engine, Sampling
    from tutor.session import TurnResult, Tutor
    from tutor.store import Store
    from tutor.transcript import conversation_turns
    from webui.view import export_payload

    store = Store(f"sqlite:///{tmp_path / 'e.db'}", image_dir=tmp_path / "img")
    try:
        tutor = Tutor(Engine("tiny-random"), store)
        s = Sampling(max_new_tokens=6, seed=0)
        pid = tutor.new_problem("u", [], "Solve 4x+4=12", lang="en", gold_answer="2")

        def last(events):
            events = list(events)
            assert isinstance(events[-1], TurnResult)
            return events[-1]

        last(tutor.solve("u", pid, sampling=s))
        hint = last(tutor.hint("u", pid, sampling=s)).text
        last(tutor.check("u", pid, "x = 5", sampling=s))
        last(tutor.check("u", pid, "x = 2", sampling=s))
        follow = last(tutor.followup("u", pid, "Why $4x$? <img src=x> x<y>z", sampling=s)).text
        prac = last(tutor.practice("u", pid, sampling=s))
        verdict = tutor.answer_practice("u", pid, prac.attempt_id, "12345")

        p = store.get_problem("u", pid)
        kinds = [(t["role"], t["kind"]) for t in conversation_turns(p)]
        assert kinds == [("assistant", "solve"), ("user", "hint"), ("assistant", "hint"),
                         ("user", "check"), ("assistant", "check"), ("user", "check"), ("assistant", "check"),
                         ("user", "followup"), ("assistant", "followup"), ("user", "practice"),
                         ("assistant", "practice"), ("user", "practice_answer"), ("assistant", "practice_answer")]
        page = export_problem_html(export_payload(p, []))
    finally:
        store.close()

    conv = page[page.index('<section class="conversation">'):]
    expected = ["Student · Hint", "Hint 1", "Tutor · Hint", hint.split(":")[0],
                "My answer: x = 5", "Not correct.", "My answer: x = 2", "Correct!",
                "Student · Follow-up", "Why", "&lt;img src=x&gt; x&lt;y&gt;z", "Tutor · Follow-up",
                follow.split("\n")[0][:30], "Student · Practice problem", "Tutor · Practice problem",
                prac.practice.problem.split("\n")[0], "Answer to the practice problem", "My answer: 12345",
                verdict.text.split("\n")[0]]
    at = 0
    for text in expected:
        i = conv.find(text, at)
        assert i >= 0, f"{text!r} missing or out of order after position {at}"
        at = i
    assert "Tutor · Solution" not in conv  # the solve shown as the solution is not repeated
    assert "<img" not in page and "<script" not in page.lower()
    assert conv.count("<math") >= 1  # the student's $4x$
    assert '<p class="subject">Math</p>' in page
    _well_formed(page.split("\n", 1)[1])


def test_export_labels_and_subject_follow_the_problem_language() -> None:
    from tutor.transcript import conversation_html

    page = export_problem_html({"lang": "zh", "subject": "数学", "turns": [
        {"role": "user", "kind": "hint", "text": "提示 1"}, {"role": "assistant", "kind": "hint", "text": "$x$"}]})
    assert "对话记录" in page and "学生 · 提示" in page and "助教 · 提示" in page and "<math" in page
    assert "Conversation" not in page
    assert conversation_html([], "en") == "" and conversation_html(None, "zh") == ""
    odd = conversation_html([{"role": "x", "kind": "nope", "text": None}, "junk"], "en")
    assert "Tutor · Follow-up" in odd


def test_tag_text_the_browser_would_read_as_markup_is_shown_as_source() -> None:
    """\\tag{...} text is copied into MathML unescaped: whatever an HTML5 parser would read differently
    from the XML check (comments, PIs, CDATA, closing tags) falls back to escaped source (issue 22)."""
    for payload in ("<!--> <img src=x onerror=alert(1)> -->", "<?a > <img src=x onerror=alert(1)> ?>",
                    "<![CDATA[ > <img src=x> ]]>", "</mtext><img src=x></math>"):
        assert math_to_mathml(f"x = 1 \\tag{{{payload}}}", True) is None
        html = to_mathml_html(f"$$x = 1 \\tag{{{payload}}}$$")
        assert "<img" not in html and "&lt;img" in html and 'class="latex"' in html
    assert "<mtext>(3)</mtext>" in math_to_mathml("x = 1 \\tag{3}", True)  # a plain tag still converts
    assert "Content-Security-Policy" in export_problem_html({"question": "q"})


def test_model_markdown_builds_no_html_link_or_image() -> None:
    md = to_markdown("**so** <img src=http://e/x.png> ![a](http://e/a.png) [b](http://e) www.e.com `a<b` `ok` $x<1$")
    assert "**so**" in md and "`ok`" in md and "$x\\lt 1$" in md
    for bad in ("<img", "](", "![", "http://", "www.", "`a<b`"):
        assert bad not in md, bad
