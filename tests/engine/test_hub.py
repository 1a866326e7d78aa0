"""Hub refusals through the real download path: a local server answers like the hub does for a gated repo.

The server (started here) lists the repository (200) and answers every file with 401 (no token) or 403
(a token whose account has not accepted the terms) and ``X-Error-Code: GatedRepo``, as the hub does;
``huggingface_hub`` turns that into its own ``GatedRepoError``. ``load_reward`` / ``resolve`` run in a
subprocess with ``HF_ENDPOINT`` pointing at the server (huggingface_hub reads it at import).

    python -m pytest tests/engine/test_hub.py -q
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPO = "Skywork/Skywork-VL-Reward-7B"


class _GatedHub(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *a):  # quiet
        pass

    def _answer(self, body: bool) -> None:
        self.seen.append((self.command, self.path, bool(self.headers.get("authorization"))))
        if self.path.startswith("/api/models/"):  # repo metadata and its file list are public for a gated repo
            names = ("config.json", "value_head.safetensors", "model-00001-of-00004.safetensors")
            if "/tree/" in self.path:
                meta = [{"type": "file", "path": n, "size": 10, "oid": "b" * 40} for n in names]
            else:
                meta = {"id": REPO, "sha": "a" * 40, "gated": "manual", "private": False,
                        "siblings": [{"rfilename": n} for n in names]}
            data = json.dumps(meta).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)
            return
        token = bool(self.headers.get("authorization"))
        status = 403 if token else 401
        msg = (f"Access to model {REPO} is restricted and you are not in the authorized list. Visit "
               f"https://huggingface.co/{REPO} to ask for access." if token else
               f"Access to model {REPO} is restricted. You must have access to it and be authenticated to access it. "
               "Please log in.")
        data = json.dumps({"error": msg}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", msg)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)


@pytest.fixture
def gated_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GatedHub)
    _GatedHub.seen = []
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run(code: str, endpoint: str, tmp_path: Path, token: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), R1V_DATA_DIR=str(tmp_path / "data"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    if token:
        env["HF_TOKEN"] = token
    script = ("import json, sys\nfrom tutor.errors import EngineError\ntry:\n" + "".join(
        "    " + line + "\n" for line in code.splitlines()) +
        "    print(json.dumps({'ok': True}))\nexcept EngineError as e:\n"
        "    print(json.dumps({'code': e.code, 'en': e.en, 'zh': e.zh, 'detail': e.detail}))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_gated_reward_without_token_says_accept_terms_and_set_hf_token(gated_hub, tmp_path):
    r = _run("from engine.reward import resolve_reward\nresolve_reward('skywork-vl-reward-7b')", gated_hub, tmp_path,
             token=None)
    assert r.get("code") == "hub_gated", r
    assert "GatedRepoError" in r["detail"]  # huggingface_hub's own class, from the 401 + X-Error-Code
    assert f"https://huggingface.co/{REPO}" in r["en"] and "accept the terms" in r["en"]
    assert "HF_TOKEN" in r["en"] and "network" not in r["en"]
    assert "同意条款" in r["zh"] and "HF_TOKEN" in r["zh"] and "网络" not in r["zh"]
    assert any("/resolve/" in path for _, path, _ in _GatedHub.seen)  # it really asked for a file


def test_gated_reward_with_token_says_that_account_must_accept(gated_hub, tmp_path):
    r = _run("from engine.reward import resolve_reward\nresolve_reward('skywork-vl-reward-7b')", gated_hub, tmp_path,
             token="hf_notaccepted")
    assert r.get("code") == "hub_gated", r
    assert "403" in r["en"] and "has not accepted" in r["en"] and f"https://huggingface.co/{REPO}" in r["en"]
    assert "还没有同意" in r["zh"]
    assert any(auth for _, path, auth in _GatedHub.seen if "/resolve/" in path)  # the token was sent


def test_unreachable_hub_still_says_check_the_network(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _run("from engine.loading import resolve\nresolve('r1v2-38b')", f"http://127.0.0.1:{port}", tmp_path,
             token=None)
    # the doctor's preflight (engine.doctor) reads the small files first, so it is the one that says it
    assert r.get("code") in ("download_failed", "hub_unreachable"), r
    assert "Check the network" in r["en"] and "检查网络" in r["zh"] and "ConnectError" in r["detail"]
