"""The pinned sglang-router checks the clients' API key (issue 19 point 7; SGLang PR 10826).

Before PR 10826 the router's ``--api-key`` only authenticated the router to its workers, so a router
started by ``python -m engine serve --replicas N --api-key K`` was open to anyone. This starts the
router exactly as the launcher plans it (``engine.serve.plan``), with the pinned sglang-router from the
SGLang env (``engine.envs``), in front of workers that are not running: a request without the key, or
with a wrong one, must be refused (401); with the key it passes the check and finds no worker (503).
Skipped, with the reason, only when the SGLang env cannot be built (see test_sglang_template.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx

from engine.serve import ServeOptions, plan
from tests.test_sglang_template import sglang_python  # noqa: F401  (the module-scoped env fixture)

BODY = {"model": "r1v2-38b-awq", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=headers, timeout=10).status_code


def test_the_router_refuses_clients_without_the_key(sglang_python, tmp_path):  # noqa: F811
    port = _free_port()
    launches = plan(ServeOptions(model="r1v2-38b-awq", replicas=2, host="127.0.0.1", port=port, api_key="k-123",
                                 context_length=8192))
    router = launches[-1]
    assert router.argv[:3] == ["python", "-m", "sglang_router.launch_router"] and "--api-key" in router.argv
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    with open(tmp_path / "router.log", "w") as log:
        proc = subprocess.Popen([str(sglang_python), *router.argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "router.log").read_text()[-3000:]
            try:
                first = _post(router.url, None)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the router did not start"
                time.sleep(0.5)
        assert first == 401
        assert _post(router.url, "wrong") == 401
        assert _post(router.url, "k-123") == 503  # past the key check; its workers are not running
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
