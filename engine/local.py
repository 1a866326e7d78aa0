"""A serving engine (SGLang or vLLM) on this machine as a child of the app: the local one-GPU server mode.

    python app.py --model r1v2-38b-awq                        # the preset's engine (SGLang) as a child
    python app.py --model r1v2-38b-awq --local-engine vllm    # vLLM instead
    python app.py --model tiny-random --local-engine vllm     # on a CPU: the vLLM CPU build's engine env
    python app.py --model r1v2-38b-nf4 --local-engine none    # in process (bitsandbytes NF4), no server
    python -m engine solve PHOTO --model r1v2-38b-awq --local-engine sglang

    from engine.local import LocalServer, choose
    engine = choose("r1v2-38b-awq", "auto")        # "sglang", "vllm", or None (in process)
    srv = LocalServer("r1v2-38b-awq", engine)
    srv.start()                                    # returns at once; the server starts in the background
    srv.wait()                                     # or poll srv.health(); srv.url is an HttpEngine's URL
    srv.stop()                                     # also at exit, and if the app is killed (below)

Which engine (:func:`choose`): ``--local-engine`` / ``R1V_LOCAL_ENGINE`` ``sglang``, ``vllm``,
``transformers`` (``transformers serve``: CPU tests) or ``none``; ``auto`` (the default) takes the
preset's own engine (``Preset.engine``) when it is installed, a served-only preset the other server
engine when that one is, and otherwise the in-process engine (the NF4 preset on a GPU box without the
server packages). Which Python runs it (:func:`engine_python`): ``--engine-python`` /
``R1V_ENGINE_PYTHON`` (the venv of ``requirements-gpu-server.txt`` on a GPU box), else the project's
own engine environment for it where ``engine.envs.ENVS`` has one (``vllm-cpu`` on a machine without a
CUDA GPU, built on first use), else the app's own interpreter if the engine is importable there.

The command is ``engine.serve``'s launch plan (:func:`engine.serve.plan`, never a copy of it) for one
replica bound to 127.0.0.1 on a free port (``--local-port`` to fix it), run with that Python. The
server's output goes to ``<data dir>/serving/<preset>-<engine>.log``; while it starts the log says so
every 15 s, the page's banner says "starting the model server…" and a question gets that message,
not an error. A start that fails (engine missing, port in use, the server exiting: with the last
lines of its log, no ready answer within ``--local-start-s``) is an ``EngineError`` in English and
Chinese.

Stopping: :meth:`LocalServer.stop` at exit (``atexit``) and on SIGTERM/SIGINT (the app turns those
into a normal exit). The server runs under ``engine.supervise``, a watchdog in its own process group
whose stdin is a pipe held only by the app: when the app dies in any way, SIGKILL included, the
kernel closes the pipe and the watchdog stops the server's whole process group. Where the app starts
it from its main thread, ``PR_SET_PDEATHSIG`` (Linux) signals the watchdog as well.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from engine.presets import get_preset
from engine.supervise import set_pdeathsig
from tutor.errors import EngineError

log = logging.getLogger(__name__)

CHOICES = ("auto", "sglang", "vllm", "transformers", "none")
SERVER_ENGINES = ("sglang", "vllm")
MODULES = {"sglang": "sglang", "vllm": "vllm", "transformers": "transformers"}
PROGRESS_EVERY_S = 15.0
START_TIMEOUT_S = 3600.0  # a first start downloads the weights (about 30 GB for the AWQ preset)
TAIL_LINES = 12


def _has_cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, no driver: no GPU
        return False


def _project_env(engine: str) -> str | None:
    """The ``engine.envs.ENVS`` entry that provides ``engine`` on this machine, if any."""
    from engine import envs

    names = {"vllm": ["vllm"] + ([] if _has_cuda() else ["vllm-cpu"]), "sglang": ["sglang"]}.get(engine, [])
    return next((n for n in names if n in envs.ENVS), None)


def engine_python(engine: str, explicit: str | None = None, *, build: bool = False) -> tuple[str, str]:
    """(interpreter, where it came from) for ``engine`` (module docstring). ``build``: build the
    project's engine env now when it is not built yet (else it counts only once built)."""
    explicit = explicit or os.environ.get("R1V_ENGINE_PYTHON") or None
    if explicit:
        path = shutil.which(explicit) or explicit
        if not Path(path).is_file():
            raise EngineError("engine_python_missing", f"--engine-python {explicit}: no such interpreter.",
                              f"--engine-python {explicit}：找不到这个 Python 解释器。")
        return path, "--engine-python"
    if engine in SERVER_ENGINES:
        name = _project_env(engine)
        if name is not None:
            from engine import envs

            if envs.is_built(name) or build:
                return str(envs.ensure_env(name, log=lambda line: log.info("%s", line))), f"engine env {name}"
    return sys.executable, "the app's Python"


