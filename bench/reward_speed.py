"""Benchmark: reward scores for 8 candidates in one batched call against 8 one-by-one calls.

    python bench/reward_speed.py                               # tiny-reward, n=8, 5 repeats
    python bench/reward_speed.py --reward skywork-vl-reward-7b --n 8 --out bench/results/reward_batch.json

Both sides score the same 8 responses to the same problem (the first shipped example's photo and
question); the responses are worked solutions of a few hundred characters, as the default
``ScoreSettings(reads="answer")`` reads them. Batched: one ``RewardScorer.score`` call (image
encoded once, one padded forward). One by one: n calls with one response each (image encoded each
time), as a scorer without batching would do. Timings are medians of interleaved repeats after a
warm-up. Target on tiny-reward: batched / one-by-one <= 0.4. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STEPS = [
    "Let the unknown be x and write the condition as an equation.",
    "Substituting the given values, we simplify both sides.",
    "By the formula from the textbook, the quantity equals the ratio of the two lengths.",
    "Check: the result satisfies the original condition.",
    "由题意得，代入已知条件化简。",
]


def responses(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        steps = " ".join(rng.choice(STEPS) for _ in range(rng.randint(3, 7)))
        out.append(f"{steps} Therefore the answer is $\\boxed{{{i + 1}}}$.")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="batched vs one-by-one reward scoring")
    p.add_argument("--reward", default="tiny-reward", help="reward preset or checkpoint directory")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "reward_batch.json"))
    args = p.parse_args(argv)

    import torch

    from engine.reward import load_reward
    from tutor.examples import load_examples

    example = load_examples()[0]
    scorer = load_reward(args.reward)
    texts = responses(args.n)
    image, question = example.image_path, example.question
    scorer.score([image], question, texts)  # warm-up
    scorer.score([image], question, texts[:1])

    batched, single = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        b_scores = scorer.score([image], question, texts)
        batched.append(time.perf_counter() - t)
        tokens = scorer.last_timings.get("tokens", 0)
        t = time.perf_counter()
        s_scores = [scorer.score([image], question, [r])[0] for r in texts]
        single.append(time.perf_counter() - t)
    b, s = statistics.median(batched), statistics.median(single)
    max_diff = max(abs(x - y) for x, y in zip(b_scores, s_scores, strict=True))
    result = {
        "reward_model": scorer.name,
        "n": args.n,
        "problem": example.id,
        "tokens_per_call": tokens,
        "batched_s": round(b, 4),
        "one_by_one_s": round(s, 4),
        "ratio": round(b / s, 3),
        "target": 0.4,
        "max_score_difference": max_diff,
        "repeats": args.repeats,
        "hardware": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                    f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}",
        "torch": torch.__version__,
    }
    print(f"reward model: {scorer.name}, n={args.n}, {tokens} tokens in the batched call, problem {example.id}")
    print(f"{'':12s}{'seconds':>10s}")
    print(f"{'batched':12s}{b:10.4f}")
    print(f"{'one-by-one':12s}{s:10.4f}")
    print(f"ratio batched/one-by-one = {b / s:.3f} (target <= 0.4); largest score difference {max_diff:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
