"""The thinking budget on the real page (headless Chromium): type a budget into the control, ask, and the
chat says the candidate ran out of thinking budget and what to do; a bad budget is refused on the page.

tiny-random has random weights: in 6 tokens it never closes its thinking, which is the case shown.

    python -m pytest tests/test_browser_budget.py -q
"""

from __future__ import annotations

import pytest

from tests.browser_app import chromium, needs_chromium, serve
from webui.config import AppConfig

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from engine.core import Engine

    with serve(tmp_path_factory.mktemp("budget-app"), Engine("tiny-random"), AppConfig()) as (url, store):
        with chromium() as browser:
            p = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-US").new_page()
            p.set_default_timeout(90_000)
            p.goto(url, wait_until="load")
            p.wait_for_function("() => (document.querySelector('#r1v-status-banner')?.innerText || '')"
                                ".includes('tiny-random')")
            yield p, store, tmp_path_factory.mktemp("shots")


def _set_budget(p, value: str) -> None:
    box = p.locator("#r1v-budget input[type=number]")
    box.fill(value)
    box.press("Enter")
    box.blur()


def test_the_budget_typed_on_the_page_is_used_and_running_out_is_explained(page):
    p, store, shots = page
    box = p.locator("#r1v-budget input[type=number]")
    assert box.input_value() == "64"  # tiny-random's budget
    assert "Thinking budget" in p.locator("#r1v-budget").inner_text()
    _set_budget(p, "6")
    p.wait_for_timeout(500)
    p.locator("#r1v-question textarea").fill("What is 2+3?")
    p.locator("#r1v-ask-btn").click()
    p.wait_for_function("() => (document.querySelector('#r1v-chat')?.innerText || '').includes('Ran out of thinking budget')")
    chat = p.locator("#r1v-chat").inner_text()
    assert "used all 6 tokens" in chat and "Raise" in chat
    assert "Ran out of thinking budget" in p.locator("#r1v-answer").inner_text()
    p.screenshot(path=str(shots / "budget.png"), full_page=True)


@pytest.mark.parametrize("value", ["0", "99999"])
def test_a_bad_budget_is_refused_on_the_page_in_its_language(page, value):
    p, _, _ = page
    _set_budget(p, value)
    p.wait_for_function("() => (document.querySelector('#r1v-status')?.innerText || '')"
                        ".includes('thinking budget must be a whole number of tokens from 1 to 64000')")
    _set_budget(p, "6")  # a good value clears the message
    p.wait_for_function("() => !(document.querySelector('#r1v-status')?.innerText || '').includes('thinking budget')")
