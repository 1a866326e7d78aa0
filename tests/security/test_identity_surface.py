"""Issue 22, the Low items of the identity part, through HTTP: ``/monitoring/summary`` is closed to
anyone without the monitoring token, other sites cannot frame the page, and a visitor never sees
the internal model server's address (here: a server that is down, whose error names it).

    python -m pytest tests/security/test_identity_surface.py -q
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.browser_app import serve
from webui.config import AppConfig


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from engine.http import HttpEngine

    server = f"http://127.0.0.1:{_closed_port()}"  # the internal address: nothing listens there
    with serve(tmp_path_factory.mktemp("surface"), HttpEngine(server, model="m", max_retries=0),
               AppConfig()) as (url, _):
        yield url, server


def test_monitoring_summary_is_not_open(app):
    url, _ = app
    for path in ("monitoring/summary", "monitoring", "gradio_api/monitoring/summary"):
        r = httpx.get(url + path, timeout=10)
        assert r.status_code in (401, 403, 404), (path, r.status_code, r.text[:200])


def test_other_sites_cannot_frame_the_page(app):
    url, _ = app
    r = httpx.get(url, timeout=10)
    csp = r.headers.get("content-security-policy", "")
    xfo = r.headers.get("x-frame-options", "").upper()
    assert xfo in ("DENY", "SAMEORIGIN") or "frame-ancestors 'self'" in csp, dict(r.headers)
    assert "*" not in csp.split("frame-ancestors", 1)[-1].split(";")[0]


def test_the_model_servers_address_is_not_shown(app):
    from gradio_client import Client

    url, server = app
    host = server.split("//")[1]
    visitor = Client(url, verbose=False)
    from tests.security.attack import Api

    args = Api(url).data("ask", ["en", None, [], "Solve 2x=8.", "math", "auto", "en", 1], "visitor-surface")
    status = visitor.predict(*args, api_name="/ask")[1]
    assert "model server" in status and host not in status, status
    args = Api(url).data("ask", ["zh", None, [], "解方程 2x=8", "math", "auto", "zh", 1], "visitor-surface")
    status = visitor.predict(*args, api_name="/ask")[1]
    assert "模型服务器" in status and host not in status, status


def test_monitoring_opens_with_its_token(tmp_path):
    """Not an attack: the operator's way in (``R1V_MONITORING_TOKEN``) still works."""
    from app import build_app, launch_kwargs
    from tutor.store import Store
    from webui.identity import Identity

    ident = Identity(secret=b"k" * 32, monitoring_token="op-token-1")
    store = Store(f"sqlite:///{tmp_path / 'r1v.db'}", image_dir=tmp_path / "images")
    cfg = AppConfig()
    demo = build_app(engine=object(), store=store, cfg=cfg, identity=ident)
    demo.queue(max_size=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store, ident))
    try:
        assert httpx.get(url + "monitoring/summary", timeout=10).status_code == 403
        wrong = httpx.get(url + "monitoring/summary", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 403
        ok = httpx.get(url + "monitoring/summary", headers={"Authorization": "Bearer op-token-1"}, timeout=10)
        assert ok.status_code == 200, ok.text[:200]
    finally:
        demo.close()
        store.close()


def test_odd_cookies_and_tokens_are_refused_cleanly(app):
    url, _ = app
    odd = ["r1v_visitor=\xe9\xe9.\xe9", 'r1v_visitor="a.b"; x=1', "r1v_visitor=" + "A" * 32 + "." + "\xff" * 43,
           "r1v_visitor=" + "a" * 5000, ";;;=;"]
    for cookie in odd:
        r = httpx.get(url + "config", headers={"Cookie": cookie.encode("latin-1")}, timeout=10)
        assert r.status_code == 200 and "r1v_visitor=" in r.headers.get("set-cookie", ""), cookie[:40]
    r = httpx.get(url + "monitoring/summary", headers={"Authorization": "Bearer \xe9".encode("latin-1")}, timeout=10)
    assert r.status_code == 403
