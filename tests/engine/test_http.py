"""engine.http against a real `transformers serve` on localhost (tiny-random, CPU) and small stub servers.

The real server is started once for the module through the launcher under test
(``python -m engine serve --model tiny-random --engine transformers``); stub servers (http.server in a
thread) play the parts a CPU server cannot: 503/429 then 200, 400, a reasoning parser, native ``n``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image, ImageDraw

from engine.core import Delta, Finished, Sampling, make_candidate
from engine.http import HttpEngine, ServerStreamError, to_openai_messages
from engine.serve import wait_ready
from tutor.errors import EngineError, InputError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image() -> Image.Image:
    img = Image.new("RGB", (160, 120), "white")
    ImageDraw.Draw(img).text((10, 50), "2x + 3 = 7", fill="black")
    return img


class _Served:
    """A `transformers serve` process on a free port, restarted on demand if a test killed it."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def ensure(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            port = _free_port()
            self.url = f"http://127.0.0.1:{port}"
            cmd = [sys.executable, "-m", "engine", "serve", "--model", "tiny-random", "--engine", "transformers",
                   "--host", "127.0.0.1", "--port", str(port)]
            self.proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            wait_ready(self.url, timeout=120, proc=self.proc)
        return self.url

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(tiny_dir):  # tiny_dir: the session's tiny-random, built before the server starts
    s = _Served()
    s.ensure()
    yield s
    s.kill()


@pytest.fixture
def eng(served):
    return HttpEngine(served.ensure(), max_retries=1, backoff=0.05)


SHORT = Sampling(max_new_tokens=8, seed=0)


# -- the real CPU server -----------------------------------------------------------------------------

def test_health_says_what_the_server_can_do(eng):
    info = eng.check()
    assert info["ok"] and info["reachable"]
    assert info["model"] == info["models"][0] and "tiny-random" in info["model"]
    assert info["images"] is True and info["image_tokens"] >= 256  # one 448 px tile = 256 tokens
    assert info["n"] == "parallel requests"  # transformers serve ignores n
    assert info["repetition_penalty"].startswith("frequency_penalty")


def test_plain_solve(eng):
    sol = eng.solve([_image()], "Solve 2x + 3 = 7.", n=1, sampling=SHORT)
    assert len(sol.candidates) == 1
    c = sol.candidates[0]
    assert 1 <= c.tokens <= 8 and c.finish_reason in ("stop", "length")
    assert sol.prompt_tokens > 256  # the image reached the model
    assert sol.model == eng.model and sol.chosen == 0 and not sol.stopped
    assert json.loads(json.dumps(sol.to_json()))["candidates"][0]["tokens"] == c.tokens


def test_streamed_deltas_build_the_candidates(eng):
    events = list(eng.stream([_image()], "Solve 2x + 3 = 7.", n=1, sampling=SHORT, lang="zh"))
    assert isinstance(events[-1], Finished) and all(isinstance(e, Delta) for e in events[:-1])
    assert len(events) >= 2
    raw = "".join(e.text for e in events[:-1])
    c = events[-1].solution.candidates[0]
    rebuilt = make_candidate(0, raw, c.tokens, c.finish_reason)
    assert (rebuilt.thinking, rebuilt.text, rebuilt.truncated) == (c.thinking, c.text, c.truncated)


def test_n2_falls_back_to_parallel_requests(eng):
    events = list(eng.stream([_image()], "Find x.", n=2, sampling=SHORT))
    sol = events[-1].solution
    assert [c.index for c in sol.candidates] == [0, 1]
    assert {e.index for e in events[:-1]} == {0, 1}
    assert all(c.tokens >= 1 for c in sol.candidates)
    assert sol.timings["requests"] == 2 and eng.native_n is False


def test_stop_closes_the_stream(eng):
    stop = threading.Event()
    t0 = time.perf_counter()
    events = []
    for e in eng.stream([_image()], "Find x.", sampling=Sampling(max_new_tokens=300, seed=1), stop=stop):
        events.append(e)
        if isinstance(e, Delta):
            eng.stop()
    sol = events[-1].solution
    assert sol.stopped and sol.candidates[0].finish_reason == "stopped"
    assert sol.candidates[0].tokens < 300 and time.perf_counter() - t0 < 20


