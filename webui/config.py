"""Command line, environment and engine selection for the web app.

    from webui.config import parse_config, make_engine
    cfg = parse_config(["--model", "tiny-random", "--port", "7861"])   # flags win over R1V_* env vars
    engine = make_engine(cfg)        # a LazyEngine: loads the model on the first question

Flags and the environment variables that mirror them (DESIGN.md):

    --model PRESET      R1V_MODEL           a preset from engine.presets (or a checkpoint directory)
    --server URL        R1V_SERVER          an OpenAI-compatible server (SGLang/vLLM), via engine.http
    --n N               R1V_N               default number of candidates on the page (1..16)
    --host H            R1V_HOST            default 127.0.0.1 (0.0.0.0 on a Hugging Face Space)
    --port P            R1V_PORT / GRADIO_SERVER_PORT   default 7860
    --share             R1V_SHARE=1         a public gradio.live link
    --concurrency K     R1V_CONCURRENCY     model runs at once (default 1 in process, 8 with a server)
    --queue-size Q      R1V_QUEUE_SIZE      waiting requests before "queue full" (default 32)
    --max-upload SIZE   R1V_MAX_UPLOAD      upload size limit, e.g. "20mb" (default 20mb)
    --max-new-tokens T  R1V_MAX_NEW_TOKENS  the page's starting thinking budget, tokens per candidate
                                            (default: the preset's, 64000 for R1V2; the page's
                                            "Thinking budget" control changes it per question)
    --preload           R1V_PRELOAD=1       load the model at start instead of on the first question
    --first-token-s S   R1V_FIRST_TOKEN_S   a server that sends no text this long is given up (default 120)
    --reply-s S         R1V_REPLY_S         a server's whole reply is stopped after this long (default 900)
    --reward NAME       R1V_REWARD          reward model that ranks several candidates: a reward preset
                                            (``mini-reward``, ``skywork-vl-reward-7b``...), a directory,
                                            a reward server ``http://HOST:PORT`` (``python -m engine serve
                                            --model REWARD_PRESET``; its key in ``R1V_REWARD_API_KEY``),
                                            ``none``, or ``auto`` (default: ``mini-reward`` with ``mini``)
    --local-engine E    R1V_LOCAL_ENGINE    with --model: start a serving engine as the app's child and
                                            use it over HTTP (``engine.local``): sglang, vllm,
                                            transformers (CPU tests), none (in process), or auto (the
                                            default: the preset's engine when it is installed)
    --engine-python PY  R1V_ENGINE_PYTHON   the interpreter of the serving engine's own venv
    --local-port P      R1V_LOCAL_PORT      the child server's port on 127.0.0.1 (default: a free one)
    --local-start-s S   R1V_LOCAL_START_S   how long the child may take to answer (default 3600: a first
                                            start downloads the weights)

With neither ``--model`` nor ``--server`` the app picks (:func:`pick_model`): the server if
``R1V_SERVER`` is set; else R1V2 in 4-bit when a CUDA GPU with enough memory is present; else the
small CPU model (``mini`` when that preset exists, else ``tiny-random``). ``python app.py`` therefore
always comes up.

On a Hugging Face Space with ZeroGPU (``webui.space``), the model is loaded at start (module scope; the
NF4 preset from the pre-quantized checkpoint in ``R1V_PREQUANTIZED``) and generation runs inside
``spaces.GPU(size=..., duration=...)``; elsewhere nothing changes.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tutor.errors import EngineError

log = logging.getLogger(__name__)

NF4_MIN_GPU_GB = 40  # R1V2 in NF4: about 32 GB of weights plus KV cache (FACTS.md)


@dataclass
class AppConfig:
    model: str | None = None
    server: str | None = None
    n: int = 1
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    concurrency: int | None = None  # None: 1 in process, 8 with a server
    queue_size: int = 32
    max_upload: str = "20mb"
    max_new_tokens: int | None = None
    preload: bool = False
    reward: str = "auto"
    first_token_s: float = 120.0
    reply_s: float = 900.0
    local_engine: str = "auto"
    engine_python: str | None = None
    local_port: int = 0
    local_start_s: float = 3600.0
    local_url: str | None = None  # set by make_engine when it started a local server (engine.local)

    @property
    def engine_concurrency(self) -> int:
        return self.concurrency or (8 if self.server or self.local_url else 1)


def _env_bool(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _env_int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        if env.get(name, "").strip():
            return int(env[name])
    return None


def parse_config(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> AppConfig:
    """Flags over environment variables over defaults (see the module docstring)."""
    env = os.environ if env is None else env
    on_space = bool(env.get("SPACE_ID"))
    p = argparse.ArgumentParser(prog="python app.py", description="R1V Tutor web app")
    p.add_argument("--model", default=env.get("R1V_MODEL") or None, help="model preset or checkpoint directory")
    p.add_argument("--server", default=env.get("R1V_SERVER") or None, help="OpenAI-compatible server URL")
    p.add_argument("--n", type=int, default=_env_int(env, "R1V_N") or 1, help="default number of candidates")
    p.add_argument("--host", default=env.get("R1V_HOST") or ("0.0.0.0" if on_space else "127.0.0.1"))
    p.add_argument("--port", type=int, default=_env_int(env, "R1V_PORT", "GRADIO_SERVER_PORT") or 7860)
    p.add_argument("--share", action="store_true", default=_env_bool(env.get("R1V_SHARE")))
    p.add_argument("--concurrency", type=int, default=_env_int(env, "R1V_CONCURRENCY"))
    p.add_argument("--queue-size", type=int, default=_env_int(env, "R1V_QUEUE_SIZE") or 32)
    p.add_argument("--max-upload", default=env.get("R1V_MAX_UPLOAD") or "20mb")
    p.add_argument("--max-new-tokens", type=int, default=_env_int(env, "R1V_MAX_NEW_TOKENS"))
    p.add_argument("--preload", action="store_true", default=_env_bool(env.get("R1V_PRELOAD")))
    p.add_argument("--reward", default=env.get("R1V_REWARD", "auto"))
    p.add_argument("--first-token-s", type=float, default=float(env.get("R1V_FIRST_TOKEN_S") or 120))
    p.add_argument("--reply-s", type=float, default=float(env.get("R1V_REPLY_S") or 900))
    p.add_argument("--local-engine", default=env.get("R1V_LOCAL_ENGINE") or "auto",
                   choices=["auto", "sglang", "vllm", "transformers", "none"])
    p.add_argument("--engine-python", default=env.get("R1V_ENGINE_PYTHON") or None)
    p.add_argument("--local-port", type=int, default=_env_int(env, "R1V_LOCAL_PORT") or 0)
    p.add_argument("--local-start-s", type=float, default=float(env.get("R1V_LOCAL_START_S") or 3600))
    a = p.parse_args(argv)
    if not 1 <= a.n <= 16:
        p.error("--n must be between 1 and 16")
    if a.first_token_s <= 0 or a.reply_s <= 0:
        p.error("--first-token-s and --reply-s must be positive")
    return AppConfig(model=a.model, server=a.server, n=a.n, host=a.host, port=a.port, share=a.share,
                     concurrency=a.concurrency, queue_size=a.queue_size, max_upload=a.max_upload,
                     max_new_tokens=a.max_new_tokens, preload=a.preload, reward=a.reward,
                     first_token_s=a.first_token_s, reply_s=a.reply_s, local_engine=a.local_engine,
                     engine_python=a.engine_python, local_port=a.local_port, local_start_s=a.local_start_s)


def gpu_memory_gb() -> float:
    """Memory of the first CUDA GPU in GB, 0 when there is none (or torch is missing)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / 1e9
    except Exception:  # noqa: BLE001 - any failure here just means "no usable GPU"
        log.debug("no CUDA GPU", exc_info=True)
    return 0.0


