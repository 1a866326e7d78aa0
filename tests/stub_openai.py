"""A small OpenAI-compatible stub server for fault-injection tests (http.server in a thread).

    stub = StubServer()                 # http://127.0.0.1:<port>; GET /v1/models, POST /v1/chat/completions
    stub.mode = "ok"                    # "ok" | "slow" | "die" | "malformed" | "status" | "hang" | "trickle" | "huge"
    stub.status = 503                   # with mode "status": answer this code (429 adds Retry-After: 0)
    stub.hang_models = True             # GET /v1/models never answers (until close)
    stub.answer = ["think", "</think>", "reply"]   # with mode "ok": stream these chunks instead of ANSWER
    stub.models = ["stub"]              # the model ids GET /v1/models lists
    stub.vllm_rules = True              # refuse n > 1 at temperature 0 with a 400, as vLLM does
    eng = HttpEngine(stub.url, model="stub", timeout=1, max_retries=1, backoff=0.01)
    stub.close()

"ok" streams ``answer`` (default ``ANSWER``) in a few chunks (``reasoning`` then ``</think>`` then the boxed answer);
"slow" waits ``delay`` seconds before answering (past a client's timeout); "die" sends ``PARTIAL``
and then closes the connection without a finish reason; "malformed" sends an event stream whose
data is not JSON; "status" answers ``status`` with a JSON error; "hang" accepts the request and never
answers (until ``close``); "trickle" streams ``TICK`` every ``delay`` seconds, ``ticks`` times, and
counts in ``disconnects`` a client that went away meanwhile; "huge" streams ``huge_chars`` characters
of content as fast as it can. Health probes (non-streaming requests) are always answered, with 256
more prompt tokens when an image is attached.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PARTIAL = ["Let me think. 2x + 3 = 7, ", "so 2x = 4 ", "and then"]
TICK = "step "
ANSWER = ["2x + 3 = 7 so 2x = 4.", "</think>", "So $x = 2$, and the answer is $\\boxed{2}$."]


def _chunk(i: int, delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "stub",
            "choices": [{"index": i, "delta": delta, "finish_reason": finish}], "usage": usage}


class StubServer:
    """See the module docstring. ``requests`` counts streamed chat requests."""

    def __init__(self, mode: str = "ok", *, delay: float = 3.0, status: int = 503, answer: list[str] | None = None):
        self.mode, self.delay, self.status = mode, delay, status
        self.hang_models = False
        self.ticks, self.huge_chars = 10_000, 50_000_000
        self.disconnects = 0
        self.release = threading.Event()  # set by close: hanging handlers return
        self.answer = list(answer or ANSWER)  # a model steered by a prompt injection writes what a test needs
        self.models = ["stub"]
        self.vllm_rules = False  # answer as vLLM does where it differs from the OpenAI API (greedy n > 1: 400)
        self.bodies: list[dict] = []  # every chat request's JSON body, in order
        self.requests = 0
        self.prompts: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _json(self, obj: dict, code: int = 200, headers: dict | None = None) -> None:
                raw = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(raw)
                except OSError:
                    self.close_connection = True

            def do_GET(self) -> None:
                if stub.hang_models:
                    stub.release.wait()
                    return
                self._json({"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                                         "owned_by": "test"} for m in stub.models]})

            def _sse(self, events: list[str], pause: float = 0.005) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for e in events:
                        self.wfile.write(f"data: {e}\n\n".encode())
                        self.wfile.flush()
                        if pause:
                            time.sleep(pause)
                except OSError:  # the client gave up (timeout, stop): nothing to do
                    self.close_connection = True

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for _ in range(stub.ticks):
                        self.wfile.write(f"data: {json.dumps(_chunk(0, {'content': TICK}))}\n\n".encode())
                        self.wfile.flush()
                        if stub.release.wait(stub.delay):
                            return
                    self.wfile.write(f"data: {json.dumps(_chunk(0, {}, 'stop'))}\n\ndata: [DONE]\n\n".encode())
                except OSError:  # the client closed the stream: the generation was cancelled
                    with stub._lock:
                        stub.disconnects += 1
                    self.close_connection = True

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if stub.vllm_rules and int(body.get("n") or 1) > 1 and not body.get("temperature"):
                    # vLLM's sampling-parameter check (a 400 the client must not take for "no images")
                    self._json({"error": {"message": "n must be 1 when using greedy sampling, got 2.",
                                          "type": "BadRequestError", "code": 400}}, 400)
                    return
                with stub._lock:
                    stub.bodies.append(body)
                if not body.get("stream"):  # health probe
                    has_image = "image_url" in json.dumps(body["messages"])
                    self._json({"id": "p", "object": "chat.completion", "created": 0, "model": "stub",
                                "choices": [{"index": i, "finish_reason": "length",
                                             "message": {"role": "assistant", "content": "2"}}
                                            for i in range(body.get("n", 1))],
                                "usage": {"prompt_tokens": 10 + 256 * has_image, "completion_tokens": 1,
                                          "total_tokens": 11}})
                    return
                with stub._lock:
                    stub.requests += 1
                    stub.prompts.append(json.dumps(body["messages"]))
                mode, n = stub.mode, int(body.get("n") or 1)
                if mode == "slow":
                    time.sleep(stub.delay)
                    mode = "ok"
                if mode == "hang":
                    stub.release.wait()
                elif mode == "trickle":
                    self._trickle()
                elif mode == "huge":
                    piece = json.dumps(_chunk(0, {"content": "x" * 65536}))
                    self._sse([piece] * (stub.huge_chars // 65536) + [json.dumps(_chunk(0, {}, "stop")), "[DONE]"],
                              pause=0)
                elif mode == "status":
                    headers = {"Retry-After": "0"} if stub.status == 429 else {}
                    self._json({"error": {"message": f"stub says {stub.status}"}}, stub.status, headers)
                elif mode == "malformed":
                    self._sse(['{"id": "c", "choices": [{"index": 0, "delta": {"content": "x', "}}}not json"])
                elif mode == "die":
                    self._sse([json.dumps(_chunk(i, {"content": t})) for i in range(n) for t in PARTIAL])
                    self.close_connection = True  # gone without a finish reason or [DONE]
                else:
                    events = [json.dumps(_chunk(i, {"content": t})) for i in range(n) for t in stub.answer]
                    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
                    events += [json.dumps(_chunk(i, {}, "stop", usage if i == n - 1 else None)) for i in range(n)]
                    self._sse([*events, "[DONE]"])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
