"""The client of ``engine.reward_server``: a reward scorer that scores on another machine.

    from engine.reward_client import HttpRewardScorer
    scorer = HttpRewardScorer("http://gpu-box:30001", api_key="KEY")
    scorer.health()                                     # {"ok": True, "model": ..., ...}; never raises
    scorer.score([image], question, candidates)         # -> [0.41, -0.12, ...], as RewardScorer.score

Same interface as ``engine.reward_scorer.RewardScorer`` where the reranker uses it (``score``,
``name``, ``last_timings``), so ``--reward http://HOST:PORT`` works wherever a reward preset does:
``BaseEngine.reward_scorer`` makes one of these for an http(s) address, with the key from
``R1V_REWARD_API_KEY`` (else ``R1V_API_KEY``). Candidates are sent as ``{"thinking", "text",
"truncated"}`` and read on the server exactly as the in-process scorer reads them; images as PNG
``data:`` URLs (``engine.http``'s encoding), once per request for all the candidates.

Retries like ``engine.http``: connection errors, timeouts, 429 and 5xx are retried with exponential
backoff (``backoff * 2**attempt``, at most 8 s; ``Retry-After`` honoured up to 30 s), ``max_retries``
times; other 4xx are not. Failures are ``EngineError`` (``reward_server_unreachable``,
``reward_server_timeout``, ``reward_server_unauthorized``, ``reward_server_rejected``,
``reward_server_error``, ``reward_server_bad_reply``). ``fallback = True`` tells
``engine.core.Engine._rerank`` that such a failure should not fail the solve: the candidates are
then chosen by answer agreement and the solution says why (``Solution.notes``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit

from engine.openai_chat import _data_url, retry_delay
from tutor.errors import EngineError, InputError

log = logging.getLogger(__name__)

TIMEOUT_S = 300.0  # one scoring request (n long traces on a busy GPU)
HEALTH_TIMEOUT_S = 10.0


def is_reward_url(reward: object) -> bool:
    return isinstance(reward, str) and reward.strip().lower().startswith(("http://", "https://"))


def _base(url: str) -> str:
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError("bad_reward_url", f"The reward server address must be an http(s) URL (got {url!r}).",
                         f"奖励模型服务器地址必须是 http(s) 网址（收到 {url!r}）。")
    path = parts.path.rstrip("/")
    path = path[:-3] if path.endswith("/v1") else path
    return f"{parts.scheme}://{parts.netloc}{path}"


class HttpRewardScorer:
    """Reward scores from a ``python -m engine serve --model REWARD_PRESET`` server (module docstring)."""

    family = "remote"
    fallback = True  # a failure falls back to answer agreement, with a note (engine.core.Engine._rerank)

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = TIMEOUT_S,
                 connect_timeout: float = 5.0, max_retries: int = 3, backoff: float = 0.5,
                 image_format: str = "png"):
        self.url = _base(url)
        self.api_key = api_key if api_key is not None else (
            os.environ.get("R1V_REWARD_API_KEY") or os.environ.get("R1V_API_KEY") or None)
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.max_retries, self.backoff, self.image_format = max_retries, backoff, image_format
        self._model: str | None = None
        self.last_timings: dict = {}
        self.requests = 0  # HTTP requests sent (retries included)

    @property
    def name(self) -> str:
        return self._model or self.url

    # -- public API -------------------------------------------------------------------------------

    def health(self) -> dict:
        """``{"ok", "url", "model", "latency_s"}`` plus ``problem``/``error``/``error_zh`` when not ok;
        checks /health and (with the key) /v1/models. Never raises for a server problem."""
        info: dict = {"ok": False, "url": self.url, "model": self._model}
        t0 = time.perf_counter()
        try:
            self._call("GET", "/health", timeout=HEALTH_TIMEOUT_S, retries=0)
            models = self._call("GET", "/v1/models", timeout=HEALTH_TIMEOUT_S, retries=0)
            ids = [m.get("id") for m in models.get("data", []) if isinstance(m, dict)]
            if not ids:
                raise EngineError("reward_server_bad_reply", f"The reward server at {self.url} lists no model.",
                                  f"{self.url} 上的奖励模型服务器没有列出模型。")
            self._model = self._model or ids[0]
            info.update(ok=True, model=self._model)
        except EngineError as e:
            info.update(problem=e.code, error=e.en, error_zh=e.zh, detail=e.detail)
        info["latency_s"] = round(time.perf_counter() - t0, 3)
        return info

    def check(self) -> dict:
        """``health()``, raising its problem as an EngineError."""
        info = self.health()
        if not info["ok"]:
            raise EngineError(info["problem"], info["error"], info["error_zh"], info.get("detail", ""))
        return info

    def score(self, images: Sequence, question: str, responses: Sequence) -> list[float]:
        """Scores of ``responses`` (strings or candidates) to one problem, in order (one request)."""

        if not responses:
            return []
        if not isinstance(question, str):
            raise InputError("bad_question", "The question must be text.", "题目必须是文本。")
        body = {"question": question, "images": [_data_url(im, self.image_format) for im in images],
                "responses": [self._response(r) for r in responses]}
        if self._model:
            body["model"] = self._model
        t0 = time.perf_counter()
        reply = self._call("POST", "/v1/score", body)
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if not isinstance(scores, list) or len(scores) != len(responses) or \
                not all(isinstance(s, (int, float)) for s in scores):
            raise EngineError("reward_server_bad_reply", f"The reward server at {self.url} sent no usable scores.",
                              f"{self.url} 上的奖励模型服务器没有返回可用的分数。", detail=str(reply)[:300])
        self._model = self._model or reply.get("model")
        self.last_timings = {**(reply.get("timings") or {}), "http_s": round(time.perf_counter() - t0, 4)}
        return [float(s) for s in scores]

    # -- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _response(r) -> str | dict:
        if isinstance(r, str):
            return r
        return {"thinking": getattr(r, "thinking", "") or "", "text": getattr(r, "text", "") or "",
                "truncated": bool(getattr(r, "truncated", False))}

    def _call(self, method: str, path: str, body: dict | None = None, *, timeout: float | None = None,
              retries: int | None = None) -> dict:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        retries = self.max_retries if retries is None else retries
        attempt = 0
        while True:
            self.requests += 1
            req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                    raw = resp.read()
                try:
                    return json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise EngineError("reward_server_bad_reply",
                                      f"The reward server at {self.url} sent a reply that is not JSON.",
                                      f"{self.url} 上的奖励模型服务器返回了非 JSON 内容。", detail=repr(raw[:200])) from e
            except urllib.error.HTTPError as e:
                err: EngineError = self._status_error(e)
                if e.code != 429 and e.code < 500:
                    raise err from None
                retry_after = e.headers.get("Retry-After") if e.headers else None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                reason = getattr(e, "reason", e)
                timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
                err = EngineError(
                    "reward_server_timeout" if timed_out else "reward_server_unreachable",
                    f"The reward server at {self.url} did not answer in time." if timed_out else
                    f"Cannot reach the reward server at {self.url} (python -m engine serve --model REWARD_PRESET).",
                    f"{self.url} 上的奖励模型服务器响应超时。" if timed_out else
                    f"无法连接 {self.url} 上的奖励模型服务器（python -m engine serve --model 奖励预设）。",
                    detail=f"{type(e).__name__}: {reason}"[:300])
            if attempt >= retries:
                raise err
            delay = retry_delay(self.backoff, attempt, retry_after)
            attempt += 1
            log.warning("reward server %s: %s; retry %d/%d in %.2fs", self.url, err.detail or err.code, attempt,
                        retries, delay)
            time.sleep(delay)

    def _status_error(self, e: urllib.error.HTTPError) -> EngineError:
        try:
            payload = json.loads(e.read().decode("utf-8")).get("error", {})
        except Exception:  # noqa: BLE001 - a proxy's HTML page, an empty body
            payload = {}
        detail = f"{e.code} {payload.get('code', '')}: {payload.get('message', e.reason)}"[:300]
        if e.code in (401, 403):
            return EngineError("reward_server_unauthorized", f"The reward server at {self.url} refused the API key "
                               f"({e.code}); set R1V_REWARD_API_KEY.",
                               f"{self.url} 上的奖励模型服务器拒绝了 API 密钥（{e.code}）；请设置 R1V_REWARD_API_KEY。",
                               detail)
        if e.code == 429 or e.code >= 500:
            return EngineError("reward_server_error", f"The reward server at {self.url} failed ({e.code}).",
                               f"{self.url} 上的奖励模型服务器出错（{e.code}）。", detail)
        return EngineError("reward_server_rejected", f"The reward server at {self.url} rejected the request "
                           f"({e.code}: {payload.get('message', e.reason)}).",
                           f"{self.url} 上的奖励模型服务器拒绝了请求（{e.code}：{payload.get('message_zh', e.reason)}）。",
                           detail)