def pick_model(cfg: AppConfig, gpu_gb: float | None = None) -> tuple[str, str]:
    """("http", url) or ("local", preset): explicit choices first, then the automatic one."""
    from engine.presets import PRESETS

    if cfg.server:
        return "http", cfg.server
    if cfg.model:
        return "local", cfg.model
    gpu_gb = gpu_memory_gb() if gpu_gb is None else gpu_gb
    if gpu_gb >= NF4_MIN_GPU_GB and "r1v2-38b-nf4" in PRESETS:
        return "local", "r1v2-38b-nf4"
    return "local", "mini" if _mini_shipped(PRESETS) else "tiny-random"


def _mini_shipped(presets: dict) -> bool:
    """The ``mini`` preset exists and its checkpoint is really in the repository."""
    from pathlib import Path

    mini = presets.get("mini")
    root = Path(__file__).resolve().parent.parent
    return mini is not None and (root / mini.repo_id / "config.json").exists()


def _gpu_wrap(fn: Any, target: str) -> Any:
    """Generation under ``spaces.GPU`` with the size and duration ``webui.space`` decides for the preset
    ``target``; ``fn`` unchanged off ZeroGPU."""
    from engine.presets import PRESETS
    from webui import space

    preset = PRESETS.get(target)
    budget = preset.max_new_tokens if preset else 4096
    weights = float((preset.notes if preset else {}).get("weights_gb", 1.0))
    return space.gpu(fn, budget=budget, weights_gb=weights, n=int(os.environ.get("R1V_N") or 1))


