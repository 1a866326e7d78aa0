"""A small scoring server for a reward model, so the reward model runs beside the policy on the GPU box.

    python -m engine serve --model tiny-reward --port 30001 --api-key KEY      # any reward preset or directory
    # on the app machine:
    R1V_REWARD_API_KEY=KEY python app.py --server http://GPU-BOX:30000 --reward http://GPU-BOX:30001

    from engine.reward_server import make_server
    server = make_server(scorer, host="127.0.0.1", port=0, api_key="KEY")   # a loaded RewardScorer
    threading.Thread(target=server.serve_forever, daemon=True).start()

Why it exists: with ``--server`` the reward model used to score in the app's process, where a 7B
vision model over n candidates is out of reach on a school's CPU app box. vLLM 0.32's pooling runner
does not serve this checkpoint as it ships (read in its source): its converts are ``embed`` and
``classify`` only; the classify adapter reads a ``score`` head from the model's own weights,
while ours is ``v_head.summary.*`` in a separate ``value_head.safetensors`` (skipped by vLLM's index
filter -- seen here: a sharded copy then serves, with no error, a head that was never loaded -- or
an unexpected name without an index); one label gets a sigmoid unless switched off; and
its CPU attention cannot run tiny-reward (head size 16 < 32). Converted (the head as
``language_model.score.*`` in the weights, ``num_labels: 1``, ``problem_type: regression``), a tiny
Qwen2.5-VL reward model with head size 32 did give our scores there (within 2.1e-6, the same prompt
tokens; ``bench/reward_vllm_probe.py``), so vLLM is a possible later route; not tried on the real 7B.
This server runs the project's own scorer (``engine.reward``), so its scores are the in-process
scores by construction, on any reward preset, with the candidates read as in process.

Endpoints (JSON in and out, stdlib ``http.server``, one thread per connection; scoring itself is
serialised by the scorer's lock):

- ``GET /health``: ``{"ok": true, "model": ..., "family": ...}``; needs no key (for load balancers).
- ``GET /v1/models``: ``{"object": "list", "data": [{"id": NAME, "object": "model", ...}]}``.
- ``POST /v1/score``: ``{"question": str, "images": [data URL, ...], "responses": [str | {"thinking",
  "text", "truncated"}, ...], "model": NAME (optional)}`` -> ``{"model", "scores": [float, ...],
  "timings": {...}}``. All responses of one problem in one request: the images are decoded, processed
  and encoded once, and the responses scored in batches (``ScoreSettings.batch_size``). A response
  given as an object is read as ``ScoreSettings.reads`` says, exactly as the in-process scorer reads
  an engine ``Candidate``.

With ``api_key`` set, every endpoint but ``/health`` needs ``Authorization: Bearer KEY`` (401
otherwise). Errors are ``{"error": {"code", "message", "message_zh"}}`` with status 400 (bad JSON or
fields), 401, 404, 405, 411 (no Content-Length), 413 (body over ``MAX_BODY_BYTES``, more than ``MAX_RESPONSES`` responses,
more than ``MAX_IMAGES`` images, a response over ``MAX_RESPONSE_CHARS``), 500 (the model failed).
Images go through ``tutor.intake.load_image`` (format, size, decompression bombs) like uploads. A
connection idle or trickling for ``RewardHandler.timeout`` seconds is closed. Without a key on a
non-loopback address the server warns at start.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

from tutor.errors import EngineError, InputError, TutorError
from tutor.intake import MAX_IMAGES
from tutor.limits import MAX_N

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 48 * 1024 * 1024  # 4 photos as base64 PNG data URLs fit with room to spare
MAX_RESPONSES = 4 * MAX_N  # one problem's candidates (the app asks for at most MAX_N, regenerates included)
MAX_IMAGES_PER_REQUEST = MAX_IMAGES
MAX_RESPONSE_CHARS = 400_000  # a 64K-token reasoning trace is about 250K characters
MAX_QUESTION_CHARS = 100_000


class _HttpError(Exception):
    def __init__(self, status: int, code: str, en: str, zh: str):
        super().__init__(en)
        self.status, self.code, self.en, self.zh = status, code, en, zh


def _image(url: object, i: int):
    """One ``data:image/...;base64,`` URL -> a checked ``IntakeImage``."""
    from tutor.intake import load_image

    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url[:64]:
        raise _HttpError(400, "bad_image", f"Image {i} must be a base64 data:image/... URL (the server fetches nothing).",
                         f"第 {i} 张图片必须是 base64 编码的 data:image/... 网址（服务器不下载网址）。")
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
    except ValueError:
        raise _HttpError(400, "bad_image", f"Image {i} is not valid base64.", f"第 {i} 张图片不是有效的 base64。") from None
    try:
        return load_image(raw)
    except InputError as e:
        raise _HttpError(400, e.code, f"Image {i}: {e.en}", f"第 {i} 张图片：{e.zh}") from None


def _response(item: object, i: int):
    """A response as the scorer reads it: a string as is, an object as an engine ``Candidate``."""
    if isinstance(item, str):
        text = item
        out = item
    elif isinstance(item, dict) and all(isinstance(item.get(k, ""), str) for k in ("thinking", "text")):
        text = item.get("thinking", "") + item.get("text", "")
        out = SimpleNamespace(thinking=item.get("thinking", ""), text=item.get("text", ""),
                              truncated=bool(item.get("truncated", False)))
    else:
        raise _HttpError(400, "bad_response", f"Response {i} must be a string or an object with text/thinking strings.",
                         f"第 {i} 个回答必须是字符串，或含 text/thinking 字符串的对象。")
    if len(text) > MAX_RESPONSE_CHARS:
        raise _HttpError(413, "response_too_long", f"Response {i} is longer than {MAX_RESPONSE_CHARS} characters.",
                         f"第 {i} 个回答超过 {MAX_RESPONSE_CHARS} 个字符。")
    return out


def parse_score_request(body: dict, model_name: str) -> tuple[list, str, list]:
    """(images, question, responses) from a ``/v1/score`` body; a bad one raises ``_HttpError``."""
    if not isinstance(body, dict):
        raise _HttpError(400, "bad_request", "The request body must be a JSON object.", "请求体必须是 JSON 对象。")
    model = body.get("model")
    if model not in (None, "", model_name):
        raise _HttpError(404, "wrong_model", f"This server scores with {model_name}, not {model}.",
                         f"此服务器的评分模型是 {model_name}，而不是 {model}。")
    question, images, responses = body.get("question", ""), body.get("images", []), body.get("responses")
    if not isinstance(question, str):
        raise _HttpError(400, "bad_question", "'question' must be a string.", "“question”必须是字符串。")
    if len(question) > MAX_QUESTION_CHARS:
        raise _HttpError(413, "question_too_long", f"The question is longer than {MAX_QUESTION_CHARS} characters.",
                         f"题目超过 {MAX_QUESTION_CHARS} 个字符。")
    if not isinstance(images, list):
        raise _HttpError(400, "bad_images", "'images' must be a list of data URLs.", "“images”必须是 data 网址列表。")
    if len(images) > MAX_IMAGES_PER_REQUEST:
        raise _HttpError(413, "too_many_images", f"At most {MAX_IMAGES_PER_REQUEST} images per request.",
                         f"每个请求最多 {MAX_IMAGES_PER_REQUEST} 张图片。")
    if not isinstance(responses, list) or not responses:
        raise _HttpError(400, "bad_responses", "'responses' must be a non-empty list.", "“responses”必须是非空列表。")
    if len(responses) > MAX_RESPONSES:
        raise _HttpError(413, "too_many_responses", f"At most {MAX_RESPONSES} responses per request.",
                         f"每个请求最多 {MAX_RESPONSES} 个回答。")
    parsed = [_response(r, i) for i, r in enumerate(responses)]
    return [_image(u, i) for i, u in enumerate(images)], question, parsed


class RewardHandler(BaseHTTPRequestHandler):
    """The endpoints (module docstring). ``self.server`` carries ``scorer`` and ``api_key``."""

    server_version = "r1v-reward/1"
    protocol_version = "HTTP/1.1"
    timeout = 120  # seconds a connection may sit idle or trickle its body before it is closed

    def log_message(self, fmt, *args):  # through logging, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, e: _HttpError) -> None:
        if e.status in (400, 413):  # the body may be unread: do not reuse the connection
            self.close_connection = True
        self._send(e.status, {"error": {"code": e.code, "message": e.en, "message_zh": e.zh}})

    def _authorised(self) -> None:
        key = self.server.api_key
        if not key:
            return
        got = self.headers.get("Authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].strip().encode(), key.encode())):
            raise _HttpError(401, "unauthorized", "Missing or wrong API key (send Authorization: Bearer KEY).",
                             "缺少 API 密钥或密钥错误（请发送 Authorization: Bearer KEY）。")

    def do_GET(self):  # noqa: N802 - http.server's name
        try:
            path = self.path.split("?", 1)[0].rstrip("/")
            scorer = self.server.scorer
            if path == "/health":
                return self._send(200, {"ok": True, "model": scorer.name, "family": scorer.family})
            self._authorised()
            if path == "/v1/models":
                return self._send(200, {"object": "list", "data": [
                    {"id": scorer.name, "object": "model", "owned_by": "r1v-tutor", "kind": "reward",
                     "family": scorer.family, "reads": scorer.settings.reads}]})
            raise _HttpError(404, "not_found", f"No such endpoint: {path}.", f"没有这个接口：{path}。")
        except _HttpError as e:
            self._error(e)

    def do_POST(self):  # noqa: N802
        try:
            path = self.path.split("?", 1)[0].rstrip("/")
            self._authorised()
            if path != "/v1/score":
                raise _HttpError(404 if path not in ("/health", "/v1/models") else 405, "not_found",
                                 f"No POST endpoint {path}; use POST /v1/score.", f"没有 POST 接口 {path}；请用 POST /v1/score。")
            body = self._read_json()
            scorer = self.server.scorer
            images, question, responses = parse_score_request(body, scorer.name)
            t0 = time.perf_counter()
            try:
                scores = scorer.score(images, question, responses)
            except InputError as e:
                raise _HttpError(400, e.code, e.en, e.zh) from None
            except TutorError as e:
                log.warning("scoring failed: %s (%s)", e.code, getattr(e, "detail", ""))
                raise _HttpError(500, e.code, e.en, e.zh) from None
            timings = dict(getattr(scorer, "last_timings", {}) or {})
            timings["server_s"] = round(time.perf_counter() - t0, 4)
            self._send(200, {"model": scorer.name, "scores": scores, "timings": timings})
        except _HttpError as e:
            self._error(e)
        except Exception as e:  # never a traceback to the client
            log.exception("reward server: unexpected failure")
            self._error(_HttpError(500, "reward_failed", f"The reward server failed ({type(e).__name__}).",
                                   f"奖励模型服务器出错（{type(e).__name__}）。"))

    def _read_json(self) -> dict:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise _HttpError(411, "length_required", "Send a Content-Length (no chunked bodies).",
                             "请发送 Content-Length（不接受分块传输）。")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise _HttpError(411, "length_required", "Send a Content-Length.", "请发送 Content-Length。") from None
        if length > MAX_BODY_BYTES:
            raise _HttpError(413, "request_too_large", f"The request is larger than {MAX_BODY_BYTES // 2**20} MiB.",
                             f"请求超过 {MAX_BODY_BYTES // 2**20} MiB。")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _HttpError(400, "bad_json", "The request body is not valid JSON.", "请求体不是有效的 JSON。") from None


class RewardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, scorer, api_key: str | None = None):
        super().__init__(address, RewardHandler)
        self.scorer, self.api_key = scorer, api_key or None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"


def make_server(scorer, *, host: str = "127.0.0.1", port: int = 30001, api_key: str | None = None) -> RewardServer:
    """A ``RewardServer`` for a loaded scorer (``port=0``: any free port; read ``server.url``)."""
    return RewardServer((host, port), scorer, api_key)


def serve(reward: str, *, host: str = "0.0.0.0", port: int = 30001, api_key: str | None = None,
          device: str = "auto") -> int:
    """``python -m engine serve --model REWARD_PRESET``: load the reward model, then serve until stopped."""
    from engine.reward import load_reward

    print(f"loading the reward model {reward} ...", flush=True)
    t0 = time.perf_counter()
    scorer = load_reward(reward, device=device)
    try:
        server = make_server(scorer, host=host, port=port, api_key=api_key)
    except OSError as e:
        raise EngineError("port_in_use", f"Cannot listen on {host}:{port} ({e.strerror}).",
                          f"无法监听 {host}:{port}（{e.strerror}）。", detail=repr(e)) from e
    if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: no --api-key, and listening on {host}: anyone who reaches this port can use the "
              "reward model", flush=True)
    print(f"reward model {scorer.name} ({scorer.family}, on {scorer.device}) loaded in "
          f"{time.perf_counter() - t0:.1f} s; serving on {server.url} "
          f"({'API key required' if api_key else 'no API key'}); POST /v1/score, GET /health, GET /v1/models",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
