"""What the reliability attack tests share: ``python app.py`` as a subprocess, and raw page events.

    with app_process(tmp_path, "--server", stub.url, env={"R1V_FIRST_TOKEN_S": "3"}) as app:
        app.url                      # http://127.0.0.1:<port>/
        page_event(app.url, "load", [visitor_id, lang], timeout=10)   # the page's own event, over HTTP

``page_event`` sends a page event the way the browser does (``/gradio_api/queue/join`` with the
event's ``fn_index`` from ``/config``, then the ``queue/data`` event stream), for events that have no
public API name (the page load, the language switch). It returns (seconds, output data).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppProcess:
    url: str
    proc: subprocess.Popen
    data_dir: Path

    def log(self) -> str:
        path = self.data_dir / "app.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@contextmanager
def app_process(root: Path, *args: str, env: dict | None = None, start_timeout: float = 180) -> Iterator[AppProcess]:
    """``python app.py ARGS --port P`` with its data under ``root``; waits until the page answers."""
    port = free_port()
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "R1V_DATA_DIR": str(data), "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    full_env.pop("R1V_DB_URL", None)
    with open(data / "app.log", "wb") as out:
        # its own process group: the app's worker processes (tutor.mathcheck) go with it
        proc = subprocess.Popen([sys.executable, "app.py", *args, "--port", str(port)], cwd=ROOT, env=full_env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    app = AppProcess(url, proc, data)
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode}:\n{app.log()[-3000:]}")
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > start_timeout:
                raise RuntimeError(f"app.py did not come up in {start_timeout} s:\n{app.log()[-3000:]}")
            time.sleep(0.5)
        yield app
    finally:
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        time.sleep(0.5)
        kill_group(proc, signal.SIGKILL)  # workers that outlived the app


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the app and every process it started (its process group)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def fn_index(url: str, trigger: str, http: httpx.Client | None = None) -> int:
    """The id of the first page event with this trigger ("load", "change", ...) that runs on the server,
    or (``trigger`` starting with "/") of the event with that API name ("/reopen")."""
    cfg = (http or httpx).get(url + "config", timeout=10).json()
    for dep in cfg["dependencies"]:
        if trigger.startswith("/") and dep.get("api_name") == trigger[1:]:
            return dep["id"]
        if dep.get("backend_fn") and any(t[1] == trigger for t in dep.get("targets", [])):
            return dep["id"]
    raise LookupError(trigger)


def page_event(url: str, trigger: str, data: list, *, timeout: float = 30, session: str | None = None,
               event_data: dict | None = None, cookies: dict | None = None) -> tuple[float, list | None]:
    """Send the page's ``trigger`` event with ``data`` as the visitor of ``cookies`` (default: a new
    visitor, whose cookie ``/config`` sets), in the browser session ``session`` (whose state earlier
    events set); (seconds until it completed, its output data). Raises ``TimeoutError`` when it has not
    completed within ``timeout``."""
    with httpx.Client(cookies=cookies) as http:
        return _page_event(http, url, trigger, data, timeout, session or uuid.uuid4().hex[:11], event_data)


def _page_event(http: httpx.Client, url: str, trigger: str, data: list, timeout: float, session: str,
                event_data: dict | None) -> tuple[float, list | None]:
    index = fn_index(url, trigger, http)
    t0 = time.monotonic()
    r = http.post(url + "gradio_api/queue/join", timeout=10,
                  json={"data": data, "fn_index": index, "session_hash": session,
                        "event_data": event_data, "trigger_id": None})
    r.raise_for_status()
    try:
        with http.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session},
                         timeout=httpx.Timeout(timeout)) as s:
            for line in s.iter_lines():
                if time.monotonic() - t0 > timeout:
                    break
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    if not msg.get("success", True):
                        raise RuntimeError(f"the {trigger} event failed: {str(msg.get('output'))[:500]}")
                    return time.monotonic() - t0, (msg.get("output") or {}).get("data")
    except httpx.ReadTimeout:
        pass
    raise TimeoutError(f"the {trigger} event did not complete in {timeout} s")
