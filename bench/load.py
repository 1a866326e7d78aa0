"""Load test: simulated students on the web app (gradio_client, concurrent), with injected engine failures.

    python bench/load.py [--students 30] [--seconds 60] [--fail 0.1] [--model tiny-random] [--n 1]
                         [--json bench/results/load.json]

Starts the app in process on ``--model`` (default tiny-random, CPU) with its own SQLite database, then
runs ``--students`` clients at once for ``--seconds``: each submits a photo of an example problem
(``/ask``), then follow-ups (``/followup``) until time is up. A wrapper engine makes ``--fail`` of the
engine calls fail (half before the first token, half midway), so every failure path is exercised.

Reports completed requests, errors (injected vs other), p50/p95 latency, p50/p95 wait for the first
update (queue wait plus first token), and checks that the database holds exactly the attempts the
engine was asked for (none left "running") and that no "database is locked" reached a student.
Exit status 1 when a check fails. Not a CI test: it takes minutes on a laptop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.load")


class FlakyEngine:
    """Wraps an engine; a seeded fraction of ``stream`` calls raise an EngineError (before or mid-stream)."""

    def __init__(self, engine, fail: float, seed: int = 0):
        self.engine, self.fail, self.rng = engine, fail, random.Random(seed)
        self.name = getattr(engine, "name", "flaky")
        self.calls = self.injected = 0
        self._lock = threading.Lock()

    def stream(self, images, **kw):
        from tutor.errors import EngineError

        with self._lock:
            self.calls += 1
            fail = self.rng.random() < self.fail
            midway = self.rng.random() < 0.5
            self.injected += fail
        err = EngineError("injected", "Injected engine failure (load test).", "注入的引擎故障（压力测试）。")
        if fail and not midway:
            raise err
        for i, ev in enumerate(self.engine.stream(images, **kw)):
            if fail and i >= 2:
                raise err
            yield ev
        if fail:
            raise err

    def stop(self):
        self.engine.stop()


@dataclass
class Result:
    kind: str
    ok: bool
    latency_s: float
    first_s: float | None
    status: str


@dataclass
class Report:
    students: int
    seconds: float
    requests: int = 0
    completed: int = 0
    errors: int = 0
    injected_errors_seen: int = 0
    other_errors: list[str] = field(default_factory=list)
    db_locked_seen: int = 0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    first_update_p50_s: float = 0.0
    first_update_p95_s: float = 0.0
    engine_calls: int = 0
    engine_failures_injected: int = 0
    attempts_stored: int = 0
    attempts_by_status: dict = field(default_factory=dict)
    ok: bool = False


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))], 3)


def _timed(job) -> tuple[float | None, list]:
    t0, first, outs = time.perf_counter(), None, []
    for out in job:
        first = first if first is not None else time.perf_counter() - t0
        outs.append(out)
    return first, job.outputs() or outs


def student(url: str, idx: int, deadline: float, photos: list[str], results: list, lock: threading.Lock) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)  # one visitor: the cookie set on its first /config (webui.identity)
    rng = random.Random(idx)
    asked = False
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        if not asked or rng.random() < 0.3:
            p = handle_file(rng.choice(photos))
            job = client.submit("en", {"background": p, "layers": [], "composite": p}, [],
                                "Solve the problem in the photo.", "math", "auto", "en", 1, api_name="/ask")
            kind = "ask"
        else:
            job = client.submit("en", [], 1, "", None, "Why does that step work?", api_name="/followup")
            kind = "followup"
        try:
            first, outs = _timed(job)
            status = str(outs[-1][1]) if outs else ""
        except Exception as e:  # noqa: BLE001 - counted as an error the student saw
            first, status = None, f"client error: {type(e).__name__}: {e}"
        ok = status.startswith("Done")
        asked = asked or (kind == "ask" and ok)
        with lock:
            results.append(Result(kind, ok, time.perf_counter() - t0, first, status))


def run(args: argparse.Namespace) -> Report:
    os.environ.setdefault("R1V_DATA_DIR", tempfile.mkdtemp(prefix="r1v-load-"))
    from app import build_app, launch_kwargs
    from engine.core import Engine
    from tutor.examples import load_examples
    from tutor.store import Store
    from webui.config import AppConfig

    root = Path(tempfile.mkdtemp(prefix="r1v-load-db-"))
    store = Store(f"sqlite:///{root / 'r1v.db'}", image_dir=root / "images")
    engine = FlakyEngine(Engine(args.model), args.fail, seed=args.seed)
    cfg = AppConfig(max_new_tokens=args.tokens, n=args.n)
    demo = build_app(engine=engine, store=store, cfg=cfg)
    demo.queue(max_size=max(64, 2 * args.students), default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
    photos = [str(e.image_path) for e in load_examples()][:8]
    results: list[Result] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + args.seconds
    threads = [threading.Thread(target=student, args=(url, i, deadline, photos, results, lock), daemon=True)
               for i in range(args.students)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=args.seconds + 600)
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT status, count(*) FROM attempts GROUP BY status").all()
    demo.close()
    store.close()
    by_status = {s: c for s, c in rows}
    errors = [r for r in results if not r.ok]
    rep = Report(args.students, round(elapsed, 1), requests=len(results), completed=len(results) - len(errors),
                 errors=len(errors))
    rep.injected_errors_seen = sum("Injected engine failure" in r.status for r in errors)
    rep.other_errors = sorted({r.status[:160] for r in errors if "Injected engine failure" not in r.status})
    rep.db_locked_seen = sum("locked" in r.status.lower() for r in results)
    lat = [r.latency_s for r in results]
    first = [r.first_s for r in results if r.first_s is not None]
    rep.latency_p50_s, rep.latency_p95_s = _pct(lat, 0.5), _pct(lat, 0.95)
    rep.first_update_p50_s, rep.first_update_p95_s = _pct(first, 0.5), _pct(first, 0.95)
    rep.engine_calls, rep.engine_failures_injected = engine.calls, engine.injected
    rep.attempts_stored, rep.attempts_by_status = sum(by_status.values()), by_status
    rep.ok = (rep.attempts_stored == rep.engine_calls and "running" not in by_status and rep.db_locked_seen == 0
              and all(r.status.startswith(("Done", "⚠️")) for r in results))
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Load test of the web app with injected engine failures")
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--fail", type=float, default=0.1, help="fraction of engine calls that fail")
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--tokens", type=int, default=16, help="max new tokens per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the report here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rep = run(args)
    text = json.dumps(asdict(rep), ensure_ascii=False, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
