"""The web app's own overhead: one solve through the running app against the same solve on the engine.

    python bench/app_overhead.py                              # tiny-random, n=2, 32 and 128 tokens, 7 repeats
    python bench/app_overhead.py --tokens 32,128,512 --repeats 5
    python bench/app_overhead.py --tokens 64 --repeats 11 --n 4 --model mini

The app (``app.build_app``) is launched in this process on the model, with its own SQLite store in a
temporary directory, and driven through ``gradio_client`` as a browser would (by default from a child
process, since a browser is a separate program; ``--client inline`` keeps it in this process): the photo is
uploaded, ``/ask`` streams the thinking and returns the finished turn (the problem, attempt and
candidates are stored on the way). The same solve is then run directly: intake of the same photo,
the same prompt (``tutor.prompts.build_messages``), ``Engine.solve``. Both sides decode exactly the
same tokens: the engine handed to the app pins the sampling (seed, and ``min_new_tokens =
max_new_tokens``, so every candidate runs to the limit), as does the direct call. The two paths
alternate, after one warm-up each, and the numbers reported are medians: the ratio app / engine per
repeat (target <= 1.15), the absolute overhead in seconds, the time the engine spent inside the
app's solve (so the overhead is not mistaken for slower decoding), and the app's own seconds (the
app's time less the engine's time inside that same request: on this shared 2-core machine the same
solve varies by +-40% from run to run, which the ratio and the overhead carry and this does not). The ratio depends on how long the
solve is: the app's cost is roughly fixed per request, so a longer solve gives a lower ratio.

Two choices make the app's side what a student's browser costs, not less and not more:

- ``--photo fresh`` (default): every repeat is a photo the app has not seen (the example with a
  patch of pixels changed, saved as JPEG outside the timing), so the app stores a new PNG each time,
  as it does for a new student photo; both sides read the same file. ``--photo same`` re-sends one
  photo, which the content-addressed store then does not write again (the setting of the first runs).
- ``--client-io browser`` (default): the client talks to the app as a page does. It does not
  download the files of every streamed update but fetches each distinct file of the finished turn
  once (the chat's photo, the history picture) on a kept-alive connection, inside the timing; and it
  does not load the CA bundle for each of its HTTP calls (``ssl_verify=False``: the app is on
  ``http://127.0.0.1``, there is no certificate to check). ``--client-io default`` is gradio_client's
  defaults, the setting of the first runs: it downloads every file of every streamed update again
  (the photo ~4 times a second while the model thinks), and builds an ``httpx`` client with the CA
  bundle for each upload and for the queue join (~45 ms each on this machine).

Results: a table on stdout (last) and ``bench/results/app_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.app_overhead")
TARGET = 1.15
QUESTION = "Which of the statements about f(x) = x^3 - 3x are correct?"


class PinnedEngine:
    """The engine as the app sees it, with the sampling pinned (same seed and length as the direct
    solve) and the time spent inside ``stream`` recorded."""

    def __init__(self, engine: Any, sampling: Any):
        self.engine, self.sampling = engine, sampling
        self.name = engine.name
        self.last_s = 0.0
        self.last_timings: dict = {}  # the engine's own timings (preprocess, prefill, decode) of the last solve

    def stream(self, images, question: str = "", **kw):
        kw["sampling"] = self.sampling
        t = time.perf_counter()
        try:
            for ev in self.engine.stream(images, question, **kw):
                if hasattr(ev, "solution"):
                    self.last_timings = dict(ev.solution.timings)
                yield ev
        finally:
            self.last_s = time.perf_counter() - t

    def stop(self) -> None:
        self.engine.stop()


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _editor(path: str) -> dict:
    from gradio_client import handle_file

    return {"background": handle_file(path), "layers": [], "composite": handle_file(path)}


def direct_solve(engine: Any, image: str, n: int, sampling: Any) -> tuple[float, dict]:
    """Seconds for intake + prompt + ``Engine.solve``, as the app does them (no store, no page), and the
    engine's own timings."""
    from tutor.intake import load_image
    from tutor.prompts import build_messages

    t = time.perf_counter()
    img = load_image(image).image
    messages = build_messages("solve", question=QUESTION, subject="math", problem_type="auto", lang="en",
                              n_images=1)
    sol = engine.solve([img], messages=messages, n=n, sampling=sampling)
    secs = time.perf_counter() - t
    assert len(sol.candidates) == n
    return secs, dict(sol.timings)


BROWSER_IO = {"download_files": False, "ssl_verify": False}  # see the module docstring

