"""Peak memory of the running app under image bombs sent to each of its image inputs (issue 22, High 3).

    python -m bench.upload_bomb [--side 12000] [--fit 6000] [--at-once 4] [--out bench/results/upload_bomb.json]
                                [--app-root DIR]     # another checkout's app.py (e.g. main's, for "before")

Starts ``python app.py --model tiny-random`` as a subprocess on a fresh data directory, asks one small
question so the model is loaded (the memory a live app has), then for each image input sends
``--at-once`` requests at the same time, each with a ``side`` x ``side`` PNG (144 megapixels for
12000: small on disk, ~430 MB once decoded as RGB, ~580 MB as RGBA):

- ``editor_api``: the photo editor through ``/ask`` as an API caller sends it (uploaded files);
- ``editor_blobs``: the photo editor as the browser sends it (canvas blobs to the editor's
  ``accept_blobs`` server function, then ``/ask`` with the blob id);
- ``work``: the "photo of my work" through ``/check``;
- ``gallery``: the photos gallery through ``/ask``;
- ``photo_check``: the page's hidden upload that names a refused photo (``webui.upload_check``).

and the same with a ``fit`` x ``fit`` PNG (36 megapixels for 6000: within the intake's 40-megapixel
limit, so the worst photo that is decoded on purpose). Before and after each round it reads the
app's ``VmRSS`` and peak ``VmHWM`` from ``/proc/PID/status`` (the peak is reset between rounds
through ``/proc/PID/clear_refs``) and prints JSON: MB before, peak, held after, per input. Each
``fit`` round runs on a fresh app (started, model loaded), so memory one round freed does not hide
the next round's peak.

``AppProcess`` and ``GradioHTTP`` (the app as a subprocess; uploads and queued calls over plain HTTP,
as any client can make them) are shared with ``tests/security``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """``python app.py`` on tiny-random in a subprocess, on its own data and Gradio temp directory."""

    def __init__(self, root: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 app_root: Path = ROOT):
        self.root = Path(root)
        self.app_root = Path(app_root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = self.root / "data"
        self.gradio_tmp = self.root / "gradio"
        self.env = {**os.environ, "R1V_DATA_DIR": str(self.data_dir), "GRADIO_TEMP_DIR": str(self.gradio_tmp),
                    "GRADIO_ANALYTICS_ENABLED": "False", "R1V_LOG_LEVEL": "INFO",
                    "R1V_RATE_PER_ADDRESS": "1000", **(env or {})}  # all clients here share one address
        self.args = args
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> AppProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = open(self.root / "app.log", "wb")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen([sys.executable, str(self.app_root / "app.py"), "--model", "tiny-random",
                                      "--port", str(self.port), *self.args], cwd=self.app_root, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited ({self.proc.returncode}): {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/config", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("app did not start in 180 s: " + self.log_text()[-2000:])

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def log_text(self) -> str:
        return (self.root / "app.log").read_text(encoding="utf-8", errors="replace")

    def mem_mb(self) -> dict[str, float]:
        """The app's resident memory now (``rss``) and its peak since the last reset (``peak``), MB."""
        assert self.proc is not None
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out["rss" if line.startswith("VmRSS") else "peak"] = round(int(line.split()[1]) / 1024, 1)
        return out

    def reset_peak(self) -> None:
        assert self.proc is not None
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


class GradioHTTP:
    """Plain-HTTP calls into a Gradio app: upload files, call an event by ``api_name`` or by its index
    (also the page's private events, which a client can queue like the page does). One instance is one
    visitor: it keeps the visitor cookie the app sets on ``/config`` (``webui.identity``); on a page
    whose events still take a visitor id as their first input, ``call`` puts this visitor's there."""

    def __init__(self, url: str, timeout: float = 300):
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)
        self.config = self.http.get(self.url + "/config").json()
        self.session = uuid.uuid4().hex
        self.visitor = f"visitor-{uuid.uuid4().hex}"
        self._types = {c["id"]: c["type"] for c in self.config["components"]}

    def comp_id(self, elem_id: str) -> int:
        return next(c["id"] for c in self.config["components"] if c["props"].get("elem_id") == elem_id)

    def fn_index(self, name: str) -> int:
        """The index of the event with ``api_name`` ``name`` (private events are named by their function)."""
        return next(i for i, d in enumerate(self.config["dependencies"]) if d.get("api_name") == name)

    def upload(self, *paths: Path | str) -> list[str]:
        files = [("files", (Path(p).name, Path(p).read_bytes(), "application/octet-stream")) for p in paths]
        r = self.http.post(self.url + "/gradio_api/upload", files=files)
        r.raise_for_status()
        return r.json()

    def file_data(self, path: str) -> dict:
        return {"path": path, "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}

    def send_blob(self, elem_id: str, blob_id: str, kind: str, raw: bytes) -> httpx.Response:
        """What the browser's photo editor does with each canvas: post it to ``accept_blobs``."""
        data = {"type": kind, "index": "null", "id": blob_id, "component_id": str(self.comp_id(elem_id)),
                "session_hash": self.session, "fn_name": "accept_blobs"}
        return self.http.post(self.url + "/gradio_api/component_server", data=data,
                              files=[("file", ("blob", raw, "image/png"))])

    def call(self, name_or_index: str | int, data: list, session: str | None = None) -> dict:
        """Queue one event and wait for its end; returns the last message (``output.data`` on success)."""
        fn = name_or_index if isinstance(name_or_index, int) else self.fn_index(name_or_index)
        session = session or self.session
        dep = self.config["dependencies"][fn]
        inputs = dep.get("inputs") or []
        if len(data) == len(inputs) - 1 and self._types.get(inputs[0]) == "browserstate":
            data = [self.visitor, *data]
        body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None,
                "trigger_id": (dep.get("targets") or [[None]])[0][0]}
        r = self.http.post(self.url + "/gradio_api/queue/join", json=body)
        r.raise_for_status()
        last: dict = {}
        with self.http.stream("GET", self.url + "/gradio_api/queue/data", params={"session_hash": session}) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") in ("process_completed", "unexpected_error"):
                    return msg
                last = msg
        return last


