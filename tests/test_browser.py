"""The real page in headless Chromium (Debian's ``chromium`` package, driven by Playwright's Python API).

Uploads an example photo, asks on tiny-random, waits for the answer, checks that KaTeX rendered the
formulas (the typed question echoed in the chat and in the answer panel: tiny-random's own text is
random, so it is not what the assertion relies on), that the thinking block is folded once the answer
is there and opens and folds again on click, that the history panel lists the problem, that the
language toggle relabels the page, that nothing overflows a 390 px viewport, and saves screenshots
(desktop and 390 px mobile width) plus the measured times under the test's tmp folder. Skipped only when /usr/bin/chromium is missing
(``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.browser_app import chromium, needs_chromium, serve
from webui.config import AppConfig

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "math-en-cubic-graph.jpg"
QUESTION = "Solve $x^2 - 5x + 6 = 0$ and check $\\frac{a}{b}$."

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    from engine.core import Engine

    with serve(tmp_path_factory.mktemp("browser-app"), Engine("tiny-random"),
               AppConfig(max_new_tokens=12)) as (url, store):
        yield url, store


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _open(browser, url, **ctx):
    page = browser.new_context(**ctx).new_page()
    page.set_default_timeout(90_000)
    page.goto(url, wait_until="load")
    # on_load has run once the status banner names the model.
    page.wait_for_function("() => (document.querySelector('#r1v-status-banner')?.innerText || '')"
                           ".includes('tiny-random')")
    return page


def test_upload_ask_katex_fold_and_screenshots(page_url, browser, tmp_path):
    url, _ = page_url
    start = time.perf_counter()
    page = _open(browser, url, viewport={"width": 1280, "height": 1000}, locale="en-US")
    marks = {"loaded": time.perf_counter() - start}
    assert page.locator("#r1v-ask-btn").inner_text().strip() == "Solve"  # English from Accept-Language

    page.locator("#r1v-photo input[type=file]").first.set_input_files(str(EXAMPLE))
    page.wait_for_function("() => !!document.querySelector('#r1v-photo canvas, #r1v-photo img')")
    page.locator("#r1v-question textarea").fill(QUESTION)

    marks["uploaded"] = time.perf_counter() - start
    t0 = time.perf_counter()
    page.locator("#r1v-ask-btn").click()
    # The first streamed token: the thinking block appears with model text in it.
    page.wait_for_function("() => !!document.querySelector('#r1v-chat .thought-group')", polling=20)
    t_first = time.perf_counter() - t0
    page.wait_for_function("() => (document.querySelector('#r1v-status')?.innerText || '').startsWith('Done in')",
                           polling=20)
    t_done = time.perf_counter() - t0

    # KaTeX rendered the typed formulas in the chat echo and in the answer panel.
    assert page.locator("#r1v-chat .katex").count() >= 2
    assert page.locator("#r1v-answer .katex").count() >= 2
    assert page.locator("#r1v-answer .katex-mathml annotation").first.text_content() == "x^2 - 5x + 6 = 0"

    # The thinking block folded when the answer arrived; it opens and folds again on click.
    title = page.locator("#r1v-chat .thought-group .title").first
    assert "expanded" not in (title.get_attribute("class") or "")
    title.click()
    page.wait_for_function("() => document.querySelector('#r1v-chat .thought-group .title')"
                           ".classList.contains('expanded')")
    title.click()
    page.wait_for_function("() => !document.querySelector('#r1v-chat .thought-group .title')"
                           ".classList.contains('expanded')")
    page.screenshot(path=str(tmp_path / "desktop.png"), full_page=True)
    marks["answered"] = time.perf_counter() - start

    # The history panel lists this visitor's problem (the visitor is an HttpOnly cookie: webui.identity).
    page.locator("#r1v-history").get_by_text("My problems").first.click()
    page.wait_for_function("() => document.querySelectorAll('#r1v-history-list img').length == 1")
    assert "Math" in page.locator("#r1v-history-list").inner_text()
    marks["history"] = time.perf_counter() - start

    timings = {"click_to_first_token_s": round(t_first, 2), "click_to_done_s": round(t_done, 2)}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    print(f"\nbrowser timings on tiny-random: {timings}; screenshots in {tmp_path}")

    # Mobile width on the same page, switched to Chinese with the language toggle.
    page.get_by_text("中文", exact=True).first.click()
    page.wait_for_function("() => document.querySelector('#r1v-ask-btn').innerText.trim() === '解题'")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 392, f"page is {width}px wide at a 390px viewport"
    box = page.locator("#r1v-ask-btn").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
    page.screenshot(path=str(tmp_path / "mobile-390.png"), full_page=True)
    marks["mobile"] = time.perf_counter() - start
    print(f"test steps (s since page load started): {marks}")
    assert (tmp_path / "desktop.png").stat().st_size > 10_000 and (tmp_path / "mobile-390.png").exists()
