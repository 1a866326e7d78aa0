"""The watchdog between the app and a local model server it started (``engine.local``).

    python -m engine.supervise [--grace S] -- PROGRAM ARG...

Started by ``engine.local.LocalServer`` as the app's child, in a process group of its own, with its
stdin a pipe whose only writer is the app. It starts ``PROGRAM ARG...`` (the serving engine, from
``engine.serve``'s launch plan) in the same group and then waits. The server is stopped, with its
whole process group (vLLM and SGLang start worker processes of their own), when:

- stdin reaches end of file: the app closed the pipe, or the app is gone, however it ended (a
  SIGKILL of the app included: the kernel closes its end of the pipe);
- this process gets SIGTERM, SIGINT or SIGHUP (and, on Linux, SIGTERM when the app's thread that
  started it ends: ``PR_SET_PDEATHSIG``, set by the app when it starts us from its main thread).

Stopping is SIGTERM to the group, then SIGKILL after ``--grace`` seconds. When the server exits by
itself this process exits with its status, so the app sees the death as its child's. Only the
standard library: it runs in the app's interpreter, never imports the engine or the app.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time


def _find_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no prctl: the pipe still stops the server
        return None


# looked up once, at import: between fork and exec (a preexec_fn) only the call itself runs
_PRCTL = _find_prctl()
PR_SET_PDEATHSIG = 1


def set_pdeathsig(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent (thread) dies; nothing elsewhere."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def _stop_group(server: subprocess.Popen, grace: float) -> int:
    """SIGTERM the process group (the server and its workers), SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the group signal reaches this process too
    pgid = os.getpgid(0)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    # workers may outlive the server's main process: the group goes, this process with it
    os.killpg(pgid, signal.SIGKILL)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.supervise")
    p.add_argument("--grace", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        p.error("no server command after --")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    # the server: same process group as this one, stdin not the app's pipe, killed if we are
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=lambda: set_pdeathsig(signal.SIGKILL))
    print(f"[supervise] server pid {server.pid}, process group {os.getpgid(0)}", flush=True)

    def watch_pipe() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()  # end of file: the app is gone or wants the server stopped

    threading.Thread(target=watch_pipe, daemon=True).start()
    while not stop.is_set():
        code = server.poll()
        if code is not None:
            print(f"[supervise] server exited with status {code}", flush=True)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            os.killpg(os.getpgid(0), signal.SIGTERM)  # any worker it left behind
            return code if code >= 0 else 128 - code
        stop.wait(0.2)
    print("[supervise] stopping the server", flush=True)
    return _stop_group(server, a.grace)


if __name__ == "__main__":
    sys.exit(main())