def importable(python: str, module: str) -> bool:
    """Whether ``module`` can be imported by ``python`` (found, not imported)."""
    if python == sys.executable:
        return importlib.util.find_spec(module) is not None
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def available(engine: str, explicit_python: str | None = None) -> bool:
    """Whether ``engine`` can run here without building anything."""
    try:
        py, _ = engine_python(engine, explicit_python)
    except EngineError:
        return False
    return importable(py, MODULES[engine])


def _missing(engine: str, preset: str) -> EngineError:
    env = _project_env(engine)
    how = (f" or let the project build its own with `python -m engine env {env}`" if env else "")
    how_zh = (f"，或用 `python -m engine env {env}` 构建项目自带的环境" if env else "")
    return EngineError(
        "engine_not_installed",
        f"{engine} is not installed for {preset}. Install requirements-gpu-server.txt in its own environment and "
        f"pass its Python with --engine-python PATH (R1V_ENGINE_PYTHON){how}; or run in process with "
        "--local-engine none (the NF4 preset on one GPU).",
        f"{preset} 所需的 {engine} 尚未安装。请在独立环境中安装 requirements-gpu-server.txt，并用 --engine-python PATH"
        f"（R1V_ENGINE_PYTHON）指定其 Python{how_zh}；或用 --local-engine none 在进程内运行（单 GPU 用 NF4 预设）。")


def choose(model: str, requested: str | None = "auto", explicit_python: str | None = None) -> str | None:
    """The engine to start for preset ``model``: "sglang", "vllm", "transformers", or None (in process).
    An engine asked for by name is not checked here (:meth:`LocalServer.start` says if it is missing)."""
    requested = (requested or os.environ.get("R1V_LOCAL_ENGINE") or "auto").strip().lower()
    if requested not in CHOICES:
        raise EngineError("bad_local_engine", f"--local-engine must be one of {', '.join(CHOICES)} (got {requested!r}).",
                          f"--local-engine 必须是 {'、'.join(CHOICES)} 之一（收到 {requested!r}）。")
    if requested == "none":
        return None
    try:
        preset = get_preset(model)
    except Exception:  # noqa: BLE001 - a checkpoint directory: loaded in process
        if requested == "auto":
            return None
        raise
    if requested != "auto":
        return requested
    own = getattr(preset, "engine", None)
    candidates = [own] if own else []
    if preset.served_only:
        candidates += [e for e in SERVER_ENGINES if e not in candidates]
    for eng in candidates:
        if available(eng, explicit_python):
            return eng
    if preset.served_only:
        raise _missing(own or SERVER_ENGINES[0], preset.name)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _argv(argv: list[str], python: str) -> list[str]:
    """A launch's argv run by ``python``: ``python -m X`` and the app's own interpreter become it; a
    console script (``vllm``) becomes the one beside it."""
    if argv[0] in ("python", sys.executable):
        return [python, *argv[1:]]
    script = Path(python).parent / argv[0]
    if script.is_file():
        return [str(script), *argv[1:]]
    if argv[0] == "vllm":
        return [python, "-m", "vllm.entrypoints.cli.main", *argv[1:]]
    return argv


