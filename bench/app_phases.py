"""Where one ``/ask`` through the running app spends its time: phases, their counts, and a timeline.

    python bench/app_phases.py                     # tiny-random, n=2, 32 tokens, 5 requests
    python bench/app_phases.py --tokens 128 --repeats 3 --client-io default

The companion of ``bench/app_overhead.py`` (same app, engine, photos and client settings, ``--photo`` and
``--client-io``; read its docstring): that one says how much the app costs, this one says where. The app's and Gradio's
functions are wrapped with timers (seconds summed over the request, and how many calls), and a few
moments of each request are stamped on one clock shared by the server and the client process: the
client's start, the queue join, the handler's start, the engine's start and end, the handler's last
update, the result at the client and the end of the client's fetches. Timers cost microseconds;
phases that run in other threads overlap (the engine runs while Gradio sends an update), so they do
not add up to the total. Medians over the requests on stdout; nothing is written.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPENT: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)
MARKS: dict[str, float] = {}
_LOCK = threading.Lock()

_CLIENT = """
import json, sys, time
import httpx
from gradio_client import Client, handle_file, client as gc
BROWSER_IO = json.loads(sys.argv[3])
default_io = sys.argv[2] == "default"
client = Client(sys.argv[1], verbose=False, **({} if default_io else BROWSER_IO))
http = httpx.Client(timeout=60)
marks, spent = {}, {"upload": 0.0, "download": 0.0}
def timed(name, f):
    def w(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            spent[name] += time.perf_counter() - t
    return w
gc.Endpoint._upload_file = timed("upload", gc.Endpoint._upload_file)
gc.Endpoint._download_file = timed("download", gc.Endpoint._download_file)
send = gc.Client.send_data
def joined(self, *a, **k):
    marks["client: joins the queue"] = time.perf_counter()
    return send(self, *a, **k)
gc.Client.send_data = joined
from bench.app_overhead import file_urls as urls
for line in sys.stdin:
    req = json.loads(line)
    marks.clear(); spent.update(upload=0.0, download=0.0)
    f = handle_file(req["image"])
    marks["client: starts"] = time.perf_counter()
    job = client.submit(req["visitor"], "en", {"background": f, "layers": [], "composite": f}, [], req["question"],
                        "math", "auto", "en", req["n"], api_name="/ask")
    out = job.result()
    marks["client: has the result"] = time.perf_counter()
    if not default_io:
        t = time.perf_counter()
        for u in urls(out, {}):
            http.get(u)
        spent["fetch once"] = time.perf_counter() - t
    marks["client: done"] = time.perf_counter()
    print(json.dumps({"marks": marks, "spent": spent, "updates": len(job.outputs()), "status": str(out[1])}),
          flush=True)
"""


def _add(name: str, secs: float) -> None:
    with _LOCK:
        SPENT[name] += secs
        CALLS[name] += 1


def _mark(name: str, first: bool = True) -> None:
    if not first or name not in MARKS:
        MARKS[name] = time.perf_counter()


def timed(owner: object, attr: str, name: str) -> None:
    """Wrap ``owner.attr`` (a function, method or async method) with a timer named ``name``."""
    f = getattr(owner, attr)
    if hasattr(f, "__wrapped_by_phases__"):
        return
    if _is_async(f):
        @functools.wraps(f)
        async def w(*a, **k):
            t = time.perf_counter()
            try:
                return await f(*a, **k)
            finally:
                _add(name, time.perf_counter() - t)
    else:
        @functools.wraps(f)
        def w(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                _add(name, time.perf_counter() - t)
    w.__wrapped_by_phases__ = True  # type: ignore[attr-defined]
    setattr(owner, attr, w)


def _is_async(f: object) -> bool:
    import inspect

    return inspect.iscoroutinefunction(f)


def instrument() -> None:
    """Timers on the app's phases, Gradio's processing and the stamps of the timeline."""
    from gradio import blocks, processing_utils

    import app as appmod
    from bench.app_overhead import PinnedEngine
    from tutor import session, store
    from webui import view

    timed(appmod.SafeImageEditor, "preprocess", "page: editor preprocess (decode the upload)")
    timed(appmod, "load_images", "intake: load_images")
    timed(session.Tutor, "new_problem", "tutor: new_problem (store problem + photo + message)")
    for m in ("add_problem", "get_problem", "add_attempt", "update_attempt", "add_candidates", "add_message"):
        timed(store.Store, m, f"store: {m}")
    if hasattr(store.Store, "history_items"):
        timed(store.Store, "history_items", "store: history_items")
    timed(store.Store, "list_problems", "store: list_problems")
    timed(session.Tutor, "_images", "tutor: photos for the engine")
    timed(appmod.TutorApp, "history", "page: history list")
    for m in ("stream_messages", "result_messages", "candidate_rows", "explain_choice", "answer_box"):
        timed(view, m, f"view: {m}")
    timed(blocks.Blocks, "preprocess_data", "gradio: preprocess inputs")
    timed(blocks.Blocks, "postprocess_data", "gradio: postprocess outputs (all updates)")
    timed(blocks.Blocks, "handle_streaming_diffs", "gradio: diff of each update")
    timed(processing_utils, "async_move_files_to_cache", "gradio: files to cache (hashing)")

    process_api = blocks.Blocks.process_api

    async def api(self, *a, **k):
        _mark("server: handler starts")
        try:
            return await process_api(self, *a, **k)
        finally:
            _mark("server: Gradio done with the last update", first=False)
    blocks.Blocks.process_api = api

    stream = PinnedEngine.stream

    def engine_stream(self, *a, **k):
        _mark("server: engine starts")
        try:
            yield from stream(self, *a, **k)
        finally:
            _mark("server: engine ends", first=False)
    PinnedEngine.stream = engine_stream

    turn = appmod.TutorApp._turn

    def timed_turn(self, *a, **k):
        for out in turn(self, *a, **k):
            t = time.perf_counter()
            _mark("server: first streamed update")
            _mark("server: last update yielded", first=False)
            yield out
            _add("page: one update, yield to resume (Gradio postprocess + send)", time.perf_counter() - t)
    appmod.TutorApp._turn = timed_turn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--photo", default="fresh", choices=["fresh", "same"])
    p.add_argument("--client-io", default="browser", choices=["browser", "default"])
    p.add_argument("--image", default=str(ROOT / "assets/examples/math-en-cubic-graph.jpg"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from app import build_app, launch_kwargs
    from bench.app_overhead import BROWSER_IO, QUESTION, Photos, PinnedEngine, child_env
    from engine.core import Engine, Sampling
    from tutor.store import Store
    from webui.config import AppConfig

    instrument()
    engine = Engine(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="r1v-phases-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'r1v.db'}", image_dir=Path(tmp) / "images")
        photos = Photos(args.image, args.photo, tmp)
        sampling = Sampling(max_new_tokens=args.tokens, min_new_tokens=args.tokens, seed=0)
        pinned = PinnedEngine(engine, sampling)
        cfg = AppConfig(max_new_tokens=args.tokens)
        demo = build_app(engine=pinned, store=store, cfg=cfg)
        demo.queue(max_size=8, default_concurrency_limit=1)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
        proc = subprocess.Popen([sys.executable, "-c", _CLIENT, url, args.client_io,
                                 json.dumps(BROWSER_IO)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=child_env())
        try:
            for r in range(args.repeats + 1):  # the first one warms up
                SPENT.clear()
                CALLS.clear()
                MARKS.clear()
                proc.stdin.write(json.dumps({"image": photos.next(), "n": args.n, "visitor": f"phases-{r}",
                                             "question": QUESTION}) + "\n")
                proc.stdin.flush()
                reply = json.loads(next(line for line in iter(proc.stdout.readline, "") if line.startswith("{")))
                if r == 0:
                    continue
                marks = sorted([*reply["marks"].items(), *MARKS.items()], key=lambda kv: kv[1])
                spent = {**dict(SPENT), **{f"client: {k}": v for k, v in reply["spent"].items()}}
                rows.append({"marks": marks, "spent": spent, "calls": dict(CALLS), "updates": reply["updates"],
                             "engine_own_s": pinned.last_timings.get("total_s", float("nan"))})
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
            demo.close()
            store.close()

    print(f"\n{args.model}, n={args.n}, {args.tokens} tokens, photo {args.photo}, client io {args.client_io}: medians of "
          f"{len(rows)} requests ({statistics.median(r['updates'] for r in rows)} streamed outputs at the client)\n")
    print("| phase | seconds | calls |\n| --- | ---: | ---: |")
    for name in sorted({k for r in rows for k in r["spent"]}):
        vals = [r["spent"].get(name, 0.0) for r in rows]
        print(f"| {name} | {statistics.median(vals):.4f} | {rows[-1]['calls'].get(name, '')} |")
    print(f"| engine's own total (its timings) | {statistics.median(r['engine_own_s'] for r in rows):.4f} | |")
    print("\ntimeline (ms from the client's start; median per moment, then the step from the moment before):\n")
    print("| moment | at ms | step ms |\n| --- | ---: | ---: |")
    names = [n for n, _ in rows[-1]["marks"]]
    at = {n: statistics.median((dict(r["marks"])[n] - r["marks"][0][1]) * 1000 for r in rows
                               if n in dict(r["marks"])) for n in names}
    prev = 0.0
    for n in sorted(names, key=lambda n: at[n]):
        print(f"| {n} | {at[n]:.0f} | {at[n] - prev:.0f} |")
        prev = at[n]
    return 0


if __name__ == "__main__":
    sys.exit(main())