class MissingBackend:
    """Stands in for an engine that cannot be built (e.g. engine.http absent): every run fails clearly."""

    def __init__(self, name: str, error: EngineError):
        self.name, self.error = name, error

    def stream(self, *a: Any, **kw: Any) -> Iterator[Any]:
        raise self.error

    def stop(self) -> None:
        pass

    def health(self) -> dict:
        return {"ok": False, "error": self.error.en, "error_zh": self.error.zh}


class LazyEngine:
    """The engine interface (``stream``, ``stop``, ``name``, ``health``), loading the model on first use.

    ``kind`` is "local" (in-process transformers, ``engine.core.Engine``) or "http"
    (``engine.http.HttpEngine``, imported only when needed). Thread-safe: concurrent first requests
    load once.
    """

    def __init__(self, kind: str, target: str, *, engine: Any = None, http_kwargs: dict | None = None,
                 server: Any = None):
        self.kind, self.target = kind, target
        self.server = server  # an engine.local.LocalServer this app started (its URL is the target), or None
        self.http_kwargs = http_kwargs or {}  # HttpEngine's deadlines (first_token_timeout, reply_timeout)
        self._engine = engine
        self._lock = threading.Lock()
        self._stream = _gpu_wrap(self._stream_impl, target) if kind == "local" else self._stream_impl

    @property
    def name(self) -> str:
        return getattr(self._engine, "name", None) or (self.server.model if self.server else self.target)

    @property
    def backend(self) -> str:
        if self.server is not None:
            return f"{self.server.engine}, local"
        return "http" if self.kind == "http" else "transformers"

    @property
    def writes_problems(self) -> bool:
        """The model's declared capability (``engine.presets.Preset.writes_problems``), known before it
        loads: a served model is taken to be a capable one."""
        if self._engine is not None:
            return bool(getattr(self._engine, "writes_problems", True))
        if self.kind == "http" and self.server is None:
            return True
        from engine.core import writes_problems

        return writes_problems(self.server.model if self.server is not None else self.target)

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def get(self) -> Any:
        """The real engine, built on the first call."""
        with self._lock:
            if self._engine is None:
                self._engine = self._build()
            return self._engine

    def _build(self) -> Any:
        if self.server is not None:
            self.server.raise_unless_ready()  # "still starting" (or why it failed): nothing kept
        if self.kind == "http":
            try:
                from engine.http import HttpEngine  # built by another issue; optional here
            except ImportError as e:
                log.error("engine.http is not available: %s", e)
                return MissingBackend(self.target, EngineError(
                    "engine_missing", "The HTTP backend (engine.http) is not installed in this version.",
                    "此版本还没有 HTTP 后端（engine.http）。", detail=str(e)))
            if self.server is not None:  # served as the preset's name (engine.serve --served-model-name)
                return HttpEngine(self.target, model=self.server.served_model, **self.http_kwargs)
            return HttpEngine(self.target, api_key=os.environ.get("R1V_API_KEY") or None, **self.http_kwargs)
        from engine.core import Engine

        log.info("loading model %s", self.target)
        return Engine(self.target)

    def _stream_impl(self, *args: Any, **kw: Any) -> Iterator[Any]:
        if self.server is not None:
            self.server.raise_unless_ready()  # still starting, or stopped since: said as such
        yield from self.get().stream(*args, **kw)

    def stream(self, *args: Any, **kw: Any) -> Iterator[Any]:
        return self._stream(*args, **kw)

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.stop()

    def health(self) -> dict:
        """{"ok": bool, "loaded": bool, ...}; asks the server for an HTTP engine, never raises."""
        if self.kind != "http":
            return {"ok": True, "loaded": self.loaded}
        if self.server is not None and not self.server.health()["ok"]:
            return self.server.health()  # starting (the banner says so), or why it did not start or stopped
        try:
            eng = self.get()
            info = dict(eng.health()) if hasattr(eng, "health") else {"ok": True}
            info.setdefault("ok", True)
        except Exception as e:  # noqa: BLE001 - reported on the page as "not reachable"
            log.warning("health check failed: %s", e)
            msg = e.message("en") if hasattr(e, "message") else type(e).__name__
            msg_zh = e.message("zh") if hasattr(e, "message") else msg
            info = {"ok": False, "error": msg, "error_zh": msg_zh}
        info["loaded"] = True
        return info


