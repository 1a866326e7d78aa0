"""Benchmark: n candidates from one batched solve against n sequential single solves.

    python -m engine bench                     # tiny-random, n=8, 32 new tokens each, 3 repeats
    python -m engine bench --n 8 --tokens 64 --repeats 5 --out bench/results/engine_batch.json

Both sides decode exactly the same number of tokens per candidate (min_new_tokens = max_new_tokens)
from the same photo and prompt. Prints a table and writes JSON. The target on a 2-core CPU is
batched / sequential <= 0.35 for n=8.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--tokens", type=int, default=32, help="new tokens per candidate")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--image", default=None, help="problem photo (default: the first example)")
    p.add_argument("--out", default="bench/results/engine_batch.json")


def _image(path: str | None):
    from PIL import Image

    if path:
        return path
    examples = sorted(Path(__file__).resolve().parent.parent.glob("assets/examples/*.jpg"))
    if examples:
        return str(examples[0])
    return Image.new("RGB", (900, 600), "white")


def run(args) -> int:
    import torch

    from engine.core import Engine, Sampling

    engine = Engine(args.model)
    image = _image(args.image)
    from engine.core import _as_pil

    image = _as_pil(image)
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0
