"""engine.reward_server + engine.reward_client on tiny-reward: served scores equal the in-process scorer's,
the images are encoded once per request, the API key, health, bad requests and limits, retries, the
fallback to answer agreement with a note, and the engine/CLI rerank through ``--reward http://...``."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from engine.core import Candidate, Engine, Sampling
from engine.reward import load_reward, with_settings
from engine.reward_client import HttpRewardScorer
from engine.reward_server import MAX_RESPONSES, make_server
from tutor.errors import EngineError

ROOT = Path(__file__).resolve().parents[2]
KEY = "s3cret"
QUESTION = "Solve 2x + 3 = 7. Put the final answer in \\boxed{}."
RESPONSES = ["2x = 4, so x = \\boxed{2}.", "x = \\boxed{3}", "Subtract 3 from both sides: 2x = 4. " * 6, "ok"]


@pytest.fixture(scope="module")
def scorer():
    return load_reward("tiny-reward", device="cpu")


@pytest.fixture(scope="module")
def photo():
    im = Image.new("RGB", (336, 224), "white")
    ImageDraw.Draw(im).text((30, 30), "2x + 3 = 7", fill="black")
    return im


@pytest.fixture(scope="module")
def server(scorer):
    srv = make_server(scorer, host="127.0.0.1", port=0, api_key=KEY)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def client(server):
    return HttpRewardScorer(server.url, api_key=KEY, backoff=0.0)


def _raw(url: str, path: str, body: bytes | None = None, key: str | None = KEY, headers: dict | None = None):
    """(status, JSON) of one request, whatever the status."""
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url + path, data=body, headers=h, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _cands():
    return [Candidate(0, "think a", "so \\boxed{2}", "2", 10, "stop", False),
            Candidate(1, "think b " * 30, "then \\boxed{3}", "3", 12, "stop", False),
            Candidate(2, "never closed", "", "", 64, "length", True),
            Candidate(3, "think d", "\\boxed{2}", "2", 8, "stop", False)]


def test_served_scores_equal_the_in_process_scorer(scorer, client, photo):
    local = scorer.score([photo], QUESTION, RESPONSES)
    remote = client.score([photo], QUESTION, RESPONSES)
    assert remote == pytest.approx(local, abs=1e-5)
    assert len({round(s, 4) for s in remote}) == len(remote)  # really different scores, not a constant
    # candidates are read on the server as the in-process scorer reads them (answer part, truncated tail)
    assert client.score([photo], QUESTION, _cands()) == pytest.approx(scorer.score([photo], QUESTION, _cands()),
                                                                      abs=1e-5)
    # two images, and none
    other = Image.new("RGB", (224, 224), "black")
    assert client.score([photo, other], QUESTION, RESPONSES[:2]) == pytest.approx(
        scorer.score([photo, other], QUESTION, RESPONSES[:2]), abs=1e-5)
    assert client.score([], QUESTION, RESPONSES[:2]) == pytest.approx(scorer.score([], QUESTION, RESPONSES[:2]),
                                                                      abs=1e-5)
    assert client.name == scorer.name and client.last_timings["responses"] == 2


def test_images_are_encoded_once_per_request(scorer, client, photo):
    calls = []
    hook = scorer.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    try:
        small = with_settings(scorer, batch_size=2)  # several batches share the one encoding
        assert small.settings.batch_size == 2
        client.score([photo], QUESTION, RESPONSES)  # n=4 in one request
        assert len(calls) == 1
        client.score([photo, photo], QUESTION, RESPONSES)  # two images: the vision tower runs once for both
        assert len(calls) == 2
    finally:
        hook.remove()
    assert client.requests == 2  # one HTTP request per problem, not one per candidate


def test_api_key_refused_and_accepted(server, photo):
    body = json.dumps({"question": QUESTION, "responses": ["x"]}).encode()
    for key in (None, "wrong"):
        status, reply = _raw(server.url, "/v1/score", body, key=key)
        assert status == 401 and reply["error"]["code"] == "unauthorized", reply
        assert _raw(server.url, "/v1/models", key=key)[0] == 401
    status, reply = _raw(server.url, "/v1/score", body)
    assert status == 200 and len(reply["scores"]) == 1
    bad = HttpRewardScorer(server.url, api_key="wrong", backoff=0.0)
    with pytest.raises(EngineError) as e:
        bad.score([photo], QUESTION, ["x"])
    assert e.value.code == "reward_server_unauthorized" and bad.requests == 1  # a 401 is not retried
    assert "R1V_REWARD_API_KEY" in e.value.en
    health = bad.health()
    assert not health["ok"] and health["problem"] == "reward_server_unauthorized"


def test_health_and_models(server, client, scorer):
    status, reply = _raw(server.url, "/health", key=None)  # no key needed for /health
    assert status == 200 and reply == {"ok": True, "model": scorer.name, "family": "qwen2_5_vl"}
    status, models = _raw(server.url, "/v1/models")
    assert status == 200 and models["data"][0]["id"] == scorer.name and models["data"][0]["kind"] == "reward"
    info = client.health()
    assert info["ok"] and info["model"] == scorer.name
    down = HttpRewardScorer(f"http://127.0.0.1:{_free_port()}", backoff=0.0).health()
    assert not down["ok"] and down["problem"] == "reward_server_unreachable"


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "bad_json"),
    (b"[1, 2]", 400, "bad_request"),
    (json.dumps({"question": QUESTION}).encode(), 400, "bad_responses"),
    (json.dumps({"question": 3, "responses": ["x"]}).encode(), 400, "bad_question"),
    (json.dumps({"responses": [{"text": 5}]}).encode(), 400, "bad_response"),
    (json.dumps({"responses": ["x"], "images": ["http://example.com/a.png"]}).encode(), 400, "bad_image"),
    (json.dumps({"responses": ["x"], "images": ["data:image/png;base64,AAAA"]}).encode(), 400, None),
    (json.dumps({"responses": ["x"] * (MAX_RESPONSES + 1)}).encode(), 413, "too_many_responses"),
    (json.dumps({"responses": ["x" * 400_001]}).encode(), 413, "response_too_long"),
    (json.dumps({"responses": ["x"], "model": "other"}).encode(), 404, "wrong_model"),
])
def test_bad_requests_are_clear_json_errors(server, body, status, code):
    got, reply = _raw(server.url, "/v1/score", body)
    assert got == status, reply
    err = reply["error"]
    assert err["message"] and err["message_zh"] and (code is None or err["code"] == code)


def test_oversized_body_and_unknown_paths(server):
    status, reply = _raw(server.url, "/v1/score", b"{}", headers={"Content-Length": str(200 * 2**20)})
    assert status == 413 and reply["error"]["code"] == "request_too_large"
    assert _raw(server.url, "/v1/nothing")[0] == 404
    assert _raw(server.url, "/v1/chat/completions", b"{}")[0] == 404
    assert _raw(server.url, "/health", b"{}")[0] == 405


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Flaky(BaseHTTPRequestHandler):
    """503 (Retry-After: 0) for the first request, then scores of 1.0 each."""

    calls = 0

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        type(self).calls += 1
        n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["responses"])
        status, body = (503, b'{"error": {"code": "busy"}}') if self.calls == 1 else \
            (200, json.dumps({"model": "flaky", "scores": [1.0] * n}).encode())
        self.send_response(status)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_5xx_is_retried_then_succeeds():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = HttpRewardScorer(f"http://127.0.0.1:{srv.server_address[1]}", backoff=0.0)
        assert c.score([], "q", ["a", "b"]) == [1.0, 1.0]
        assert c.requests == 2 and _Flaky.calls == 2
    finally:
        srv.shutdown()
        srv.server_close()


def test_engine_reranks_with_the_served_scores(tiny_loaded, scorer, server, photo, monkeypatch):
    monkeypatch.setenv("R1V_REWARD_API_KEY", KEY)
    engine = Engine(loaded=tiny_loaded)
    kw = dict(n=4, sampling=Sampling(max_new_tokens=8, seed=0))
    local = engine.solve([photo], "Find x.", reward=scorer, **kw)
    remote = engine.solve([photo], "Find x.", reward=server.url, **kw)  # the app's --reward http://...
    assert [c.text for c in remote.candidates] == [c.text for c in local.candidates]
    assert [c.reward for c in remote.candidates] == pytest.approx([c.reward for c in local.candidates], abs=1e-5)
    assert remote.chosen == local.chosen and remote.strategy == "reward+vote" and remote.notes == []
    assert isinstance(engine.reward_scorer(server.url), HttpRewardScorer)


def test_a_failing_reward_server_falls_back_to_votes_with_a_note(tiny_loaded, photo):
    engine = Engine(loaded=tiny_loaded)
    down = HttpRewardScorer(f"http://127.0.0.1:{_free_port()}", max_retries=2, backoff=0.0)
    sol = engine.solve([photo], "Find x.", n=3, sampling=Sampling(max_new_tokens=8, seed=0), reward=down)
    assert down.requests == 3  # retried, then given up
    assert sol.strategy == "vote" and all(c.reward is None for c in sol.candidates)
    [note] = sol.notes
    assert note["code"] == "reward_unavailable" and "agreement" in note["en"] and note["zh"]
    assert "reward model unavailable: reward_server_unreachable" in sol.reason
    assert sol.to_json()["notes"] == sol.notes
    ranked = engine.solve([photo], "Find x.", n=3, sampling=Sampling(max_new_tokens=8, seed=0), reward=down,
                          rerank="reward")
    assert ranked.strategy == "vote" and ranked.notes  # 'reward' with no scores: agreement, said so


def test_cli_solve_with_a_reward_url(tiny_dir, server, scorer, capsys):
    from engine.__main__ import main

    example = ROOT / "assets" / "examples" / "math-zh-trig-maximum.jpg"
    args = ["solve", str(example), "--model", "tiny-random", "--n", "4", "--json", "--seed", "0"]
    assert main([*args, "--reward", "tiny-reward"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main([*args, "--reward", server.url, "--reward-api-key", KEY]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert [c["reward"] for c in remote["candidates"]] == pytest.approx(
        [c["reward"] for c in local["candidates"]], abs=1e-5)
    assert remote["chosen"] == local["chosen"]
    assert main([*args, "--reward", server.url, "--reward-api-key", "wrong"]) == 1  # refused before solving
    assert "API key" in capsys.readouterr().err


def test_engine_serve_starts_the_reward_server(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--model", "tiny-reward", "--host", "127.0.0.1",
                             "--port", str(port), "--api-key", KEY], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        c = HttpRewardScorer(f"http://127.0.0.1:{port}", api_key=KEY, backoff=0.0)
        deadline = time.monotonic() + 120
        while not (info := c.health())["ok"]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else info
            time.sleep(0.5)
        assert info["model"] == "tiny-reward" and len(c.score([], QUESTION, RESPONSES)) == 4
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"serving on http://127.0.0.1:{port}" in out and "API key required" in out


def test_the_apps_rerank_uses_the_remote_scorer_and_shows_a_failure(tiny_loaded, server, tmp_path, monkeypatch):
    from app import TutorApp
    from tests.visitor import fake_request
    from tutor.store import Store
    from webui.config import AppConfig, make_engine

    monkeypatch.setenv("R1V_REWARD_API_KEY", KEY)
    img = Image.new("RGB", (200, 120), "white")
    for url, works in ((server.url, True), (f"http://127.0.0.1:{_free_port()}", False)):
        store = Store(f"sqlite:///{tmp_path / f'db{works}.sqlite'}", image_dir=tmp_path / f"img{works}")
        cfg = AppConfig(reward=url, max_new_tokens=8)  # what --reward http://HOST:PORT gives
        engine = Engine(loaded=tiny_loaded)
        engine.reward_scorer(url).backoff = 0.0  # the scorer the app will use (kept per address)
        tapp = TutorApp(make_engine(cfg, engine), store, cfg)
        outs = list(tapp.run_mode("ask", "en", None, [], fake_request("v1", "s1"), image=img, photos=[], question="",
                                  subject="math", ptype="auto", reply_lang="en", n=3))
        final = outs[-1]
        rewards = [row[2] for row in final["cands"]]
        if works:
            assert all(r != "" for r in rewards) and "⚠" not in final["why"], final["why"]
        else:
            assert all(r == "" for r in rewards)
            assert "⚠" in final["why"] and "agreement" in final["why"] and "127.0.0.1" not in final["why"]
        store.close()


def test_serve_dry_run_for_a_reward_preset(capsys):
    from engine.__main__ import main

    assert main(["serve", "--model", "tiny-reward", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-m engine serve --model tiny-reward" in out and "--port 30001" in out and "reward scoring server" in out
    assert main(["serve", "--model", "skywork-vl-reward-7b", "--port", "31001", "--api-key", "k", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--port 31001 --api-key k" in out  # a hub reward preset: printed, nothing downloaded
    assert main(["serve", "--model", "r1v2-38b-awq", "--dry-run"]) == 0
    assert "--port 30000" in capsys.readouterr().out  # the policy keeps its own default port


def test_served_policy_and_served_reward_together(scorer, server, photo, monkeypatch):
    """The school setup: the policy on an OpenAI-compatible server (the stub), the reward model on the
    reward server; the rewards are the in-process scorer's on the same candidates."""
    from engine.http import HttpEngine
    from tests.stub_openai import StubServer

    monkeypatch.setenv("R1V_REWARD_API_KEY", KEY)
    stub = StubServer()
    try:
        eng = HttpEngine(stub.url, model="stub", timeout=5, max_retries=1, backoff=0.01)
        sol = eng.solve([photo], "Find x.", n=3, sampling=Sampling(max_new_tokens=32, seed=0), reward=server.url)
        assert len(sol.candidates) == 3 and sol.strategy == "reward+vote" and not sol.notes
        from engine.core import _user_text
        from tutor.prompts import build_messages

        question = _user_text(build_messages("solve", question="Find x.", lang="en", n_images=1))
        expected = scorer.score([photo], question, sol.candidates)
        assert [c.reward for c in sol.candidates] == pytest.approx(expected, abs=1e-5)
        dead = HttpRewardScorer(f"http://127.0.0.1:{_free_port()}", max_retries=0)
        sol = eng.solve([photo], "Find x.", n=2, sampling=Sampling(max_new_tokens=32, seed=0), reward=dead)
        assert sol.strategy == "vote" and sol.notes[0]["code"] == "reward_unavailable" and sol.answer == "2"
    finally:
        stub.close()


def test_concurrent_requests_each_get_their_own_scores(scorer, server, photo):
    from concurrent.futures import ThreadPoolExecutor

    other = Image.new("RGB", (224, 224), "black")
    jobs = [([photo], RESPONSES), ([other], RESPONSES[::-1]), ([], RESPONSES[:2])] * 2
    expected = [scorer.score(imgs, QUESTION, rs) for imgs, rs in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda j: HttpRewardScorer(server.url, api_key=KEY).score(j[0], QUESTION, j[1]), jobs))
    for g, e in zip(got, expected, strict=True):
        assert g == pytest.approx(e, abs=1e-5)


class _Hang(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        time.sleep(3)


def test_a_hanging_server_times_out_with_retries():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hang)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        c = HttpRewardScorer(f"http://127.0.0.1:{srv.server_address[1]}", timeout=0.3, max_retries=1, backoff=0.0)
        t0 = time.perf_counter()
        with pytest.raises(EngineError) as e:
            c.score([], "q", ["a"])
        assert e.value.code == "reward_server_timeout" and c.requests == 2 and time.perf_counter() - t0 < 2.5
    finally:
        srv.shutdown()
        srv.server_close()