def make_engine(cfg: AppConfig, engine: Any = None) -> LazyEngine:
    """The engine the config asks for (``engine`` given: wrapped as it is, e.g. a test's tiny one)."""
    if engine is not None:
        if isinstance(engine, LazyEngine):
            return engine
        kind = "http" if type(engine).__name__ == "HttpEngine" else "local"
        return LazyEngine(kind, getattr(engine, "name", "?"), engine=engine)
    kind, target = pick_model(cfg)
    if kind == "local":
        from engine.local import LocalServer, choose

        served = choose(target, cfg.local_engine, cfg.engine_python)
        if served is not None:  # the serving engine as this app's child, used over HTTP
            server = LocalServer(target, served, python=cfg.engine_python, port=cfg.local_port,
                                 start_timeout=cfg.local_start_s).start()
            cfg.local_url = server.url
            lazy = LazyEngine("http", server.url, server=server,
                              http_kwargs={"first_token_timeout": cfg.first_token_s, "reply_timeout": cfg.reply_s})
            if cfg.preload:
                server.wait()
                lazy.get()
            return lazy

        from webui import space

        loaded = space.module_scope_engine(target)  # on ZeroGPU: loaded now, at module scope; else None
        if loaded is not None:
            return LazyEngine(kind, target, engine=loaded)
    lazy = LazyEngine(kind, target, http_kwargs={"first_token_timeout": cfg.first_token_s,
                                                 "reply_timeout": cfg.reply_s})
    if cfg.preload:
        lazy.get()
    return lazy


def pick_reward(cfg: AppConfig, engine: Any) -> str | None:
    """The reward model for ``Tutor(reward=...)``: none, the one named, or with ``auto`` the shipped
    Mini-R1V reward model when the page runs ``mini`` in process (others need an explicit name: the
    real reward model is a 7B download)."""
    choice = (cfg.reward or "auto").strip()
    if choice.lower() == "none":
        return None
    if choice.lower() != "auto":
        return choice
    from pathlib import Path

    head = Path(__file__).resolve().parent.parent / "assets" / "mini" / "reward" / "value_head.safetensors"
    if getattr(engine, "kind", "") == "local" and getattr(engine, "target", "") == "mini" and head.is_file():
        return "mini-reward"
    return None