_CLIENT_LOOP = """
import json, sys, time
import httpx
from gradio_client import Client, handle_file
BROWSER_IO = json.loads(sys.argv[3])
default_io = sys.argv[2] == "default"
client = Client(sys.argv[1], verbose=False, **({} if default_io else BROWSER_IO))
http = httpx.Client(timeout=60)  # one connection kept open, as a page does

from bench.app_overhead import file_urls as files

for line in sys.stdin:
    req = json.loads(line)
    f = handle_file(req["image"])
    t = time.perf_counter()
    out = client.predict(req["visitor"], "en", {"background": f, "layers": [], "composite": f}, [],
                         req["question"], "math", "auto", "en", req["n"], api_name="/ask")
    fetched = 0
    if not default_io:  # a page loads each picture of the turn once
        for url in files(out, {}):
            fetched += len(http.get(url).content)
    print(json.dumps({"secs": time.perf_counter() - t, "status": str(out[1]), "fetched": fetched}), flush=True)
"""


def file_urls(x: Any, out: dict) -> dict:
    """The distinct file URLs in an output (what a page would load), in order."""
    if isinstance(x, dict):
        if isinstance(x.get("url"), str) and x.get("path"):
            out.setdefault(x["url"], None)
        for v in x.values():
            file_urls(v, out)
    elif isinstance(x, list | tuple):
        for v in x:
            file_urls(v, out)
    return out


