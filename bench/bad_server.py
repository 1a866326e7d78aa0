"""Time to a clear message when the model server misbehaves or the database is locked.

    python bench/bad_server.py [--cap 60] [--json bench/results/bad_server.json]

Starts the stub server of ``tests/stub_openai.py`` and ``python app.py --server STUB`` (a subprocess,
``R1V_FIRST_TOKEN_S=5``, ``R1V_REPLY_S=15``, ``R1V_DB_BUSY_S=2``), then measures through HTTP only:

    page_load_models_hang_s   the page's load event while GET /v1/models never answers
    ask_chat_hangs_s          /ask until its message, when the chat request never answers
    reply_never_ends_s        /ask until its message, when the reply streams forever
    delete_stops_model_s      the confirming Delete until the server sees its stream closed
    db_locked_writers_s       the slowest of 3 writers waiting on a database another process locked
    huge_reply_stored_chars   the longest text stored after a 20 MB reply (and the page's largest update)

A measure that has not finished after ``--cap`` seconds is printed as ">cap" (the code before issue
22's fixes: page loads waited up to 600 s, a hanging chat about 40 minutes). Not a CI test: about
two minutes. Before/after figures: bench/results/bad_server_before.json (main at cf2daef) and
bench/results/bad_server_after.json.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from tests.security.reliab_app import app_process, page_event  # noqa: E402
from tests.stub_openai import StubServer  # noqa: E402

ENV = {"R1V_FIRST_TOKEN_S": "5", "R1V_REPLY_S": "15", "R1V_DB_BUSY_S": "2", "R1V_RATE_PER_MINUTE": "1000",
       "R1V_LOG_LEVEL": "WARNING"}


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False)


def _ask(url: str, cap: float):
    """(seconds until /ask of a new visitor finished, or None past cap; the job)."""
    job = _client(url).submit("en", None, [], "Solve 2x + 3 = 7", "math", "auto", "en", 1, api_name="/ask")
    t0 = time.monotonic()
    try:
        job.result(timeout=cap)
    except Exception:  # noqa: BLE001 - past the cap (or broken): not a measure
        return None, job
    return time.monotonic() - t0, job


def _wait(cond, cap: float) -> float | None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > cap:
            return None
        time.sleep(0.05)
    return time.monotonic() - t0


def measure(cap: float) -> dict:
    out: dict = {}
    stub = StubServer()
    try:
        with tempfile.TemporaryDirectory() as tmp, app_process(Path(tmp), "--server", stub.url, env=ENV) as app:
            stub.hang_models, stub.mode = True, "hang"
            try:
                out["page_load_models_hang_s"], _ = page_event(app.url, "load", ["", "en"], timeout=cap)
            except TimeoutError:
                out["page_load_models_hang_s"] = None
            out["ask_chat_hangs_s"], _ = _ask(app.url, cap)
            stub.hang_models, stub.mode, stub.delay = False, "trickle", 0.1
            out["reply_never_ends_s"], _ = _ask(app.url, cap)

            stub.disconnects = 0
            c = _client(app.url)
            job = c.submit("en", None, [], "Solve x = 1", "math", "auto", "en", 1, api_name="/ask")
            _wait(lambda: len(job.outputs()) >= 2, cap)
            c.predict("en", api_name="/delete")
            t0 = time.monotonic()
            c.predict("en", api_name="/delete")
            gone = _wait(lambda: stub.disconnects >= 1, cap)
            out["delete_stops_model_s"] = None if gone is None else time.monotonic() - t0

            stub.mode = "ok"
            db = sqlite3.connect(Path(tmp) / "data" / "r1v.db", timeout=1, isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            times: list[float | None] = [None] * 3

            def writer(i: int) -> None:
                times[i], _ = _ask(app.url, cap)

            threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            db.rollback()
            db.close()
            out["db_locked_writers_s"] = None if None in times else max(times)

            stub.mode, stub.huge_chars = "huge", 20_000_000
            secs, job = _ask(app.url, cap)
            out["huge_reply_s"] = secs
            con = sqlite3.connect(Path(tmp) / "data" / "r1v.db")
            out["huge_reply_stored_chars"] = con.execute(
                "SELECT max(length(text) + length(thinking)) FROM candidates").fetchone()[0]
            con.close()
            out["huge_reply_page_chars"] = max((len(json.dumps(o, ensure_ascii=False)) for o in job.outputs()),
                                               default=0)
    finally:
        stub.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cap", type=float, default=60.0, help="give a measure up after this many seconds")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)
    figures = measure(a.cap)
    for k, v in figures.items():
        shown = f">{a.cap:g}" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
        print(f"{k:28s} {shown}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"cap_s": a.cap, **figures}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