def test_cli_solve_with_server(served, tmp_path, capsys):
    from engine.__main__ import main

    photo = tmp_path / "p.png"
    _image().save(photo)
    url = served.ensure()
    assert main(["solve", str(photo), "--server", url, "--n", "2", "--max-new-tokens", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["candidates"]) == 2 and "tiny-random" in out["model"] and out["timings"]["requests"] == 2
    assert main(["solve", str(photo), "--server", f"http://127.0.0.1:{_free_port()}", "--lang", "zh"]) == 1
    assert capsys.readouterr().err.startswith("error: 无法连接")


def test_server_killed_mid_stream_keeps_the_partial_text(served, eng):
    got = []
    with pytest.raises(ServerStreamError) as err:
        for e in eng.stream([_image()], "Find x.", sampling=Sampling(max_new_tokens=3000, seed=3)):
            if isinstance(e, Delta):
                got.append(e.text)
                if len(got) == 2:
                    served.kill()
    e = err.value
    assert e.code == "server_lost" and "middle" in e.message("en") and "中途" in e.message("zh")
    assert e.partial[0].startswith("".join(got)) and e.partial[0]
    assert e.candidates[0].finish_reason == "error" and e.candidates[0].index == 0
    # (a test that runs after this one gets a fresh server from the ``eng`` fixture)


# -- failing fast, clear messages ------------------------------------------------------------------------

def test_wrong_url_fails_fast_with_a_clear_message():
    eng = HttpEngine(f"http://127.0.0.1:{_free_port()}", max_retries=1, backoff=0.05)
    t0 = time.perf_counter()
    info = eng.health()
    assert not info["ok"] and not info["reachable"] and info["problem"] == "server_unreachable"
    assert "Cannot reach" in info["error"] and "无法连接" in info["error_zh"]
    with pytest.raises(EngineError) as err:
        eng.solve([_image()], "x", sampling=SHORT)
    assert err.value.code == "server_unreachable"
    assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("url", ["localhost:30000", "ftp://x/v1", ""])
def test_a_malformed_url_is_an_input_error(url):
    with pytest.raises(InputError) as err:
        HttpEngine(url)
    assert err.value.code == "bad_server_url" and "http" in err.value.message("zh")


def test_openai_messages_fill_images_in_order():
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}]},
            {"role": "assistant", "content": "A"}, {"role": "user", "content": "more?"}]
    out = to_openai_messages(msgs, ["data:image/png;base64,AA", "data:image/png;base64,BB"])
    assert [p["image_url"]["url"][-2:] for p in out[0]["content"][:2]] == ["AA", "BB"]
    assert out[0]["content"][2] == {"type": "text", "text": "Q"} and out[2] == {"role": "user", "content": "more?"}
    with pytest.raises(InputError):
        to_openai_messages(msgs, ["data:image/png;base64,AA"])


# -- stub servers ------------------------------------------------------------------------------------

def _chunk(choices: list[dict], usage: dict | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "stub", "choices": choices,
            "usage": usage}


def _sse(texts: list[str], finish: bool = True, field: str = "content") -> list[dict]:
    chunks = [_chunk([{"index": 0, "delta": {field: t}, "finish_reason": None}]) for t in texts]
    if finish:
        chunks.append(_chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}],
                             {"prompt_tokens": 5, "completion_tokens": len(texts), "total_tokens": 5 + len(texts)}))
    return chunks


