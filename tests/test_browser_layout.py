"""The page's layout in headless Chromium (issue 18, points 1, 2 and 9): on a 390 px phone and a
1280 px desktop the tutor's first reply is in the viewport when it starts and when it ends; the page
loads without Svelte errors; the empty history says so; history items are cards with a readable
caption inside them; the follow-up box empties when sent; the chosen 👍/👎 shows and resets on a new
attempt; a reopened problem keeps its practice turn; the language switch and the comment box have
names for a screen reader; the slider's Chinese label stays on one line.

One app on Engine("tiny-random") for the module, like ``tests/test_browser.py``. Screenshots go to
``$R1V_SHOTS_DIR`` (default: the test's tmp folder). Skipped only without /usr/bin/chromium.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser_app import chromium, needs_chromium, serve
from webui.config import AppConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "math-en-cubic-graph.jpg"

pytestmark = needs_chromium

FIRST_REPLY = "() => document.querySelector('#r1v-chat .message.bot, #r1v-chat .bot')"
DONE = "() => /^(Done in|Stopped|用时|完成)/.test((document.querySelector('#r1v-status')?.innerText || '').trim())"


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    from engine.core import Engine

    with serve(tmp_path_factory.mktemp("browser-layout"), Engine("tiny-random"),
               AppConfig(max_new_tokens=8)) as (url, store):
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def shots(tmp_path) -> Path:
    d = Path(os.environ.get("R1V_SHOTS_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def _open(browser, url, width, height, locale="en-US"):
    page = browser.new_context(viewport={"width": width, "height": height}, locale=locale).new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "svelte.dev/e/" in m.text else None)
    page.goto(url, wait_until="load")
    page.wait_for_function("() => (document.querySelector('#r1v-status-banner')?.innerText || '')"
                           ".includes('tiny-random')")
    return page, errors


def _in_view(page, selector_js: str) -> dict:
    """The element's box and whether it lies inside the viewport (its top edge and at least 40 px)."""
    return page.evaluate(f"""() => {{
        const e = ({selector_js})();
        if (!e) return {{found: false}};
        const r = e.getBoundingClientRect();
        return {{found: true, top: r.top, bottom: r.bottom, h: innerHeight,
                 inside: r.top >= 0 && r.top + Math.min(40, r.height) <= innerHeight}};
    }}""")


def _solve(page, question: str) -> tuple[dict, dict]:
    page.locator("#r1v-question textarea").fill(question)
    page.locator("#r1v-ask-btn").click()
    page.wait_for_function(FIRST_REPLY, polling=50)
    page.wait_for_timeout(700)  # the smooth scroll
    at_start = _in_view(page, FIRST_REPLY)
    page.wait_for_function(DONE, polling=100)
    page.wait_for_timeout(400)
    return at_start, _in_view(page, FIRST_REPLY)


def _variant(page, elem_id: str) -> str:
    cls = page.locator(f"#{elem_id}").get_attribute("class") or ""
    return "primary" if "primary" in cls.split() else "secondary"


