"""Every visible string in the page's language, in headless Chromium (Debian's ``chromium``, Playwright).

On tiny-random (its page flag ``writes_problems`` set, so the page offers the 16 shipped problems and
their table has pages, as with a real model): in the English page a click on an example leaves every
label English and the table fits its column; after a solve, the language toggle turns the page,
Gradio's own strings ("Drop Image Here", "Click to Upload", "Upload an image", the footer) and what
is already shown ("Done in…", "Final answer", the thinking title) Chinese in place, without a reload,
and back; a browser that asks for Chinese gets a Chinese page with Gradio's strings Chinese from the
start. "No string of the other language" is checked on the whole page text: no Latin words in the
Chinese page and no Chinese characters in the English one, beyond names (model, commands, "English"
and "中文" in the switch). Skipped only when /usr/bin/chromium is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import re

import pytest

from tests.browser_app import chromium, needs_chromium, serve
from webui.config import AppConfig

EN_GRADIO = ["Drop Image Here", "Click to Upload", "Upload an image", "Pages", "Use via API", "Built with Gradio",
             "Settings", "Radio", "Textbox", "File", "Done in", "Final answer", "Thinking"]
ZH_GRADIO = ["将图像拖放到此处", "点击上传", "上传图片", "通过 API 使用", "使用 Gradio 构建", "设置", "单选框", "文本框",
             "完成，用时", "最终答案", "思考过程"]
# names that are the same in both pages: the model and backend, commands, the language switch's own names
NAMES = re.compile(r"tiny-random|transformers|--model r1v2-38b-nf4|--server URL|R1V|Gradio|API|GPU|English|中文")

FITS = ("() => { const t = document.querySelector('#r1v-examples table');"
        " return t.getBoundingClientRect().right <= t.parentElement.getBoundingClientRect().right + 1"
        " && t.getBoundingClientRect().right <= window.innerWidth; }")

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    from engine.core import Engine

    engine = Engine("tiny-random")
    engine.writes_problems = True  # the page of a model that writes problems: the 16 shipped examples, 2 pages
    with serve(tmp_path_factory.mktemp("browser-lang"), engine,
               AppConfig(max_new_tokens=8)) as (url, store):
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _open(browser, url, locale):
    page = browser.new_context(viewport={"width": 1280, "height": 1000}, locale=locale).new_page()
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="load")
    page.wait_for_function("() => (document.querySelector('#r1v-status-banner')?.innerText || '')"
                           ".includes('tiny-random')")
    return page


def _text(page) -> str:
    return page.evaluate("() => document.body.innerText")


def _labels(page) -> list[str]:
    return page.locator("[data-testid='block-info']").all_inner_texts()


def _assert_only(page, lang: str) -> None:
    """No string of the other language anywhere in the page's visible text."""
    text = _text(page)
    if lang == "zh":
        found = [s for s in EN_GRADIO if s in text]
        latin = [ln for ln in text.splitlines() if re.search(r"[A-Za-z]{3,}", NAMES.sub("", ln))]
        assert not found and not latin, (found, latin)
    else:
        found = [s for s in ZH_GRADIO if s in text]
        han = [ln for ln in text.splitlines() if re.search(r"[\u4e00-\u9fff]", NAMES.sub("", ln))]
        assert not found and not han, (found, han)


def _switch(page, lang: str) -> None:
    page.get_by_text("中文" if lang == "zh" else "English", exact=True).first.click()
    prefix = "zh" if lang == "zh" else "en"
    ask = "解题" if lang == "zh" else "Solve"
    page.wait_for_function(f"() => document.documentElement.lang.startsWith('{prefix}') && "
                           f"document.querySelector('#r1v-ask-btn').innerText.trim() === '{ask}'")
    page.wait_for_timeout(300)  # the in-place replacement of Gradio's strings runs right after


def test_english_example_click_then_switch_in_place_and_back(page_url, browser):
    page = _open(browser, page_url, "en-US")
    _assert_only(page, "en")
    before = _labels(page)
    assert {"Subject", "Problem type", "Reply language"} <= set(before)

    # a click on an example sets the photo, subject and type; every label stays English
    page.locator("#r1v-examples tbody tr").first.click()
    page.wait_for_function("() => !document.querySelector('#r1v-photo').innerText.includes('Upload an image')")
    page.wait_for_timeout(500)
    assert _labels(page) == before
    table = page.locator("#r1v-examples")
    assert "Math · Single choice · in Chinese" in table.inner_text()
    assert page.evaluate(FITS)  # no column cut off at 1280 px
    _assert_only(page, "en")

    page.locator("#r1v-ask-btn").click()
    page.wait_for_function("() => (document.querySelector('#r1v-status')?.innerText || '').startsWith('Done in')")
    assert "Final answer" in page.locator("#r1v-answer").inner_text()
    page.evaluate("() => { window.__r1v_same_page = true; }")

    _switch(page, "zh")
    assert page.evaluate("() => window.__r1v_same_page === true")  # switched in place: nothing was lost
    assert page.locator("#r1v-status").inner_text().startswith("完成，用时")
    assert "最终答案" in page.locator("#r1v-answer").inner_text()
    assert "思考过程" in page.locator("#r1v-chat").inner_text()
    work = page.locator("[data-testid='image']").last.inner_text()  # the work photo's empty upload box
    assert "将图像拖放到此处" in work and "点击上传" in work
    _assert_only(page, "zh")

    _switch(page, "en")
    assert page.evaluate("() => window.__r1v_same_page === true")
    assert "Drop Image Here" in _text(page) and "Final answer" in page.locator("#r1v-answer").inner_text()
    _assert_only(page, "en")
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(300)
    assert page.evaluate(FITS), "the examples table is cut off at 390 px"
    page.context.close()


def test_chinese_browser_gets_gradio_strings_in_chinese(page_url, browser):
    page = _open(browser, page_url, "zh-CN")
    text = _text(page)
    assert "解题" in text and "上传图片" in text and "将图像拖放到此处" in text and "点击上传" in text
    _assert_only(page, "zh")
    page.context.close()
