"""What the attack tests share: a local listener that records every request a page sends out, and the
app served on a deliberately misbehaving model server (tests/stub_openai.py) whose reply a test sets.

    def test_x(listener): ...   # listener.url, listener.hits (paths requested so far)
    with app_on_stub(tmp_path, ["think", "</think>", "<img src=...>"]) as (url, store, stub): ...
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def stub():
    """A well-behaved model server per module (``tests/stub_openai.py``); tests switch its mode."""
    from tests.stub_openai import StubServer

    s = StubServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[SimpleNamespace]:
    """An HTTP server on 127.0.0.1 standing in for the attacker's: ``hits`` lists what reached it."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _record(self) -> None:
            hits.append(f"{self.command} {self.path}")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_HEAD = _record

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}", hits=hits)
    server.shutdown()
    server.server_close()


@contextmanager
def app_on_stub(root: Path, answer: list[str], models: list[str] | None = None) -> Iterator[tuple]:
    """The page (``python app.py --server <stub>``'s wiring) on a stub model server that streams ``answer``;
    ``models``: the ids the server lists, the first one used (default: the model named "stub")."""
    from engine.http import HttpEngine
    from tests.browser_app import serve
    from tests.stub_openai import StubServer
    from webui.config import AppConfig

    stub = StubServer(answer=answer)
    if models:
        stub.models = models
    try:
        with serve(root, HttpEngine(stub.url, model=None if models else "stub", max_retries=0), AppConfig()) as (
                url, store):
            yield url, store, stub
    finally:
        stub.close()