class LocalServer:
    """One serving engine as this process's child (module docstring). Thread-safe."""

    def __init__(self, model: str, engine: str, *, python: str | None = None, port: int = 0,
                 start_timeout: float = START_TIMEOUT_S, grace: float = 20.0, log_path: Path | None = None):
        from tutor.settings import data_dir

        self.model, self.engine, self.explicit_python = model, engine, python
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout, self.grace = start_timeout, grace
        self.log_path = log_path or data_dir() / "serving" / f"{model.replace('/', '--')}-{engine}.log"
        # the id the server answers to: --served-model-name for SGLang and vLLM; transformers serve: its own
        self.served_model = model if engine in SERVER_ENGINES else None
        self.state = "new"  # new | starting | ready | failed | stopped
        self.error: EngineError | None = None
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- public ---------------------------------------------------------------------------------

    def start(self) -> LocalServer:
        """Check what can be checked at once (a fixed port in use), then start in the background."""
        if self.state != "new":
            return self
        self._check_engine()
        if port_in_use(self.port):
            raise EngineError("port_in_use", f"Port {self.port} on 127.0.0.1 is in use; choose another with --local-port.",
                              f"127.0.0.1 的端口 {self.port} 已被占用，请用 --local-port 另选一个。")
        self.state, self.started_at = "starting", time.monotonic()
        _LIVE.add(self)
        self._thread = threading.Thread(target=self._boot, name="r1v-local-server", daemon=True)
        self._thread.start()
        log.info("starting the model server: %s for %s on %s (log: %s)", self.engine, self.model, self.url,
                 self.log_path)
        return self

    def _check_engine(self) -> None:
        """Refuse at once an engine that is neither installed nor buildable here."""
        module = MODULES.get(self.engine)
        if module is None:
            raise EngineError("bad_local_engine", f"Unknown serving engine {self.engine!r}.",
                              f"未知的推理服务引擎 {self.engine!r}。")
        python, _ = engine_python(self.engine, self.explicit_python)
        explicit = self.explicit_python or os.environ.get("R1V_ENGINE_PYTHON")
        if not importable(python, module) and (explicit or _project_env(self.engine) is None):
            raise _missing(self.engine, self.model)

    def wait(self, timeout: float | None = None) -> str:
        """Block until ready (returns the URL) or failed (raises its EngineError)."""
        self._ready.wait(timeout)
        if self.state == "ready":
            return self.url
        raise self.error or self._starting_error()

    def _check_alive(self) -> None:
        """A server that was ready and then exited is failed, with the last line of its log."""
        proc = self.proc
        if self.state == "ready" and proc is not None and proc.poll() is not None:
            tail = self.tail()
            last = tail[-1] if tail else "(empty)"
            with self._lock:
                if self.state != "ready":
                    return
                self.state = "failed"
                self.error = EngineError(
                    "server_died", f"The model server ({self.engine}) stopped (status {proc.returncode}). Last line of "
                    f"its log: {last}. Restart the app; full log: {self.log_path}.",
                    f"模型服务器（{self.engine}）已停止（状态 {proc.returncode}）。日志最后一行：{last}。请重启应用；"
                    f"完整日志：{self.log_path}。", detail="\n".join(tail))
            log.error("%s\n%s", self.error.en, self.error.detail)
            _LIVE.discard(self)

    def raise_unless_ready(self) -> None:
        self._check_alive()
        if self.state != "ready":
            raise self.error or self._starting_error()

    def health(self) -> dict:
        """{"ok": False, "starting": True, "elapsed_s"} while starting; the error once failed;
        {"ok": True} when ready (the HTTP engine's own health says more)."""
        self._check_alive()
        if self.state == "ready":
            return {"ok": True, "url": self.url}
        if self.state == "starting" or self.state == "new":
            return {"ok": False, "loaded": False, "starting": True, "url": self.url,
                    "elapsed_s": int(time.monotonic() - self.started_at) if self.started_at else 0}
        err = self.error or self._starting_error()
        return {"ok": False, "loaded": True, "url": self.url, "problem": err.code, "error": err.en,
                "error_zh": err.zh, "detail": err.detail}

    def stop(self) -> None:
        """Stop the server and its workers (closing the watchdog's pipe); waits for them."""
        with self._lock:
            if self.state == "stopped":
                return
            self.state = "stopped"
        self._ready.set()
        _LIVE.discard(self)
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # end of file: the watchdog stops the group
            proc.wait(timeout=self.grace + 10)
        except (OSError, subprocess.TimeoutExpired):
            _kill_group(proc.pid)
        log.info("model server stopped (%s)", self.engine)

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last lines the server wrote to its log (the watchdog's own lines left out)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                mine = (ln.rstrip() for ln in f if not ln.startswith("[supervise]"))
                return [ln for ln in deque(mine, maxlen=lines)]
        except OSError:
            return []

    # -- start ----------------------------------------------------------------------------------

    def _starting_error(self) -> EngineError:
        secs = int(time.monotonic() - self.started_at) if self.started_at else 0
        return EngineError("server_starting",
                           f"The model server ({self.engine}) is still starting ({secs} s so far); try again shortly.",
                           f"模型服务器（{self.engine}）仍在启动（已 {secs} 秒），请稍后再试。")

    def _fail(self, err: EngineError) -> None:
        with self._lock:
            if self.state == "stopped":
                return
            self.state, self.error = "failed", err
        log.error("the model server did not start: %s%s", err.en, f"\n{err.detail}" if err.detail else "")
        self._reap()  # before waiters hear of it: nothing of the server is left when they do
        self._ready.set()

    def _boot(self) -> None:
        try:
            self._spawn()
            self._wait_health()
        except EngineError as e:
            self._fail(e)
        except Exception as e:  # noqa: BLE001 - reported as the server's failure, never a traceback on the page
            log.exception("starting the model server failed")
            self._fail(EngineError("server_start_failed", f"Starting the model server failed: {type(e).__name__}.",
                                   f"启动模型服务器失败：{type(e).__name__}。", detail=str(e)))

    def _spawn(self) -> None:
        from engine import serve

        python, where = engine_python(self.engine, self.explicit_python, build=True)
        module = MODULES.get(self.engine)
        if module is None or not importable(python, module):
            raise _missing(self.engine, self.model)
        opts = serve.ServeOptions(model=self.model, engine=self.engine, host="127.0.0.1", port=self.port)
        checkpoint = None
        if self.engine == "vllm" and get_preset(self.model).source == "tiny":
            # vLLM's CPU build: its engine env and the tiny model in the Skywork-R1V layout, made as
            # `python -m engine serve --engine vllm` makes them (engine.vllm_cpu)
            try:
                from engine import vllm_cpu
            except ImportError:
                raise _missing(self.engine, self.model) from None
            python, checkpoint = vllm_cpu.prepare(get_preset(self.model).seed, log=lambda m: log.info("%s", m))
            python = str(python)
        launches = serve.plan(opts, checkpoint=checkpoint)
        if len(launches) != 1:
            raise EngineError("local_server_replicas", "The local server mode runs one server process.",
                              "本地服务器模式只运行一个服务器进程。")
        serve._write_overlays(launches)  # the YaRN config overlay, as `python -m engine serve` writes it
        ln = launches[0]
        argv = _argv(ln.argv, python)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - the child writes it; closed below
        log.info("model server command (%s): %s", where, " ".join(argv))
        main_thread = threading.current_thread() is threading.main_thread()
        with self._lock:
            if self.state == "stopped":
                out.close()
                return
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.supervise", "--grace", str(self.grace), "--", *argv],
                stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ln.env},
                cwd=str(serve.ROOT), start_new_session=True,
                preexec_fn=_pdeathsig if main_thread else None)
        out.close()
        log.info("model server pid %d (watchdog), log %s", self.proc.pid, self.log_path)

    def _wait_health(self) -> None:
        from engine.serve import wait_ready

        deadline = self.started_at + self.start_timeout
        while self.state == "starting":
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineError(
                    "server_start_timeout",
                    f"The model server ({self.engine}) was not ready after {self.start_timeout:.0f} s; its log: "
                    f"{self.log_path}.",
                    f"模型服务器（{self.engine}）在 {self.start_timeout:.0f} 秒后仍未就绪；日志：{self.log_path}。",
                    detail="\n".join(self.tail()))
            try:
                wait_ready(self.url, timeout=min(PROGRESS_EVERY_S, left), proc=self.proc)
            except EngineError as e:
                if e.code == "server_exited":
                    code = self.proc.returncode if self.proc else "?"
                    tail = self.tail()
                    last = tail[-1] if tail else ""
                    raise EngineError(
                        "server_exited",
                        f"The model server ({self.engine}) exited while starting (status {code}). Last line of its "
                        f"log: {last or '(empty)'}. Full log: {self.log_path}.",
                        f"模型服务器（{self.engine}）在启动时退出（状态 {code}）。日志最后一行：{last or '（空）'}。"
                        f"完整日志：{self.log_path}。", detail="\n".join(tail)) from None
                if e.code != "server_start_timeout":
                    raise
                tail = self.tail(1)
                log.info("starting the model server (%s, %d s)… %s", self.engine,
                         time.monotonic() - self.started_at, tail[0][:160] if tail else "")
                continue
            with self._lock:
                if self.state != "starting":
                    return
                self.state = "ready"
            log.info("model server ready on %s after %.0f s", self.url, time.monotonic() - self.started_at)
            self._ready.set()
            return

    def _reap(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=self.grace + 10)
            except (OSError, subprocess.TimeoutExpired):
                _kill_group(proc.pid)


def _pdeathsig() -> None:
    set_pdeathsig()  # imported at the top: nothing is imported between fork and exec


def _kill_group(pgid: int) -> None:
    import signal

    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_LIVE: set[LocalServer] = set()


@atexit.register
def _stop_all() -> None:
    for srv in list(_LIVE):
        srv.stop()
