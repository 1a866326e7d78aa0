"""An outside client of the running app, for the attack tests: only HTTP, no app internals.

    from tests.security.attack import Api
    api = Api(url)                                 # reads /config and /gradio_api/info
    api.takes_visitor("history")                   # True on the page of before issue 22 (a visitor-id input)
    r = api.join(http, "history", ["en"], session_hash="abc", stolen_id="...")   # POST queue/join
    msgs = api.listen(http, "abc")                 # the session's queue messages (SSE)

``stolen_id`` is put first when the endpoint still takes a visitor id, so one attack test runs
unchanged against the code before the fix (to record that it failed) and after it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx


class Api:
    def __init__(self, url: str):
        self.url = url if url.endswith("/") else url + "/"
        self.config = httpx.get(self.url + "config", timeout=30).json()
        self.info = httpx.get(self.url + "gradio_api/info", timeout=30).json()

    def fn(self, api_name: str) -> int:
        for d in self.config["dependencies"]:
            if d.get("api_name") == api_name:
                return d["id"]
        raise KeyError(api_name)

    def inputs(self, api_name: str) -> int:
        d = next(d for d in self.config["dependencies"] if d.get("api_name") == api_name)
        return len(d.get("inputs", []))

    def takes_visitor(self, api_name: str) -> bool:
        """Whether the endpoint's first input is the visitor id (the page before issue 22)."""
        params = self.info.get("named_endpoints", {}).get("/" + api_name, {}).get("parameters", [])
        return bool(params) and params[0].get("parameter_name") in ("visitor", "visitor_id")

    def data(self, api_name: str, args: list, stolen_id: str | None) -> list:
        return [stolen_id or "", *args] if self.takes_visitor(api_name) else list(args)

    def join(self, http: httpx.Client, api_name: str, args: list, *, session_hash: str | None = None,
             stolen_id: str | None = None, headers: dict | None = None) -> httpx.Response:
        body = {"data": self.data(api_name, args, stolen_id), "fn_index": self.fn(api_name),
                "session_hash": session_hash or secrets.token_hex(6), "event_data": None, "trigger_id": None}
        return http.post(self.url + "gradio_api/queue/join", json=body, headers=headers or {}, timeout=30)

    def listen(self, http: httpx.Client, session_hash: str, timeout: float = 60) -> list[dict]:
        """The queue messages of ``session_hash`` until its events complete (or a refusal: [])."""
        out: list[dict] = []
        with http.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": session_hash},
                         timeout=timeout) as r:
            if r.status_code != 200:
                return [{"msg": "refused", "status": r.status_code}]
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                out.append(msg)
                if msg.get("msg") in ("close_stream", "unexpected_error"):
                    break
                if msg.get("msg") == "process_completed" and not _more(out):
                    break
        return out

    def call(self, http: httpx.Client, api_name: str, args: list, *, session_hash: str | None = None,
             stolen_id: str | None = None, headers: dict | None = None) -> tuple[int, Any]:
        """join + listen: (status of the join, the completed output's data or None)."""
        sh = session_hash or secrets.token_hex(6)
        r = self.join(http, api_name, args, session_hash=sh, stolen_id=stolen_id, headers=headers)
        if r.status_code != 200:
            return r.status_code, None
        done = [m for m in self.listen(http, sh) if m.get("msg") == "process_completed"]
        return 200, (done[-1].get("output") or {}).get("data") if done else None


def _more(msgs: list[dict]) -> bool:
    started = sum(m.get("msg") == "process_starts" for m in msgs)
    done = sum(m.get("msg") == "process_completed" for m in msgs)
    return started > done


def strings(obj: Any, limit: int = 200) -> list[str]:
    """Every string in a JSON value (short ones only: candidate ids an attacker would try)."""
    if isinstance(obj, str):
        return [obj] if 0 < len(obj) <= limit else []
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in strings(v, limit)]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v, limit)]
    return []
