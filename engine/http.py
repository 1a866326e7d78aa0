"""The HTTP backend: candidate solutions from an OpenAI-compatible server (SGLang, vLLM, `transformers serve`).

    from engine.http import HttpEngine
    eng = HttpEngine("http://gpu-box:30000", api_key="...")   # /v1 is added when missing
    eng.check()                       # health at start: raises EngineError saying what is wrong
    sol = eng.solve([image], "Find x.", n=4)
    for event in eng.stream([image], "Find x.", n=4):          # same events as engine.core.Engine
        ...

Same interface as :class:`engine.core.Engine`: ``stream`` yields ``Delta(index, text)`` with the raw
model text of each candidate (thinking, then ``</think>``, then the answer) and ends with one
``Finished(solution)``. A server that separates the reasoning (SGLang / vLLM with a reasoning parser)
sends ``reasoning_content`` deltas; they are passed on as they come, and a ``</think>`` delta is
inserted once the content starts, so consumers treat every backend alike. A server that does not
separate it sends everything as content, ``</think>`` included. Candidates are built with
``engine.core.make_candidate``, exactly as the in-process engine builds them.

Requests: images are sent as base64 ``data:`` URLs in ``image_url`` parts (the server never fetches a
URL); sampling maps to ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and, in ``extra_body``,
``repetition_penalty`` (and ``min_tokens``). Everything streams.

Adapting to the server (each logged once, and shown by :meth:`HttpEngine.health`):
- ``n``: sent as is; a server that answers fewer choices (``transformers serve`` ignores ``n`` with the
  log line "Ignoring unsupported fields in the request: {'n'}") gets n parallel requests instead;
- an ``extra_body`` field the server refuses with a 400/422 naming it is dropped and the request is
  sent again; ``transformers serve`` refuses ``repetition_penalty`` but maps ``frequency_penalty`` f
  to ``repetition_penalty = 1 + f``, so there the penalty goes as ``frequency_penalty``.

Failures are ``EngineError`` with a message in Chinese and English: connection errors, 429 and 5xx
are retried with exponential backoff (honouring ``Retry-After``) before giving up; other 4xx are not
retried. A server that goes away in the middle of a stream raises :class:`ServerStreamError`, which
keeps the text received so far (``partial``) and the candidates built from it. ``stop()`` (or the
``stop`` event) closes the running streams; the solution then has ``stopped=True``.

Deadlines: no text ``first_token_timeout`` seconds after the request (default ``FIRST_TOKEN_S``) is
``EngineError("server_no_first_token")``; a reply still running after ``reply_timeout`` seconds
(``REPLY_S``) is stopped as ``ServerStreamError("server_too_slow")`` with its text kept. Health
requests (:meth:`HttpEngine.health`) have their own short timeout (``HEALTH_TIMEOUT_S``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.core import (
    MAX_N,
    BaseEngine,
    Candidate,
    Delta,
    Finished,
    Sampling,
    Solution,
    choose_by_agreement,
    make_candidate,
)
from engine.openai_chat import (
    _api_url,
    _data_url,
    _delta_text,
    _map_error,
    _max_tiles,
    _short,
    retry_delay,
    to_openai_messages,
)
from engine.presets import R1V2_BUDGET
from tutor.errors import EngineError, InputError

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = R1V2_BUDGET  # a served model that is not a preset: the R1V2 budget (engine.presets)
FIRST_TOKEN_S = 120.0  # no text from the server this long after the request: given up, with a clear message
REPLY_S = 900.0  # a whole reply (all candidates) may take this long; then it is stopped, the text so far kept
HEALTH_TIMEOUT_S = 30.0  # one health request (list the models, a one-token probe)
MIN_IMAGE_TOKENS = 16  # the probe's image must add at least this many prompt tokens to count as "seen"


class ServerStreamError(EngineError):
    """The server went away in the middle of a stream. ``partial`` maps candidate index -> text so far;
    ``candidates`` are built from it (finish_reason "error")."""

    def __init__(self, code: str, en: str, zh: str, detail: str = "", *, partial: dict[int, str] | None = None,
                 candidates: list[Candidate] | None = None):
        super().__init__(code, en, zh, detail)
        self.partial = partial or {}
        self.candidates = candidates or []


class _Cancelled(Exception):
    pass


@dataclass
class _Request:
    offset: int  # index of its first candidate
    count: int  # choices asked for
    seed: int | None


class HttpEngine(BaseEngine):
    """Candidate solutions from an OpenAI-compatible server (see module docstring)."""

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout: float = 600.0, connect_timeout: float = 5.0, max_retries: int = 3,
                 backoff: float = 0.5, image_format: str = "png", max_new_tokens: int | None = None,
                 first_token_timeout: float | None = FIRST_TOKEN_S, reply_timeout: float | None = REPLY_S):
        import openai  # openai.Timeout: the timeout type of the HTTP library this openai release runs on

        self.base_url = _api_url(base_url)
        self.api_key = api_key
        self.max_retries, self.backoff, self.image_format = max_retries, backoff, image_format
        self.max_new_tokens = max_new_tokens
        # a read that waits past the first-token deadline has been given up already: its thread ends then too
        read = min(timeout, first_token_timeout + 5) if first_token_timeout else timeout
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", max_retries=0,
                                    timeout=openai.Timeout(timeout, read=read, connect=connect_timeout))
        # health checks never wait as long as a generation may
        self._health_client = self.client.with_options(
            timeout=openai.Timeout(min(timeout, HEALTH_TIMEOUT_S), connect=connect_timeout))
        self.first_token_timeout, self.reply_timeout = first_token_timeout, reply_timeout
        super().__init__()
        self._model = model
        self._lock = threading.Lock()
        self._probed: dict | None = None  # what the probe found (images, n, penalty), kept
        self.native_n: bool | None = None  # does the server honour n? None: not known yet
        self.dropped_fields: set[str] = set()  # extra_body fields the server refused
        self.penalty_as_frequency = False  # transformers serve: repetition_penalty sent as frequency_penalty

    # -- public API -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._model or self.base_url

    @property
    def model(self) -> str:
        """The served model's id: the one given, else the first the server lists."""
        if self._model is None:
            self._model = self._list_models()[0]
        return self._model

    def health(self, probe: bool = True) -> dict:
        """What the server is and whether it can serve us; never raises for a server problem.

        Keys: ``ok``, ``url``, ``reachable``, ``models`` (served ids), ``model`` (the one used),
        ``images`` (does an image reach the model?), ``n`` ("native" or "parallel requests"),
        ``repetition_penalty`` (how it is sent), ``latency_s``, and when not ok ``problem`` (an error
        code), ``error``/``error_zh`` (the message for the page) and ``detail``. ``probe`` sends two
        one-token requests (text only, and with a small image and n=2) to learn about images and ``n``
        (once per engine; later calls reuse what it found and only list the models).
        """
        info: dict = {"ok": False, "url": self.base_url, "reachable": False, "models": [], "model": self._model,
                      "images": None, "n": None, "repetition_penalty": None}
        t0 = time.perf_counter()
        try:
            info["models"] = self._list_models(self._health_client)
            info["reachable"] = True
            if self._model is None:
                self._model = info["models"][0]
            info["model"] = self._model
            if self._model not in info["models"]:
                raise EngineError(
                    "wrong_model",
                    f"The server at {self.base_url} serves {', '.join(info['models'])}, not {self._model}.",
                    f"{self.base_url} 上的服务器提供的模型是 {', '.join(info['models'])}，而不是 {self._model}。",
                )
            if probe:
                if self._probed is None:  # once per engine: a page that polls health costs one GET
                    self._probe(info)
                    self._probed = {k: info.get(k) for k in ("images", "image_tokens", "n", "repetition_penalty")}
                info.update(self._probed)
                if info["images"] is False:
                    raise EngineError(
                        "no_image_input",
                        f"The model {self._model} on {self.base_url} does not take images; serve a vision model.",
                        f"{self.base_url} 上的模型 {self._model} 不接受图片输入，请部署视觉模型。",
                    )
            info["ok"] = True
        except EngineError as e:
            info.update(problem=e.code, error=e.en, error_zh=e.zh, detail=e.detail)
        info["latency_s"] = round(time.perf_counter() - t0, 3)
        return info

    def check(self, probe: bool = True) -> dict:
        """:meth:`health`, raising its problem as an EngineError; logs what the server is."""
        info = self.health(probe)
        if not info["ok"]:
            raise EngineError(info["problem"], info["error"], info["error_zh"], info.get("detail", ""))
        log.info("server %s: model %s, images %s, n %s, repetition_penalty %s", info["url"], info["model"],
                 info["images"], info["n"], info["repetition_penalty"])
        return info

    def stream(self, images: Sequence, question: str = "", *, n: int = 1, sampling: Sampling | None = None,
               messages: list[dict] | None = None, subject: str = "math", problem_type: str = "auto",
               lang: str = "en", max_tiles: int | None = None, stop: threading.Event | None = None,
               rerank: str = "reward+vote", reward=None) -> Iterator[Delta | Finished]:
        """Yield ``Delta`` events as text arrives, then one ``Finished``; as ``Engine.stream``.

        ``rerank`` and ``reward`` choose the shown candidate as in ``Engine.stream``: a reward preset or
        directory scores in this process (FACTS.md: SGLang's reward serving is text-only); a reward
        server's URL (``python -m engine serve --model REWARD_PRESET``) scores there.
        """
        from engine.core import Engine
        from engine.rerank import check_strategy
        from tutor.intake import as_pil
        from tutor.prompts import build_messages

        scorer = self.reward_scorer(reward)
        check_strategy(rerank, has_reward=scorer is not None)
        if not isinstance(n, int) or not 1 <= n <= MAX_N:
            raise InputError("bad_n", f"The number of candidates must be between 1 and {MAX_N} (got {n}).",
                             f"候选解答的数量必须在 1 到 {MAX_N} 之间（收到 {n}）。")
        sampling = sampling or Sampling()
        urls = [_data_url(im, self.image_format) for im in images]
        if messages is None:
            messages = build_messages("solve", question=question, subject=subject, problem_type=problem_type,
                                      lang=lang, n_images=len(urls))
        chat = to_openai_messages(messages, urls, max_tiles)
        stop = stop or threading.Event()
        for event in _Run(self, chat, n, sampling, stop).events():
            if isinstance(event, Finished):
                pil = [as_pil(im) for im in images] if scorer is not None else []
                Engine._rerank(event.solution, pil, messages, rerank, scorer)
            yield event

    def close(self) -> None:
        self.client.close()

    # -- internals ----------------------------------------------------------------------------------

    def _list_models(self, client=None) -> list[str]:
        try:
            ids = [m.id for m in (client or self.client).models.list()]
        except Exception as e:
            raise _map_error(e, self.base_url) from e
        if not ids:
            raise EngineError("no_model", f"The server at {self.base_url} serves no model yet (still loading?).",
                              f"{self.base_url} 上的服务器还没有可用的模型（可能仍在加载）。")
        return ids

    def _probe(self, info: dict) -> None:
        from PIL import Image

        from tutor.intake import load_image

        img = load_image(Image.new("RGB", (64, 64), "white")).data_url("png")
        base = {"model": self._model, "max_tokens": 1, "temperature": 0.0}
        text = [{"role": "user", "content": [{"type": "text", "text": "1+1="}]}]
        r0 = self.create({**base, "messages": text, "extra_body": {"repetition_penalty": 1.05}}, health=True)
        vision = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": img}},
                                                {"type": "text", "text": "1+1="}]}]
        try:
            # sampled, not greedy: vLLM refuses n > 1 at temperature 0 ("n must be 1 when using greedy sampling")
            r1 = self.create({**base, "temperature": 1.0, "seed": 0, "messages": vision, "n": 2}, health=True)
        except EngineError as e:
            if e.code != "server_rejected":
                raise
            info.update(images=False, image_error=e.detail)
            return
        p0, p1 = (r.usage.prompt_tokens if r.usage else None for r in (r0, r1))
        info["images"] = None if p0 is None or p1 is None else p1 - p0 >= MIN_IMAGE_TOKENS
        info["image_tokens"] = None if p0 is None or p1 is None else p1 - p0
        self.native_n = len(r1.choices) >= 2
        info["n"] = "native" if self.native_n else "parallel requests"
        info["repetition_penalty"] = self._penalty_mode()

    def _penalty_mode(self) -> str:
        if self.penalty_as_frequency:
            return "frequency_penalty (= repetition_penalty - 1)"
        return "unsupported" if "repetition_penalty" in self.dropped_fields else "extra_body"

    def create(self, kw: dict, cancel: threading.Event | None = None, health: bool = False):
        """``chat.completions.create`` with retries (connection errors, 429, 5xx) and field adaptation
        (``health``: with the health check's short timeout)."""
        import openai

        client = self._health_client if health else self.client
        kw = dict(kw, extra_body=dict(kw.get("extra_body") or {}))
        self._adapt(kw)
        attempt = 0
        while True:
            try:
                return client.chat.completions.create(**kw)
            except openai.APIStatusError as e:
                if e.status_code in (400, 422) and self._refused_field(e, kw):
                    continue
                if e.status_code != 429 and e.status_code < 500:
                    raise _map_error(e, self.base_url) from e
                err = e
            except openai.APIConnectionError as e:  # includes timeouts
                err = e
            if attempt >= self.max_retries:
                raise _map_error(err, self.base_url) from err
            delay = retry_delay(self.backoff, attempt,
                                getattr(getattr(err, "response", None), "headers", {}).get("retry-after"))
            attempt += 1
            log.warning("server %s: %s; retry %d/%d in %.2fs", self.base_url, _short(err), attempt,
                        self.max_retries, delay)
            if cancel is not None and cancel.wait(delay):
                raise _Cancelled()
            if cancel is None:
                time.sleep(delay)

    def _adapt(self, kw: dict) -> None:
        extra = kw["extra_body"]
        if "continuous_usage_stats" in self.dropped_fields and kw.get("stream_options"):
            kw["stream_options"] = {k: v for k, v in kw["stream_options"].items() if k != "continuous_usage_stats"}
        for name in list(self.dropped_fields):
            value = extra.pop(name, None)
            if name == "repetition_penalty" and self.penalty_as_frequency and value is not None:
                kw["frequency_penalty"] = value - 1.0

    def _refused_field(self, e, kw: dict) -> bool:
        """A 400/422 that names one of our extra_body fields: drop it (remember) and say to resend."""
        body = (getattr(getattr(e, "response", None), "text", "") or str(e)).lower()
        for name in [*kw["extra_body"], *(k for k in kw.get("stream_options") or {} if k != "include_usage")]:
            if name.lower() in body and name not in self.dropped_fields:
                with self._lock:
                    self.dropped_fields.add(name)
                    if name == "repetition_penalty" and "unexpected fields in the request" in body:
                        self.penalty_as_frequency = True  # transformers serve: 1 + frequency_penalty
                log.warning("server %s refused the field %r; sending %s", self.base_url, name,
                            "it as frequency_penalty" if self.penalty_as_frequency and name == "repetition_penalty"
                            else "without it")
                self._adapt(kw)
                return True
        return False

    def _request_kwargs(self, chat: list[dict], count: int, sampling: Sampling, seed: int | None) -> dict:
        from engine.presets import PRESETS

        preset = PRESETS.get(self.model)
        max_tokens = sampling.max_new_tokens or self.max_new_tokens or (
            preset.max_new_tokens if preset else DEFAULT_MAX_TOKENS)
        kw = {"model": self.model, "messages": chat, "stream": True, "stream_options": {"include_usage": True},
              "max_tokens": max_tokens, "temperature": sampling.temperature,
              "extra_body": {"repetition_penalty": sampling.repetition_penalty}}
        if sampling.temperature > 0:
            kw["top_p"] = sampling.top_p
        if count > 1:
            kw["n"] = count
            # per-choice usage on every chunk (vLLM, SGLang): each candidate's own token count (issue 19.6)
            kw["stream_options"]["continuous_usage_stats"] = True
        if seed is not None:
            kw["seed"] = seed
        if sampling.min_new_tokens:
            kw["extra_body"]["min_tokens"] = min(sampling.min_new_tokens, max_tokens)
        tiles = _max_tiles(chat)
        if tiles:  # vLLM reads the tiling per request here (SGLang reads it inside image_url)
            kw["extra_body"]["mm_processor_kwargs"] = {"max_dynamic_patch": tiles}
        return kw


