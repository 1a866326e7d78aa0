"""Issue 22, Medium 6 (and the migration of High 1): nothing in the browser or in ``/config``
identifies a visitor, and what the browser keeps does not work pasted into another browser.

Before the fix ``/config`` served the key that encrypted the visitor id in localStorage (the id
decrypts offline), Gradio kept each call's inputs and outputs (the chat) in plain text in
localStorage, and the stored value pasted into a second browser opened the first one's history.
The migration test stands in for a visitor of the old page: their old id (in the old page's format)
in localStorage, first visit after the upgrade: they keep their history, once, and the id leaves.

    python -m pytest tests/security/test_identity_browser_storage.py -q
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.browser_app import chromium, needs_chromium, serve
from tests.stub_openai import StubServer
from webui.config import AppConfig

pytestmark = needs_chromium
SECRET_Q = "Stored question 6403: solve 5x-2=13"
# the page's load handler has run: it sets the banner and checks the page-language radio
BANNER = ("() => (document.querySelector('#r1v-status-banner')?.innerText || '').length > 0"
          " && !!document.querySelector('#r1v-ui-lang input:checked')")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from engine.http import HttpEngine

    stub = StubServer()
    with serve(tmp_path_factory.mktemp("storage"), HttpEngine(stub.url, max_retries=0), AppConfig()) as (url, store):
        yield url, store, stub
    stub.close()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _open(ctx, url):
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="load")
    page.wait_for_function(BANNER)
    return page


def _history_text(page) -> str:
    page.locator("#r1v-history").get_by_text("My problems").first.click()
    page.wait_for_timeout(1500)
    return page.locator("#r1v-history").inner_text()


def test_nothing_stored_in_the_browser_or_served_identifies_the_visitor(app, browser):
    from webui.legacy_id import decrypt  # CryptoJS's format, what `openssl enc -d` does with the key

    url, _, stub = app
    a = browser.new_context(locale="en-US")
    page = _open(a, url)
    page.locator("#r1v-question textarea").fill(SECRET_Q)
    page.locator("#r1v-ask-btn").click()
    page.wait_for_function("() => (document.querySelector('#r1v-status')?.innerText || '').startsWith('Done in')")
    page.wait_for_timeout(1000)
    stored = page.evaluate("() => Object.fromEntries(Object.entries(localStorage))")
    found = []  # every finding, so a run before the fix names them all
    if "5x-2=13" in json.dumps(stored, ensure_ascii=False):
        found.append("the chat is kept in localStorage")
    if "r1v_visitor" in page.evaluate("() => document.cookie"):
        found.append("the visitor cookie is readable by script")

    # what any client gets from /config: keys that decrypt what the browser stored
    config = httpx.get(url + "config", timeout=10).json()
    keys = [c["props"]["secret"] for c in config["components"] if c.get("props", {}).get("secret")]
    plain = [p for v in stored.values() if isinstance(v, str) for k in keys if (p := decrypt(v, k))]
    if [p for p in plain if p not in ('"en"', '"zh"')]:
        found.append(f"/config's key decrypts localStorage: {plain}")

    # the page banner does not show the internal model-server address
    if stub.url.split("//")[1] in page.locator("#r1v-status-banner").inner_text():
        found.append("the banner shows the model server's address")

    # everything the browser kept, pasted into another browser, opens nothing of the first one's
    b = browser.new_context(locale="en-US")
    page_b = _open(b, url)
    page_b.evaluate("(s) => { for (const [k, v] of Object.entries(s)) localStorage.setItem(k, v); }", stored)
    page_b.reload(wait_until="load")
    page_b.wait_for_function(BANNER)
    if "#1 ·" in _history_text(page_b):
        found.append("the pasted storage opened the first browser's history")
    assert not found, found
    assert "#1 ·" in _history_text(_open(a, url))  # the first browser still has it
    a.close()
    b.close()


def test_an_old_visitor_keeps_their_history_once_and_the_old_id_leaves(app, browser):
    from tutor import settings
    from webui.legacy_id import encrypt

    url, store, _ = app
    old_id = "0b7a5c1e9d2f4a6b8c0d1e2f3a4b5c6d"  # what the old page handed out (uuid4 hex)
    store.add_problem(old_id, question="Old visitor's problem 7781: 4+4", lang="en")
    key_file = settings.data_dir() / "browser_secret"
    if not key_file.exists():
        key_file.write_text("0123456789abcdef0123456789abcdef", encoding="utf-8")
    blob = encrypt(json.dumps(old_id), key_file.read_text(encoding="utf-8").strip())  # the old page's format

    ctx = browser.new_context(locale="en-US")
    page = _open(ctx, url)
    page.evaluate("(b) => localStorage.setItem('r1v_visitor', b)", blob)
    page.reload(wait_until="load")
    page.wait_for_function(BANNER)
    assert "#1 ·" in _history_text(page), "the old visitor lost their history"
    page.wait_for_timeout(500)
    assert page.evaluate("() => localStorage.getItem('r1v_visitor')") is None, "the old id stays in the browser"
    assert _history_text(_open(ctx, url)).count("#1 ·") >= 1  # still theirs on the next visit (the cookie)

    other = browser.new_context(locale="en-US")  # the same old value elsewhere: it worked once
    page2 = _open(other, url)
    page2.evaluate("(b) => localStorage.setItem('r1v_visitor', b)", blob)
    page2.reload(wait_until="load")
    page2.wait_for_function(BANNER)
    assert "#1 ·" not in _history_text(page2), "the old id opened the history a second time"
    ctx.close()
    other.close()