def child_env() -> dict:
    """The environment of a client process: this repository importable (it shares ``file_urls``)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


class Photos:
    """The photo of each request: with ``fresh``, a copy of ``image`` that no request has sent before (a
    patch of pixels set from a counter, saved as JPEG), written before the timing starts."""

    def __init__(self, image: str, mode: str, folder: str):
        self.image, self.mode, self.folder, self.count = image, mode, Path(folder), 0

    def next(self) -> str:
        if self.mode == "same":
            return self.image
        from PIL import Image

        self.count += 1
        with Image.open(self.image) as im:
            img = im.convert("RGB")
        c = self.count
        img.paste(((c * 37) % 256, (c * 91) % 256, (c * 151) % 256), (0, 0, 24, 24))
        path = self.folder / f"photo-{c}.jpg"
        img.save(path, quality=95)
        return str(path)


class AppClient:
    """``/ask`` through gradio_client, timed from the request to the finished turn (upload and stream
    included). ``process=True`` runs the client in a child process, as a browser is a separate
    program: its parsing of the streamed updates then does not compete with the app's process."""

    def __init__(self, url: str, process: bool = True, io: str = "browser"):
        self.proc = None
        self.io = io
        if process:
            self.proc = subprocess.Popen([sys.executable, "-c", _CLIENT_LOOP, url, io, json.dumps(BROWSER_IO)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
        else:
            from gradio_client import Client

            self.client = Client(url, verbose=False, **({} if io == "default" else BROWSER_IO))
            import httpx

            self.http = httpx.Client(timeout=60)

    def ask(self, image: str, n: int, visitor: str) -> float:
        if self.proc is None:
            t = time.perf_counter()
            out = self.client.predict(visitor, "en", _editor(image), [], QUESTION, "math", "auto", "en", n,
                                      api_name="/ask")
            if self.io == "browser":
                for url in file_urls(out, {}):
                    self.http.get(url)
            secs, status = time.perf_counter() - t, str(out[1])
        else:
            self.proc.stdin.write(json.dumps({"image": image, "n": n, "visitor": visitor, "question": QUESTION})
                                  + "\n")
            self.proc.stdin.flush()
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("the client process ended")
                if line.startswith("{"):
                    reply = json.loads(line)
                    break
            secs, status = reply["secs"], reply["status"]
        if not status.startswith("Done"):
            raise RuntimeError(f"the app did not finish the solve: {status!r}")
        return secs

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def measure(engine: Any, pinned: PinnedEngine, client: AppClient, photos: Photos, n: int, repeats: int) -> dict:
    """Alternate app and direct solves (one warm-up each); per-repeat times and medians. Each repeat
    sends both sides the same photo (a new one per repeat with ``--photo fresh``)."""
    client.ask(photos.next(), n, "bench-warmup")
    direct_solve(engine, photos.next(), n, pinned.sampling)
    eng_s, app_s, inside_s, own_direct, own_app = [], [], [], [], []
    for r in range(repeats):
        image = photos.next()
        order = ("app", "engine") if r % 2 == 0 else ("engine", "app")
        for which in order:
            if which == "app":
                app_s.append(client.ask(image, n, f"bench-{r}"))
                inside_s.append(pinned.last_s)
                own_app.append(pinned.last_timings.get("total_s", float("nan")))
            else:
                secs, timings = direct_solve(engine, image, n, pinned.sampling)
                eng_s.append(secs)
                own_direct.append(timings.get("total_s", float("nan")))
        log.info("repeat %d: app %.3f s, engine %.3f s; in the app: stream %.3f s, engine's own %.3f s "
                 "(direct: %.3f s)", r + 1, app_s[-1], eng_s[-1], inside_s[-1], own_app[-1], own_direct[-1])
    ratios = [a / e for a, e in zip(app_s, eng_s, strict=True)]
    return {
        "repeats": repeats,
        "engine_s": [round(x, 4) for x in eng_s],
        "app_s": [round(x, 4) for x in app_s],
        "engine_inside_app_s": [round(x, 4) for x in inside_s],
        "median_engine_s": round(statistics.median(eng_s), 4),
        "median_app_s": round(statistics.median(app_s), 4),
        "median_engine_inside_app_s": round(statistics.median(inside_s), 4),
        "median_engine_own_total_s_direct": round(statistics.median(own_direct), 4),
        "median_engine_own_total_s_in_app": round(statistics.median(own_app), 4),
        "median_ratio": round(statistics.median(ratios), 4),
        "ratio_of_medians": round(statistics.median(app_s) / statistics.median(eng_s), 4),
        "median_overhead_s": round(statistics.median(a - e for a, e in zip(app_s, eng_s, strict=True)), 4),
        # the app's own time within the same request: free of the engine's run-to-run noise
        "median_app_own_s": round(statistics.median(a - i for a, i in zip(app_s, inside_s, strict=True)), 4),
        "min_ratio": round(min(ratios), 4),
        "max_ratio": round(max(ratios), 4),
    }


def table(rows: list[dict], n: int) -> str:
    lines = [f"| new tokens x n={n} | engine s | app s | overhead s | app's own s | engine's own s: direct / in app "
             f"| ratio app/engine (median, min-max) | <= {TARGET} |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in rows:
        ok = "yes" if r["median_ratio"] <= TARGET else "no"
        own = r.get("median_app_own_s", float("nan"))
        lines.append(f"| {r['tokens']} | {r['median_engine_s']:.2f} | {r['median_app_s']:.2f} | "
                     f"{r['median_overhead_s']:.2f} | {own:.2f} | {r['median_engine_own_total_s_direct']:.2f} / "
                     f"{r['median_engine_own_total_s_in_app']:.2f} | "
                     f"{r['median_ratio']:.3f} ({r['min_ratio']:.2f}-{r['max_ratio']:.2f}) | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--n", type=int, default=2, help="candidates per solve")
    p.add_argument("--tokens", default="32,128", help="new tokens per candidate; several: comma-separated")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default=str(ROOT / "assets/examples/math-en-cubic-graph.jpg"))
    p.add_argument("--client", default="process", choices=["process", "inline"],
                   help="gradio_client in a child process (like a browser) or in this process")
    p.add_argument("--photo", default="fresh", choices=["fresh", "same"],
                   help="a photo the app has not stored yet for every request, or the same one each time")
    p.add_argument("--client-io", default="browser", choices=["browser", "default"],
                   help="talk to the app as a page does, or with gradio_client's defaults (module docstring)")
    p.add_argument("--out", default=str(ROOT / "bench/results/app_overhead.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "gradio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from app import build_app, launch_kwargs
    from engine.core import Engine, Sampling
    from tutor.store import Store
    from webui.config import AppConfig

    engine = Engine(args.model)
    rows = []
    with tempfile.TemporaryDirectory(prefix="r1v-overhead-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'r1v.db'}", image_dir=Path(tmp) / "images")
        photos = Photos(args.image, args.photo, tmp)
        for tokens in [int(t) for t in args.tokens.split(",")]:
            sampling = Sampling(max_new_tokens=tokens, min_new_tokens=tokens, seed=args.seed)
            pinned = PinnedEngine(engine, sampling)
            cfg = AppConfig(max_new_tokens=tokens)
            demo = build_app(engine=pinned, store=store, cfg=cfg)
            demo.queue(max_size=8, default_concurrency_limit=1)
            _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
            try:
                client = AppClient(url, process=args.client == "process", io=args.client_io)
                try:
                    row = {"tokens": tokens, **measure(engine, pinned, client, photos, args.n, args.repeats)}
                finally:
                    client.close()
            finally:
                demo.close()
            rows.append(row)
        store.close()

    result = {
        "what": "one solve through the running app (gradio_client /ask) vs the same solve on the engine directly",
        "model": engine.name, "n": args.n, "seed": args.seed, "client": args.client, "photo": args.photo,
        "client_io": args.client_io, "image": os.path.relpath(args.image, ROOT),
        "target_ratio": TARGET, "rows": rows, "commit": _commit(),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared with other jobs: medians of alternating "
                   "repeats)",
        "command": "python bench/app_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {out}\n")
    print(table(rows, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
