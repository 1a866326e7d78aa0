"""The model server's health, checked in the background: a page load never waits on the server.

    from webui.health import HealthMonitor
    monitor = HealthMonitor(lazy_engine)      # a webui.config.LazyEngine (or anything with .health())
    monitor.health()                          # the last result, at once: {"ok": ..., "loaded": ..., ...}

For an in-process engine ``health()`` is asked directly (it never does I/O). For an HTTP engine a
daemon thread runs ``engine.health()`` (which lists the server's models, and probes it once), every
``every_ok`` seconds while healthy and every ``every_bad`` seconds while not; ``health()`` only reads
what that thread found. A check that has not come back after ``stale_after`` seconds is reported as
"not answering" (in both languages), so a server whose ``/v1/models`` hangs shows a clear banner
within seconds while the thread keeps waiting on it. Before the first check ends the result is
``{"ok": False, "checking": True}`` (the banner says "checking"). A server the app starts itself
(``engine.local``) is reported as "starting" (or why it did not start) until it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

EVERY_OK_S = 30.0
EVERY_BAD_S = 5.0
STALE_AFTER_S = 8.0


class HealthMonitor:
    """See the module docstring. Thread-safe; the checking thread starts with ``start()`` or the first
    ``health()``."""

    def __init__(self, engine: Any, *, every_ok: float = EVERY_OK_S, every_bad: float = EVERY_BAD_S,
                 stale_after: float = STALE_AFTER_S):
        self.engine = engine
        self.every_ok, self.every_bad, self.stale_after = every_ok, every_bad, stale_after
        self._last: dict | None = None
        self._started_at: float | None = None  # when the check in flight began (None: none in flight)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def background(self) -> bool:
        return getattr(self.engine, "kind", "local") == "http"

    def health(self) -> dict:
        """The latest known health; never blocks on the model server."""
        if not self.background:
            return self.engine.health()
        server = getattr(self.engine, "server", None)  # a local server (engine.local) still starting, or
        if server is not None and not server.health()["ok"]:  # failed or stopped: known here without any I/O
            return self.engine.health()
        self.start()
        with self._lock:
            last, started = self._last, self._started_at
        waited = time.monotonic() - started if started is not None else 0.0
        if started is not None and waited > self.stale_after:
            secs = int(waited)
            return {"ok": False, "loaded": True, "problem": "server_not_answering",
                    "error": f"the model server has not answered for {secs} s",
                    "error_zh": f"模型服务器已 {secs} 秒没有响应"}
        if last is None:
            return {"ok": False, "loaded": True, "checking": True}
        return dict(last)

    def refresh(self) -> None:
        """Ask the thread for a new check now (e.g. after a run failed)."""
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def start(self) -> None:
        """Start the checking thread (once; ``health()`` also starts it). Nothing for an in-process engine."""
        if not self.background:
            return
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="r1v-health", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            with self._lock:
                self._started_at = time.monotonic()
            try:
                info = dict(self.engine.health())
            except Exception as e:  # noqa: BLE001 - LazyEngine.health never raises; any other engine may
                log.warning("health check failed: %s", e)
                info = {"ok": False, "loaded": True, "error": type(e).__name__, "error_zh": type(e).__name__}
            with self._lock:
                self._last, self._started_at = info, None
            self._wake.wait(self.every_ok if info.get("ok") else self.every_bad)
            self._wake.clear()