def test_phone_session(page_url, browser, shots):
    page, errors = _open(browser, page_url, 390, 844)

    # Accessible names: the language switch and the comment box are not "Radio" / "Textbox".
    assert page.locator("#r1v-ui-lang [data-testid=block-info]").inner_text().strip() == "Interface language"
    assert page.locator("#r1v-comment [data-testid=block-info]").inner_text().strip() == "Comment (optional)"

    # The empty history says so.
    page.locator("#r1v-history").get_by_text("My problems").first.click()
    page.wait_for_function("() => (document.querySelector('#r1v-history-empty')?.innerText || '')"
                           ".includes('No problems yet')")

    # Photo, then Solve: the first reply is in view when it starts and when it is done.
    page.locator("#r1v-photo input[type=file]").first.set_input_files(str(EXAMPLE))
    page.wait_for_function("() => !!document.querySelector('#r1v-photo canvas, #r1v-photo img')")
    at_start, at_end = _solve(page, "Solve 4x+4=12")
    assert at_start["inside"], f"first reply not in view at 390 px when it started: {at_start}"
    assert at_end["inside"], f"first reply not in view at 390 px when done: {at_end}"
    page.screenshot(path=str(shots / "after-390-solve.png"))
    assert page.locator("#r1v-history-empty").count() == 0 or not page.locator("#r1v-history-empty").is_visible()

    # 👍: the chosen one is marked; a new attempt (a hint) resets both.
    page.locator("#r1v-up").click()
    page.wait_for_function("() => document.querySelector('#r1v-up').classList.contains('primary')")
    assert _variant(page, "r1v-down") == "secondary"

    # Follow-up: the box empties when sent; the message reached the tutor (it is in the chat).
    page.locator("textarea[placeholder^='Ask about']").fill("Why subtract 4 first?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("() => document.querySelector(\"textarea[placeholder^='Ask about']\").value === ''")
    page.wait_for_function("() => (document.querySelector('#r1v-chat')?.innerText || '')"
                           ".includes('Why subtract 4 first?')")
    page.wait_for_function(DONE, polling=100)
    page.wait_for_function("() => !document.querySelector('#r1v-up').classList.contains('primary')")

    # Practice (the tutor's own drill on tiny-random), then reopen from the history: the turn is kept.
    page.get_by_role("button", name="Practice problem").click()
    page.wait_for_function("() => (document.querySelector('#r1v-chat')?.innerText || '').includes('Solve 8x')"
                           " || /practice problem of the same kind/i.test("
                           "document.querySelector('#r1v-chat')?.innerText || '')")
    practice_text = page.locator("#r1v-chat .message.bot").last.inner_text().strip().splitlines()[-1]
    page.wait_for_function(DONE, polling=100)

    # History: one card, whole, its caption inside it and readable.
    page.wait_for_function("() => document.querySelectorAll('#r1v-history-list .thumbnail-item img').length == 1")
    card = page.locator("#r1v-history-list .thumbnail-item").first
    card.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('#r1v-history-list .thumbnail-item img').complete")
    size = page.evaluate("() => { const i = document.querySelector('#r1v-history-list .thumbnail-item img');"
                         " return [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width,"
                         " i.getBoundingClientRect().height]; }")
    assert size[:2] == [320, 200], size  # a card, not the photo
    assert abs(size[2] / size[3] - 1.6) < 0.05, size  # shown whole (16:10), not cut to a square
    cap = page.locator("#r1v-history-list .caption-label").first
    cb, ib = cap.bounding_box(), card.bounding_box()
    assert cb and ib and ib["x"] <= cb["x"] and cb["x"] + cb["width"] <= ib["x"] + ib["width"] + 1
    assert ib["y"] <= cb["y"] and cb["y"] + cb["height"] <= ib["y"] + ib["height"] + 1, (cb, ib)
    assert "Math" in cap.inner_text() and cb["height"] >= 12
    page.screenshot(path=str(shots / "after-390-history.png"))

    card.click()
    page.wait_for_function("(t) => (document.querySelector('#r1v-chat')?.innerText || '').includes(t)",
                           arg=practice_text)
    chat = page.locator("#r1v-chat").inner_text()
    assert "Practice problem" in chat and "Why subtract 4 first?" in chat

    # Chinese: the slider's label "候选解答数" stays on one line at 390 px.
    page.get_by_text("中文", exact=True).first.click()
    page.wait_for_function("() => document.querySelector('#r1v-ask-btn').innerText.trim() === '解题'")
    page.wait_for_timeout(300)
    lines = page.evaluate("() => { const s = document.querySelector('#r1v-n [data-testid=block-info]');"
                          " const lh = parseFloat(getComputedStyle(s).lineHeight) || 20;"
                          " return s.getBoundingClientRect().height / lh; }")
    assert lines < 1.6, f"the slider label takes {lines:.1f} lines"
    assert page.locator("#r1v-ui-lang [data-testid=block-info]").inner_text().strip() == "界面语言"
    page.screenshot(path=str(shots / "after-390-zh-full.png"), full_page=True)
    assert not errors, errors


def test_desktop_answer_in_view(page_url, browser, shots):
    page, errors = _open(browser, page_url, 1280, 800)
    page.locator("#r1v-photo input[type=file]").first.set_input_files(str(EXAMPLE))
    page.wait_for_function("() => !!document.querySelector('#r1v-photo canvas, #r1v-photo img')")
    at_start, at_end = _solve(page, "Compute 52+72")
    assert at_start["inside"] and at_end["inside"], (at_start, at_end)
    page.screenshot(path=str(shots / "after-1280-solve.png"))
    assert not errors, errors
