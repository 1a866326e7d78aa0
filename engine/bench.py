"""Engine benchmarks: batched vs sequential candidates, and the latency of one solve by stage.

    python -m engine bench                     # batch ratio (tiny-random, n=8, 32 new tokens, 3 repeats)
    python -m engine bench --mode latency      # one solve split by stage, for n = 1, 2, 4, 8, 16
    python -m engine bench --mode all          # both; also writes bench/RESULTS.md and a PNG plot

``batch``: n candidates from one batched solve against n sequential single solves. Both sides
decode exactly the same number of tokens per candidate (min_new_tokens = max_new_tokens) from the
same photo and prompt. Target on a 2-core CPU: batched / sequential <= 0.35 for n=8.

``latency``: intake (read + check the photo), preprocessing (tiling + tokenising), prefill, decode,
reward scoring (when the solution reports it) and storing (problem, attempt, candidates in a fresh
SQLite file), with tokens per second and the process's peak resident memory (and peak CUDA memory
on a GPU), for each n. Results go to ``bench/results/*.json``; ``--mode all`` also writes
``bench/RESULTS.md`` with the machine, commit and command, and ``bench/results/latency_vs_n.png``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--mode", default="batch", choices=["batch", "latency", "all"])
    p.add_argument("--ns", default="1,2,4,8,16", help="n values for --mode latency")
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--tokens", type=int, default=32, help="new tokens per candidate")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--image", default=None, help="problem photo (default: the first example)")
    p.add_argument("--out", default=None, help="result JSON (default: bench/results/engine_batch.json for "
                   "--mode batch, bench/results/latency.json for --mode latency; --mode all writes both defaults)")


def _image(path: str | None):
    from PIL import Image

    if path:
        return path
    examples = sorted(Path(__file__).resolve().parent.parent.glob("assets/examples/*.jpg"))
    if examples:
        return str(examples[0])
    return Image.new("RGB", (900, 600), "white")


def run(args) -> int:
    from engine.core import Engine

    engine = Engine(args.model)
    results = {}
    if args.mode in ("batch", "all"):
        results["batch"] = run_batch(args, engine)
    if args.mode in ("latency", "all"):
        results["latency"] = run_latency(args, engine)
    if args.mode == "all":
        write_report(results, args)
    return 0


def run_batch(args, engine) -> dict:
    import torch

    from engine.core import Sampling
    from tutor.intake import as_pil

    image = as_pil(_image(args.image))
    sampling = Sampling(max_new_tokens=args.tokens, min_new_tokens=args.tokens, seed=0)
    question = "Solve the problem in the photo."
    engine.solve([image], question, n=1, sampling=sampling)  # warm-up

    batched, sequential, tokens_b, tokens_s = [], [], 0, 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        sol = engine.solve([image], question, n=args.n, sampling=sampling)
        batched.append(time.perf_counter() - t)
        tokens_b = sum(c.tokens for c in sol.candidates)
        t = time.perf_counter()
        tokens_s = 0
        for _ in range(args.n):
            tokens_s += sum(c.tokens for c in engine.solve([image], question, n=1, sampling=sampling).candidates)
        sequential.append(time.perf_counter() - t)
    b, s = statistics.median(batched), statistics.median(sequential)
    result = {
        "model": engine.name,
        "n": args.n,
        "new_tokens_per_candidate": args.tokens,
        "prompt_tokens": sol.prompt_tokens,
        "generated_tokens": {"batched": tokens_b, "sequential": tokens_s},
        "batched_s": round(b, 3),
        "sequential_s": round(s, 3),
        "ratio": round(b / s, 3),
        "target": 0.35,
        "repeats": args.repeats,
        "hardware": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                    f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}",
        "torch": torch.__version__,
    }
    print(f"{'':12s}{'seconds':>10s}{'tokens':>10s}")
    print(f"{'batched':12s}{b:10.3f}{tokens_b:10d}")
    print(f"{'sequential':12s}{s:10.3f}{tokens_s:10d}")
    print(f"ratio batched/sequential = {b / s:.3f} (target <= 0.35), n={args.n}, "
          f"prompt {sol.prompt_tokens} tokens, {args.tokens} new tokens each")
    _write(Path(args.out if args.out and args.mode == "batch" else "bench/results/engine_batch.json"), result)
    return result


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_latency(args, engine) -> dict:
    """One solve split by stage for each n (median of ``--repeats``)."""
    import tempfile

    import torch

    from engine.core import Sampling
    from tutor.intake import load_image
    from tutor.store import Store

    source = _image(args.image)
    if not isinstance(source, str):
        tmp = Path(tempfile.mkdtemp()) / "q.png"
        source.save(tmp)
        source = str(tmp)
    sampling = Sampling(max_new_tokens=args.tokens, min_new_tokens=args.tokens, seed=0)
    store = Store(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}", image_dir=tempfile.mkdtemp())
    engine.solve([load_image(source)], "Q", n=1, sampling=sampling)  # warm-up
    rows = []
    for n in [int(x) for x in args.ns.split(",")]:
        runs = []
        for _ in range(args.repeats):
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            image = load_image(source)
            t1 = time.perf_counter()
            sol = engine.solve([image], "Solve the problem in the photo.", n=n, sampling=sampling)
            t2 = time.perf_counter()
            pid = store.add_problem("bench", question="Q", images=[image])
            aid = store.add_attempt("bench", pid, mode="solve", model=engine.name, backend="bench",
                                    timings=sol.timings)
            store.add_candidates("bench", aid, sol.candidates, chosen=sol.chosen)
            t3 = time.perf_counter()
            tm = sol.timings
            runs.append({
                "intake_s": t1 - t0,
                "preprocess_s": tm.get("preprocess_s", 0.0),
                "prefill_s": tm.get("prefill_s", 0.0),
                "decode_s": tm.get("decode_s", 0.0),
                "reward_s": tm.get("reward_s", 0.0),
                "store_s": t3 - t2,
                "total_s": t3 - t0,
                "tokens": sum(c.tokens for c in sol.candidates),
            })
        row = {"n": n, **{k: round(statistics.median(r[k] for r in runs), 4) for k in runs[0]}}
        row["tokens_per_s"] = round(row["tokens"] / max(row["decode_s"], 1e-9), 1)
        row["peak_rss_mib"] = round(_peak_rss_mib(), 1)
        if torch.cuda.is_available():
            row["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        rows.append(row)
    store.close()
    cols = ["n", "intake_s", "preprocess_s", "prefill_s", "decode_s", "reward_s", "store_s", "total_s",
            "tokens_per_s", "peak_rss_mib"]
    print(" ".join(f"{c:>12s}" for c in cols))
    for r in rows:
        print(" ".join(f"{r[c]:>12}" for c in cols))
    result = {"model": engine.name, "new_tokens_per_candidate": args.tokens, "repeats": args.repeats,
              "rows": rows}
    _write(Path(args.out if args.out and args.mode == "latency" else "bench/results/latency.json"), result)
    return result


def write_report(results: dict, args) -> None:
    """bench/RESULTS.md with machine, commit and command, and a PNG of latency against n."""
    import platform
    import subprocess

    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    hw = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}")
    lines = ["# Engine benchmarks", "", f"- commit: `{commit}`", f"- hardware: {hw}",
             f"- command: `python -m engine bench --mode all --tokens {args.tokens} --repeats {args.repeats}`", ""]
    if "batch" in results:
        b = results["batch"]
        lines += ["## Batched vs sequential candidates", "",
                  "| n | batched s | sequential s | ratio | target |", "| --- | --- | --- | --- | --- |",
                  f"| {b['n']} | {b['batched_s']} | {b['sequential_s']} | {b['ratio']} | <= 0.35 |", ""]
    if "latency" in results:
        rows = results["latency"]["rows"]
        lines += ["## One solve by stage (median seconds)", "",
                  "| n | intake | preprocess | prefill | decode | reward | store | total | tokens/s | peak RSS MiB |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['n']} | {r['intake_s']} | {r['preprocess_s']} | {r['prefill_s']} | {r['decode_s']} | "
                  f"{r['reward_s']} | {r['store_s']} | {r['total_s']} | {r['tokens_per_s']} | {r['peak_rss_mib']} |"
                  for r in rows]
        lines += ["", "![latency against n](results/latency_vs_n.png)", ""]
        _plot(rows, Path("bench/results/latency_vs_n.png"))
    Path("bench/RESULTS.md").write_text("\n".join(lines))
    print("wrote bench/RESULTS.md")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("total_s", "decode_s", "prefill_s"):
        ax.plot(ns, [r[key] for r in rows], marker="o", label=key.removesuffix("_s"))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("candidates n")
    ax.set_ylabel("seconds")
    ax.set_title("One solve against n (tiny-random)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