def make_png(side: int, directory: Path) -> Path:
    """A ``side`` x ``side`` RGB PNG, white with diagonal lines (compresses well: a bomb on disk)."""
    from bench.upload_check import make_png as _make

    return _make(side, directory)


def ask_data(editor: Any = None, gallery: list | None = None, question: str = "2+2=?") -> list:
    """The inputs of ``/ask``: page language, editor, gallery, question, subject, type, reply language, n."""
    return ["en", editor, gallery or [], question, "math", "auto", "en", 1]


def mode_data(work: Any = None, answer: str = "4", message: str = "") -> list:
    """The inputs of ``/hint`` ... ``/check``: language, problem, chat, n, answer, work, message."""
    return ["en", None, [], 1, answer, work, message]


KINDS = ("editor_api", "editor_blobs", "work", "gallery", "photo_check")


def warm(app: AppProcess, root: Path) -> None:
    """One small question, so the model is loaded (the memory of a live app)."""
    c = GradioHTTP(app.url)
    fd = c.file_data(c.upload(make_png(64, root))[0])
    c.call("ask", ask_data({"background": fd, "layers": [], "composite": fd}))


def attack(app: AppProcess, png: Path, at_once: int, kinds: tuple[str, ...] = KINDS) -> dict[str, dict]:
    """Send ``png`` to each image input of ``kinds``, ``at_once`` requests at a time; memory per input."""
    raw = png.read_bytes()
    client = GradioHTTP(app.url)
    check_fn = client.fn_index("check_photo_file")

    def one(kind: str, k: int) -> Any:
        c = GradioHTTP(app.url)  # a visitor of its own
        if kind == "editor_blobs":
            blob = uuid.uuid4().hex
            for part in ("background", "composite"):
                c.send_blob("r1v-photo", blob, part, raw)
            return c.call("ask", ask_data({"id": blob, "background": None, "layers": [], "composite": None}))
        path = c.upload(png)[0]
        fd = c.file_data(path)
        if kind == "editor_api":
            return c.call("ask", ask_data({"background": fd, "layers": [], "composite": fd}))
        if kind == "gallery":
            return c.call("ask", ask_data(None, [{"image": fd, "caption": None}]))
        if kind == "work":
            return c.call("check", mode_data(fd))
        return c.call(check_fn, [fd, "en"])

    out = {}
    for kind in kinds:
        before = app.mem_mb()
        app.reset_peak()
        results: list[Any] = [None] * at_once
        t0 = time.perf_counter()

        def run(k: int, kind: str = kind, results: list = results) -> None:
            try:
                results[k] = one(kind, k)
            except Exception as e:  # noqa: BLE001 - recorded: the memory is the point
                results[k] = {"error": repr(e)}

        threads = [threading.Thread(target=run, args=(k,)) for k in range(at_once)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        secs = time.perf_counter() - t0
        time.sleep(1.0)
        after = app.mem_mb()
        out[kind] = {"rss_before_mb": before["rss"], "peak_mb": after["peak"], "rss_after_mb": after["rss"],
                     "peak_rise_mb": round(after["peak"] - before["rss"], 1), "seconds": round(secs, 2),
                     "result": _outcome(results[0])}
    return out


def _outcome(msg: Any) -> str:
    if not isinstance(msg, dict):
        return repr(msg)[:120]
    if "error" in msg and msg.get("msg") is None:
        return str(msg["error"])[:160]
    data = (msg.get("output") or {}).get("data") or []
    texts = [d for d in data if isinstance(d, str) and d.strip()]
    if texts:
        return texts[0][:160]
    return json.dumps(msg.get("output") or msg)[:160]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=12000, help="side of the bomb PNG (beyond the 40 MP limit)")
    ap.add_argument("--fit", type=int, default=6000, help="side of the largest accepted PNG (0: skip)")
    ap.add_argument("--at-once", type=int, default=4)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose app.py is started")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="r1v-bomb-") as tmp:
        root = Path(tmp)
        bomb = make_png(args.side, root)
        with AppProcess(root / "app", app_root=args.app_root) as app:
            start = app.mem_mb()
            warm(app, root)
            report: dict[str, Any] = {"app_root": str(args.app_root), "at_once": args.at_once,
                                      "bomb": {"side": args.side, "bytes": bomb.stat().st_size},
                                      "app_started_mb": start, "app_warm_mb": app.mem_mb(),
                                      "bomb_rounds": attack(app, bomb, args.at_once)}
            report["app_end_mb"] = app.mem_mb()
        if args.fit:
            fit = make_png(args.fit, root)
            report["fit"] = {"side": args.fit, "bytes": fit.stat().st_size}
            report["fit_rounds"] = {}
            for kind in KINDS:  # a fresh app each: no memory freed by the round before
                with AppProcess(root / f"app-{kind}", app_root=args.app_root) as app:
                    warm(app, root)
                    report["fit_rounds"].update(attack(app, fit, args.at_once, (kind,)))
        report["worst_bomb_peak_rise_mb"] = max(r["peak_rise_mb"] for r in report["bomb_rounds"].values())
        if args.fit:
            report["worst_fit_peak_rise_mb"] = max(r["peak_rise_mb"] for r in report["fit_rounds"].values())
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
