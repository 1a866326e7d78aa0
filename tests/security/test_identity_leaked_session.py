"""Issue 22, High 1: a leaked Gradio session hash gives nothing of its visitor.

The victim is a real Chromium page (its session hash read from its own queue requests, as a proxy log
or a shared HAR file would show it) or a gradio_client visitor; the attacker is a fresh HTTP client
holding only that hash. Before the fix, Gradio's open ``/gradio_api/deep_link?session_hash=`` saved the
session's page state, visitor id included: with it the attacker read the history, exported and
deleted the problem; the hash alone let anyone Stop the victim's answer or read its stream.

    python -m pytest tests/security/test_identity_leaked_session.py -q
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.browser_app import chromium, needs_chromium, serve
from tests.security.attack import Api, strings
from tests.stub_openai import StubServer
from webui.config import AppConfig

SECRET_Q = "Victim's private question 5521: solve 3x+1=10"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from engine.http import HttpEngine

    stub = StubServer()
    with serve(tmp_path_factory.mktemp("leak"), HttpEngine(stub.url, model="stub", max_retries=0),
               AppConfig()) as (url, store):
        yield url, store, stub
    stub.close()


def _victim_asks(browser, url: str) -> tuple[str, object]:
    """A visitor asks SECRET_Q on the page and closes the tab; (their session hash, their context)."""
    ctx = browser.new_context(locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    hashes: list[str] = []

    def seen(req):
        from urllib.parse import parse_qs, urlparse

        if req.method == "POST" and "/queue/join" in req.url:
            hashes.append(json.loads(req.post_data or "{}").get("session_hash", ""))
        hashes.extend(parse_qs(urlparse(req.url).query).get("session_hash", []))

    page.on("request", seen)
    page.goto(url, wait_until="load")
    page.wait_for_function("() => (document.querySelector('#r1v-status-banner')?.innerText || '').includes('stub')")
    page.locator("#r1v-question textarea").fill(SECRET_Q)
    page.locator("#r1v-ask-btn").click()
    page.wait_for_function("() => (document.querySelector('#r1v-status')?.innerText || '').startsWith('Done in')")
    page.close()
    assert hashes and len(set(hashes)) == 1
    return hashes[0], ctx


@needs_chromium
def test_a_leaked_session_hash_gives_no_history_export_or_delete(app):
    url, store, _ = app
    with chromium() as browser:
        session, ctx = _victim_asks(browser, url)
        time.sleep(2)  # "2 s after the tab closed"
        api = Api(url)
        eve = httpx.Client()
        loot: list = []
        labels: list[str] = []

        def got(label: str, value: object) -> None:
            labels.append(label)
            loot.append(value)

        r = eve.get(url + "gradio_api/deep_link", params={"session_hash": session}, timeout=10)
        got("deep_link", r.text)
        candidates: list[str] = []
        if r.status_code == 200 and r.json():
            state = eve.get(url + "config", params={"deep_link": r.json()}, timeout=10)
            got("deep-link page state", state.text)
            comps = state.json().get("components", []) if state.status_code == 200 else []
            values = [c.get("props", {}).get("value") for c in comps]
            candidates = [s for s in strings(values, 100) if " " not in s and len(s) >= 8]
        for stolen in candidates or [None]:
            got("history", api.call(eve, "history", ["en"], stolen_id=stolen))
            # the victim's own session (its open problem is in the session's state)
            got("export", api.call(eve, "export", ["en", None], session_hash=session, stolen_id=stolen))
            got("reopen", api.call(eve, "reopen", ["en", None], session_hash=session, stolen_id=stolen))
            for _ in range(2):  # Delete asks first, then deletes
                got("delete", api.call(eve, "delete", ["en", None, None], session_hash=session, stolen_id=stolen))
        for f in [s for s in strings(loot, 1000) if s.endswith(".html")]:
            got("exported file", eve.get(f"{url}gradio_api/file={f}", timeout=10).text)
        leaks = sorted({lab for lab, x in zip(labels, loot, strict=True) if "3x+1=10" in json.dumps(x, ensure_ascii=False)
                        or "#1 · Math" in json.dumps(x, ensure_ascii=False)})
        assert not leaks, f"the attacker got the victim's problem through {leaks} ({len(candidates)} ids tried)"
        assert any("3x+1=10" in q for q in _questions(store)), "the attacker deleted the victim's problem"
        ctx.close()


def _questions(store) -> list[str]:
    """Every question in the database file itself (did the victim's problem survive?)."""
    import sqlite3

    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as db:
        return [q for (q,) in db.execute("select question from problems")]


def test_a_leaked_session_hash_cannot_stop_or_read_an_answer(app):
    from gradio_client import Client

    url, _, stub = app
    stub.mode, stub.delay = "slow", 3.0  # the victim's answer takes 3 s
    try:
        victim = Client(url, verbose=False)
        api = Api(url)
        job = victim.submit(*api.data("ask", ["en", None, [], "Slow question 8812: solve x+4=9", "math", "auto",
                                               "en", 1], "victim-visitor-id"), api_name="/ask")
        time.sleep(1.0)  # the answer is running
        eve = httpx.Client()
        heard: list = []
        t = threading.Thread(target=lambda: heard.extend(api.listen(eve, victim.session_hash, timeout=15)))
        t.start()
        stop = eve.post(url + "gradio_api/run/predict", timeout=10,
                        json={"data": [], "fn_index": api.fn("stop"), "session_hash": victim.session_hash})
        try:
            status = job.result(timeout=60)[1]
        except Exception as e:  # noqa: BLE001 - the attacker took the victim's messages
            status = f"the victim's call failed: {e!r}"
        t.join(timeout=20)
        assert status.startswith("Done in"), f"the attacker's Stop ({stop.status_code}) stopped it: {status!r}"
        assert "x+4=9" not in json.dumps(heard, ensure_ascii=False), "the attacker read the victim's stream"
    finally:
        stub.mode = "ok"