class _Run:
    """One ``stream`` call: the requests (one with n, or n in parallel), their threads and the merge."""

    def __init__(self, eng: HttpEngine, chat: list[dict], n: int, sampling: Sampling, stop: threading.Event):
        self.eng, self.chat, self.n, self.sampling, self.stop = eng, chat, n, sampling, stop
        self.cancel = threading.Event()  # tells the worker threads to close their streams
        self.out: queue.Queue = queue.Queue()
        self.texts = [""] * n
        self.chunks = [0] * n
        self.tokens: list[int | None] = [None] * n
        self.finish: list[str | None] = [None] * n
        self.prompt_tokens = 0
        self.requests = 0
        self.active = 0
        self.streams: list = []
        self.max_tokens: int | None = None  # the budget the requests asked for

    def _start(self, req: _Request) -> None:
        self.requests += 1
        self.active += 1
        threading.Thread(target=self._work, args=(req,), daemon=True).start()

    def events(self) -> Iterator[Delta | Finished]:
        eng, n, seed = self.eng, self.n, self.sampling.seed
        t0 = time.perf_counter()
        first: float | None = None
        eng._running.add(self.stop)
        try:
            if n == 1 or eng.native_n is not False:
                self._start(_Request(0, n, seed))
            else:
                self._parallel(0, n, seed)
            while self.active and not self.stop.is_set():
                self._check_deadlines(time.perf_counter() - t0, first is not None)
                try:
                    kind, *rest = self.out.get(timeout=0.05)
                except queue.Empty:
                    continue
                if kind == "delta":
                    i, text = rest
                    first = first or time.perf_counter()
                    self.texts[i] += text
                    yield Delta(i, text)
                elif kind == "end":
                    self.active -= 1
                    req, seen = rest
                    if seen < req.count and not self.stop.is_set():  # the server ignored n
                        if eng.native_n is not False:
                            log.warning("server %s answered %d of n=%d choices: it ignores n; sending the other "
                                        "candidates as parallel requests (and all n that way from now on)",
                                        eng.base_url, seen, req.count)
                        eng.native_n = False
                        self._parallel(req.offset + seen, req.count - seen, None if seed is None else seed + seen)
                    elif seen >= req.count and req.count > 1:
                        eng.native_n = True
                elif kind == "error":
                    raise self._failure(rest[0])
            stopped = self.stop.is_set()
            lost = [i for i in range(n) if self.finish[i] is None]
            if lost and not stopped:
                raise self._failure(EngineError("server_lost", "", "", "stream ended without a finish reason"))
            candidates = [
                make_candidate(i, self.texts[i], self.tokens[i] or self.chunks[i], self.finish[i] or "stopped")
                for i in range(n)
            ]
            total = time.perf_counter() - t0
            generated = sum(c.tokens for c in candidates)
            decode = total - ((first or t0) - t0)
            timings = {"first_text_s": round((first or time.perf_counter()) - t0, 4), "total_s": round(total, 4),
                       "generated_tokens": generated, "tokens_per_s": round(generated / max(decode, 1e-9), 1),
                       "requests": self.requests, "server": eng.base_url, "max_new_tokens": self.max_tokens}
            yield Finished(Solution(candidates, choose_by_agreement(candidates), eng.name, self.prompt_tokens,
                                    timings, stopped=stopped and any(c.finish_reason == "stopped" for c in candidates)))
        finally:
            self.cancel.set()
            for s in list(self.streams):  # best effort: the workers also close theirs at the next chunk
                try:
                    s.close()
                except Exception:  # pragma: no cover - closing a dead connection
                    pass
            eng._running.discard(self.stop)

    def _check_deadlines(self, elapsed: float, started: bool) -> None:
        """The first-token and the whole-reply deadlines (``HttpEngine.first_token_timeout``, ``reply_timeout``)."""
        first, total = self.eng.first_token_timeout, self.eng.reply_timeout
        if not started and first and elapsed > first:
            self.cancel.set()
            raise EngineError(
                "server_no_first_token",
                f"The model server did not start answering within {first:g} s, so the request was stopped. "
                "Please try again later.",
                f"模型服务器在 {first:g} 秒内没有开始回答，已停止本次请求。请稍后再试。",
                f"no text {elapsed:.1f} s after the request")
        if total and elapsed > total:
            err = self._failure(EngineError("server_too_slow", "", "", f"reply still running after {elapsed:.1f} s"))
            raise err

    def _parallel(self, offset: int, count: int, seed: int | None) -> None:
        for j in range(count):
            self._start(_Request(offset + j, 1, None if seed is None else seed + j))

    def _failure(self, err: BaseException) -> EngineError:
        self.cancel.set()
        if isinstance(err, EngineError) and err.code not in ("server_lost", "server_bad_reply", "server_too_slow"):
            return err
        partial = {i: t for i, t in enumerate(self.texts) if t}
        candidates = [make_candidate(i, t, self.tokens[i] or self.chunks[i], "error") for i, t in partial.items()]
        got, url = sum(len(t) for t in partial.values()), self.eng.base_url
        if isinstance(err, EngineError) and err.code == "server_too_slow":
            secs = f"{self.eng.reply_timeout:g}"
            return ServerStreamError(
                "server_too_slow",
                f"The reply took longer than {secs} s and was stopped ({got} characters received, kept). "
                "Please try again, or ask for a shorter answer.",
                f"回答超过 {secs} 秒，已停止（已收到 {got} 个字符并保留）。请重试，或要求更简短的回答。",
                detail=err.detail, partial=partial, candidates=candidates)
        if isinstance(err, EngineError) and err.code == "server_bad_reply":  # not JSON: a proxy page, a bug
            return ServerStreamError(
                "server_bad_reply",
                f"The model server at {url} sent a reply that could not be read ({got} characters received "
                "before it, kept). Please try again.",
                f"{url} 上的模型服务器返回了无法解析的内容（此前已收到 {got} 个字符并保留）。请重试。",
                detail=err.detail, partial=partial, candidates=candidates)
        return ServerStreamError(
            "server_lost",
            f"The model server at {url} stopped answering in the middle of the reply "
            f"({got} characters received, kept). Please try again.",
            f"{url} 上的模型服务器在回答中途断开（已收到 {got} 个字符并保留）。请重试。",
            detail=_short(err), partial=partial, candidates=candidates,
        )

    def _share_total(self, req: _Request, total: int) -> None:
        """A server that reports only the request's total for n choices: split it over the candidates
        that have no count of their own, in proportion to their chunks (an estimate that adds up)."""
        ids = range(req.offset, req.offset + req.count)
        missing = [i for i in ids if self.tokens[i] is None]
        if req.count < 2 or not total or not missing:
            return
        left = max(total - sum(self.tokens[i] or 0 for i in ids), 0)
        chunks = sum(self.chunks[i] for i in missing) or len(missing)
        for k, i in enumerate(missing):
            share = left - sum(self.tokens[m] or 0 for m in missing[:k]) if k == len(missing) - 1 else \
                round(left * (self.chunks[i] or 1) / chunks)
            self.tokens[i] = max(share, 0)

    def _work(self, req: _Request) -> None:
        seen: set[int] = set()
        try:
            kw = self.eng._request_kwargs(self.chat, req.count, self.sampling, req.seed)
            self.max_tokens = kw["max_tokens"]
            stream = self.eng.create(kw, self.cancel)
            self.streams.append(stream)
            reasoning = [False] * req.count
            closed = [False] * req.count
            total_usage = 0
            for chunk in stream:
                if self.cancel.is_set() or self.stop.is_set():
                    self.cancel.set()
                    break
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    self.prompt_tokens = self.prompt_tokens or usage.prompt_tokens or 0
                    if req.count == 1 and usage.completion_tokens:
                        self.tokens[req.offset] = usage.completion_tokens
                    elif (len(chunk.choices or []) == 1 and 0 <= chunk.choices[0].index < req.count
                          and "continuous_usage_stats" not in self.eng.dropped_fields):
                        # continuous usage: this choice's own running count (not the chunks: the server
                        # sends no chunk for tokens that add no text, such as </think> under a parser)
                        j = req.offset + chunk.choices[0].index
                        self.tokens[j] = max(self.tokens[j] or 0, usage.completion_tokens or 0) or None
                    elif not chunk.choices and usage.completion_tokens:
                        total_usage = usage.completion_tokens  # the whole request's, all n choices
                for ch in chunk.choices or []:
                    if not 0 <= ch.index < req.count:
                        continue
                    i = req.offset + ch.index
                    seen.add(ch.index)
                    rc = _delta_text(ch.delta, "reasoning_content", "reasoning") if ch.delta else ""
                    content = (ch.delta.content or "") if ch.delta else ""
                    if rc:
                        reasoning[ch.index] = True
                        self.chunks[i] += 1
                        self.out.put(("delta", i, rc))
                    if content:
                        if reasoning[ch.index] and not closed[ch.index]:
                            closed[ch.index] = True
                            self.out.put(("delta", i, "</think>"))
                        self.chunks[i] += 1
                        self.out.put(("delta", i, content))
                    if ch.finish_reason:
                        self.finish[i] = "length" if ch.finish_reason == "length" else "stop"
            self._share_total(req, total_usage)
            if self.cancel.is_set():
                stream.close()
        except _Cancelled:
            pass
        except Exception as e:
            if not self.cancel.is_set():
                if not isinstance(e, EngineError):
                    log.warning("stream from %s broke: %s", self.eng.base_url, _short(e))
                    e = EngineError("server_bad_reply" if isinstance(e, ValueError) else "server_lost", "", "",
                                    _short(e))
                self.out.put(("error", e))
                return
        self.out.put(("end", req, len(seen)))
