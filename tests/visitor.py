"""How a test is a visitor now that the visitor is a signed HttpOnly cookie (``webui.identity``).

    from tests.visitor import store_id, same_visitor, fake_request
    c = gradio_client.Client(url)           # one visitor: it keeps the cookie set on its first /config
    store.list_problems(store_id(c))        # that visitor's store id ("v:<id>")
    again = same_visitor(url, c)            # another client carrying the same cookie
    app.export("en", pid, fake_request("some-visitor-id"))   # only where a test calls a handler directly
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

COOKIE = "r1v_visitor"


def cookie_of(client: Any) -> str:
    return client.cookies[COOKIE]


def store_id(client_or_cookie: Any) -> str:
    value = client_or_cookie if isinstance(client_or_cookie, str) else cookie_of(client_or_cookie)
    return "v:" + value.split(".")[0]


def same_visitor(url: str, client: Any) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, httpx_kwargs={"cookies": {COOKIE: cookie_of(client)}})


def fake_request(vid: str, session_hash: str = "s-test", address: str = "test-address") -> Any:
    """A stand-in for ``gr.Request`` as the middleware leaves it: the store id is ``"v:" + vid``."""
    return SimpleNamespace(session_hash=session_hash, headers={},
                           request=SimpleNamespace(scope={"state": {"r1v_visitor": vid, "r1v_address": address}}))