class _Stub:
    """Answers POST /v1/chat/completions from a script: (status, chunks) per request, the last repeated."""

    def __init__(self, script: list[tuple[int, object]], headers: dict | None = None, image_tokens: int = 256):
        self.script, self.bodies, self.headers = script, [], headers or {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _json(self, obj):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(obj).encode())

            def do_GET(self):  # /v1/models
                self._json({"object": "list", "data": [{"id": "stub", "object": "model", "created": 0,
                                                         "owned_by": "test"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not body.get("stream"):  # health probe: one token; images add image_tokens
                    has_image = "image_url" in json.dumps(body["messages"])
                    self._json({"id": "p", "object": "chat.completion", "created": 0, "model": "stub",
                                "choices": [{"index": i, "finish_reason": "length",
                                             "message": {"role": "assistant", "content": "2"}}
                                            for i in range(body.get("n", 1))],
                                "usage": {"prompt_tokens": 10 + image_tokens * has_image, "completion_tokens": 1,
                                          "total_tokens": 11}})
                    return
                stub.bodies.append(body)
                status, payload = stub.script[min(len(stub.bodies), len(stub.script)) - 1]
                self.send_response(status)
                for k, v in stub.headers.items():
                    self.send_header(k, v)
                if status != 200:
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": payload}}).encode())
                    return
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for c in payload["chunks"]:
                    self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                    self.wfile.flush()
                if payload.get("done", True):
                    self.wfile.write(b"data: [DONE]\n\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    made = []

    def make(script=(), headers=None, image_tokens=256):
        made.append(_Stub(list(script), headers, image_tokens))
        return made[-1]

    yield make
    for s in made:
        s.close()


OK_TEXT = {"chunks": _sse(["x = 2", "</think>", "The answer is \\boxed{2}."])}


def test_503_then_200_is_retried(stub):
    s = stub([(503, "loading"), (200, OK_TEXT)])
    sol = HttpEngine(s.url, model="stub", max_retries=3, backoff=0.01).solve([], "Solve 2x+3=7.", sampling=SHORT)
    assert len(s.bodies) == 2 and sol.answer == "2" and sol.candidates[0].tokens == 3


def test_429_honours_retry_after(stub):
    s = stub([(429, "busy"), (200, OK_TEXT)], headers={"Retry-After": "0"})
    sol = HttpEngine(s.url, model="stub", max_retries=2, backoff=5.0).solve([], "Q", sampling=SHORT)
    assert len(s.bodies) == 2 and sol.answer == "2"


def test_400_is_not_retried(stub):
    s = stub([(400, "bad request: context too long")])
    with pytest.raises(EngineError) as err:
        HttpEngine(s.url, model="stub", max_retries=3, backoff=0.01).solve([], "Q", sampling=SHORT)
    assert len(s.bodies) == 1 and err.value.code == "server_rejected" and "context too long" in err.value.detail


def test_persistent_5xx_gives_up_after_the_retries(stub):
    s = stub([(500, "boom")])
    with pytest.raises(EngineError) as err:
        HttpEngine(s.url, model="stub", max_retries=2, backoff=0.01).solve([], "Q", sampling=SHORT)
    assert len(s.bodies) == 3 and err.value.code == "server_error" and "500" in err.value.message("en")


def test_a_refused_field_is_dropped_and_resent(stub):
    s = stub([(422, "unknown field repetition_penalty"), (200, OK_TEXT)])
    eng = HttpEngine(s.url, model="stub", max_retries=0)
    eng.solve([], "Q", sampling=SHORT)
    assert s.bodies[0]["repetition_penalty"] == 1.05
    assert "repetition_penalty" not in s.bodies[1] and "frequency_penalty" not in s.bodies[1]
    eng.solve([], "Q", sampling=SHORT)  # remembered: not sent again
    assert len(s.bodies) == 3 and "repetition_penalty" not in s.bodies[2]


def test_request_carries_sampling_images_and_stream(stub):
    s = stub([(200, OK_TEXT)])
    HttpEngine(s.url, model="stub").solve([_image()], "Q", sampling=Sampling(temperature=0.7, top_p=0.9,
                                                                           max_new_tokens=77, seed=5))
    b = s.bodies[0]
    assert (b["temperature"], b["top_p"], b["max_tokens"], b["seed"], b["stream"]) == (0.7, 0.9, 77, 5, True)
    parts = b["messages"][0]["content"]
    assert parts[0]["type"] == "image_url" and parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1]["type"] == "text" and "n" not in b


def test_reasoning_content_gets_a_think_close_delta(stub):
    chunks = _sse(["Let x = 2. ", "Check: 7."], finish=False, field="reasoning_content")
    chunks += _sse(["\n\nSo \\boxed{2}."])
    s = stub([(200, {"chunks": chunks})])
    events = list(HttpEngine(s.url, model="stub").stream([], "Q", sampling=SHORT))
    texts = [e.text for e in events[:-1]]
    assert texts == ["Let x = 2. ", "Check: 7.", "</think>", "\n\nSo \\boxed{2}."]
    c = events[-1].solution.candidates[0]
    assert c.thinking == "Let x = 2. Check: 7." and c.answer == "2" and not c.truncated


def test_native_n_uses_one_request(stub):
    chunks = []
    for t in range(2):
        for i in range(2):
            chunks.append(_chunk([{"index": i, "delta": {"content": f"c{i}t{t} "}, "finish_reason": None}]))
    chunks.append(_chunk([{"index": i, "delta": {"content": "</think>\\boxed{1}"}, "finish_reason": "stop"}
                          for i in range(2)]))
    s = stub([(200, {"chunks": chunks})])
    eng = HttpEngine(s.url, model="stub")
    sol = eng.solve([], "Q", n=2, sampling=SHORT)
    assert len(s.bodies) == 1 and s.bodies[0]["n"] == 2 and eng.native_n is True
    assert [c.thinking for c in sol.candidates] == ["c0t0 c0t1", "c1t0 c1t1"]
    assert [c.answer for c in sol.candidates] == ["1", "1"] and sol.timings["requests"] == 1


def test_a_stream_cut_off_without_finish_is_server_lost(stub):
    s = stub([(200, {"chunks": _sse(["partial ", "text"], finish=False), "done": False})])
    with pytest.raises(ServerStreamError) as err:
        HttpEngine(s.url, model="stub").solve([], "Q", sampling=SHORT)
    assert err.value.partial == {0: "partial text"} and err.value.candidates[0].truncated


def test_health_of_a_native_n_vision_server(stub):
    s = stub()
    eng = HttpEngine(s.url)
    info = eng.health()
    assert info["ok"] and info["model"] == "stub" and info["images"] and info["n"] == "native"
    assert info["repetition_penalty"] == "extra_body" and eng.native_n is True


def test_health_says_wrong_model(stub):
    info = HttpEngine(stub().url, model="r1v2-38b-awq").health()
    assert not info["ok"] and info["reachable"] and info["problem"] == "wrong_model"
    assert "stub" in info["error"] and "r1v2-38b-awq" in info["error_zh"]


def test_health_says_no_image_input(stub):
    eng = HttpEngine(stub(image_tokens=0).url)
    with pytest.raises(EngineError) as err:
        eng.check()
    assert err.value.code == "no_image_input" and "images" in err.value.message("en")


def test_stop_ends_a_fast_stream_at_once(stub):
    s = stub([(200, {"chunks": _sse([f"t{i} " for i in range(300)])})])
    eng = HttpEngine(s.url, model="stub")
    events = []
    for e in eng.stream([], "Q", sampling=SHORT):
        events.append(e)
        if isinstance(e, Delta):
            eng.stop()
    sol = events[-1].solution
    assert len(events) == 2 and sol.stopped and sol.candidates[0].finish_reason == "stopped"
    assert sol.candidates[0].thinking == "t0"


def _vllm_like():
    from tests.stub_openai import StubServer

    s = StubServer()
    s.vllm_rules = True  # n > 1 at temperature 0: 400 "n must be 1 when using greedy sampling"
    return s


def test_health_of_a_server_that_refuses_greedy_n():
    """vLLM answers the old probe (n=2 at temperature 0) with a 400; that is not "no images"."""
    s = _vllm_like()
    try:
        info = HttpEngine(s.url, model="stub").health()
        assert info["ok"] and info["images"] is True and info["n"] == "native", info
        probe = [b for b in s.bodies if b.get("n") == 2 and not b.get("stream")]
        assert probe and probe[0]["temperature"] > 0
    finally:
        s.close()


def test_max_tiles_reaches_a_vllm_server_per_request():
    """vLLM ignores max_dynamic_patch inside image_url; it reads mm_processor_kwargs per request."""
    from PIL import Image

    s = _vllm_like()
    try:
        eng = HttpEngine(s.url, model="stub")
        eng.solve([Image.new("RGB", (600, 400), "white")], "Q", n=2, sampling=Sampling(max_new_tokens=8), max_tiles=6)
        [body] = [b for b in s.bodies if b.get("stream")]
        assert body["mm_processor_kwargs"] == {"max_dynamic_patch": 6}
        image = next(p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]
                     if p["type"] == "image_url")
        assert image["image_url"]["max_dynamic_patch"] == 6  # SGLang's place, kept
    finally:
        s.close()


def test_a_total_only_usage_with_native_n_is_shared_out_and_adds_up():
    """A server that reports only the request's total for n choices (no per-choice usage): the counts
    of the candidates without their own add up to the total (issue 19 point 6; vLLM's per-choice counts
    are tested in tests/test_vllm_real.py)."""
    import threading as th

    from engine.http import _Request, _Run

    run = _Run(object(), [], 3, Sampling(), th.Event())
    run.chunks = [10, 20, 10]
    run.tokens = [None, None, None]
    run._share_total(_Request(0, 3, None), 100)
    assert sum(run.tokens) == 100 and run.tokens[1] > run.tokens[0]
    run.tokens = [30, None, None]  # one choice had its own count: the rest share what is left
    run._share_total(_Request(0, 3, None), 100)
    assert run.tokens[0] == 30 and sum(run.tokens) == 100
