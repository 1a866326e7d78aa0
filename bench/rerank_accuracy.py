"""What reranking buys: accuracy of first / vote / reward / reward+vote / oracle for n = 1, 2, 4, 8.

    python bench/rerank_accuracy.py                          # tiny-reward (random: reward rows mean nothing)
    python bench/rerank_accuracy.py --reward mini-reward     # any reward preset or checkpoint directory
    python bench/rerank_accuracy.py --synthetic 48 --seeds 3 --reads answer --out bench/results/rerank_accuracy.json

The labelled candidate set. Problems: the 16 shipped examples (``tutor.examples.load_examples``: photo,
question, gold answer from the sidecar) plus synthetic problems (linear equations, arithmetic,
fraction sums, single choice) drawn on a plain image. For each problem and seed, a pool of 8
candidates is sampled the way a reasoning model errs: the problem gets its own chance of being
solved (uniform in 0.15..0.9), a wrong candidate picks one of three plausible wrong answers with
weights 0.6 / 0.3 / 0.1 (models repeat the same mistake, so wrong answers agree with each other too),
and 10% of candidates run out of tokens (no answer). Every candidate is written from the same
solution templates, right or wrong, goes through ``engine.core.make_candidate`` (the real
thinking/answer split and answer extraction), and its label is ``tutor.answers.equivalent(gold,
answer)`` -- the construction is checked against it. The reward model scores every candidate once
(all pools of a problem in one call: the image is encoded once), and for n the first n candidates of
each pool are reranked. Accuracy = share of (problem, seed) pools whose chosen candidate is right;
oracle = share with at least one right candidate among the n. Also reported: the reward model's
pairwise accuracy (a right candidate outscoring a wrong one of the same problem; 0.5 = chance).

Prints a table and writes JSON (default ``bench/results/rerank_accuracy.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

POOL = 8
NS = (1, 2, 4, 8)
STRATS = ("first", "vote", "reward", "reward+vote")
TEMPLATES = [
    "We read the quantities from the figure and set up the relation step by step.",
    "First list what is given, then apply the standard method and simplify.",
    "Using the definitions, we transform the condition and compute carefully.",
    "解：由题意列出关系式，逐步化简计算。",
]


@dataclass
class Problem:
    id: str
    question: str
    gold: list[str]  # one string per blank
    image: object  # PIL image or a path


# ------------------------------------------------------------------------------------- problems


def _draw(text: str):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (560, 160), "white")
    ImageDraw.Draw(im).multiline_text((16, 16), text, fill="black", spacing=8)
    return im


def synthetic_problems(count: int, seed: int) -> list[Problem]:
    rng = random.Random(seed)
    out: list[Problem] = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            x, a, b = rng.randint(-9, 9), rng.randint(2, 9), rng.randint(1, 20)
            q, gold = f"Solve for x: {a}x + {b} = {a * x + b}.", [str(x)]
        elif kind == 1:
            a, b, c = rng.randint(11, 99), rng.randint(2, 12), rng.randint(1, 50)
            q, gold = f"Compute {a} * {b} - {c}.", [str(a * b - c)]
        elif kind == 2:
            p, r = Fraction(rng.randint(1, 5), rng.randint(2, 7)), Fraction(rng.randint(1, 5), rng.randint(2, 7))
            s = p + r
            q = f"Compute {p} + {r} as a fraction in lowest terms."
            gold = [str(s.numerator) if s.denominator == 1 else f"\\frac{{{s.numerator}}}{{{s.denominator}}}"]
        else:
            x = rng.randint(2, 9)
            opts = [x] + rng.sample([x + 1, x - 1, 2 * x, x + 2], 3)
            rng.shuffle(opts)
            letter = "ABCD"[opts.index(x)]
            q = f"If 3x = {3 * x}, then x = ?  " + "  ".join(f"{'ABCD'[i]}. {v}" for i, v in enumerate(opts))
            gold = [letter]
        out.append(Problem(f"synthetic-{k:03d}", q, gold, _draw(q)))
    return out


def example_problems() -> list[Problem]:
    from tutor.examples import load_examples

    return [Problem(e.id, e.question, list(e.answer) if isinstance(e.answer, list) else [e.answer], e.image_path)
            for e in load_examples()]


# ------------------------------------------------------------------------------------ candidates


def _wrong_blank(gold: str, k: int) -> str:
    """The k-th plausible wrong version of one blank."""
    if gold.isalpha() and gold.isupper() and len(gold) <= 4:  # choice letters
        options = [s for s in ("A", "B", "C", "D", "AB", "AC", "BD", "ABC") if s != gold]
        return options[k % len(options)]
    try:
        v = Fraction(gold)
        return str([v + 1, v - 1, 2 * v if v else Fraction(3), -v if v else Fraction(-1)][k % 4])
    except (ValueError, ZeroDivisionError):
        pass
    digits = [i for i, ch in enumerate(gold) if ch.isdigit()]
    if digits:
        i = digits[k % len(digits)]
        return gold[:i] + str((int(gold[i]) + 1 + k // len(digits)) % 10) + gold[i + 1:]
    letters = [i for i, ch in enumerate(gold) if ch.isalpha()]
    i = letters[k % len(letters)] if letters else 0
    return gold[:i] + (gold[i].swapcase() if gold else "x") + gold[i + 1:]


def wrong_answers(gold: list[str], equal) -> list[list[str]]:
    """Three distinct wrong answers (one blank changed each), none equivalent to the gold."""
    joined = "; ".join(gold)
    out: list[list[str]] = []
    k = 0
    while len(out) < 3 and k < 40:
        ans = list(gold)
        ans[k % len(gold)] = _wrong_blank(gold[k % len(gold)], k // len(gold))
        if ans not in out and not equal(joined, "; ".join(ans)):
            out.append(ans)
        k += 1
    return out


def write_solution(answer: list[str] | None, rng: random.Random) -> str:
    """Raw model text: thinking, ``</think>``, a worked answer with boxed blanks (None: truncated)."""
    thinking = rng.choice(TEMPLATES) + " " + " ".join(rng.choice(TEMPLATES) for _ in range(rng.randint(1, 3)))
    if answer is None:
        return thinking + " Let me check again, hmm"
    if len(answer) == 1:
        body = f"{rng.choice(TEMPLATES)} So the answer is $\\boxed{{{answer[0]}}}$."
    else:
        body = " ".join(f"({i + 1}) {rng.choice(TEMPLATES)} $\\boxed{{{a}}}$." for i, a in enumerate(answer))
    return f"{thinking}\n</think>\n\n{body}"


def sample_pool(problem: Problem, wrongs: list[list[str]], rng: random.Random):
    from engine.core import make_candidate

    p_right = rng.uniform(0.15, 0.9)
    pool, planned = [], []
    for i in range(POOL):
        if rng.random() < 0.1:
            answer, right = None, False
        elif rng.random() < p_right:
            answer, right = problem.gold, True
        else:
            answer, right = rng.choices(wrongs, weights=[0.6, 0.3, 0.1][: len(wrongs)])[0], False
        raw = write_solution(answer, rng)
        pool.append(make_candidate(i, raw, len(raw) // 3, "stop" if answer else "length"))
        planned.append(right)
    return pool, planned


# ---------------------------------------------------------------------------------------- running


def run(args) -> dict:
    from engine.rerank import rerank
    from engine.reward import ScoreSettings, load_reward
    from tutor.answers import equivalent

    cache: dict[tuple[str, str], bool] = {}

    def equal(a: str, b: str) -> bool:
        if (a, b) not in cache:
            cache[(a, b)] = equivalent(a, b)
        return cache[(a, b)]

    problems = example_problems() + synthetic_problems(args.synthetic, args.seed)
    scorer = load_reward(args.reward, settings=ScoreSettings(reads=args.reads))
    t0 = time.perf_counter()
    records = []  # per (problem, seed): candidates, labels, scores
    mismatches = 0
    for prob in problems:
        wrongs = wrong_answers(prob.gold, equal)
        gold = "; ".join(prob.gold)
        pools = []
        for s in range(args.seeds):
            rng = random.Random(f"{args.seed}-{prob.id}-{s}")
            pool, planned = sample_pool(prob, wrongs, rng)
            labels = [bool(c.answer) and equal(gold, c.answer) for c in pool]
            mismatches += sum(a != b for a, b in zip(labels, planned, strict=True))
            pools.append((pool, labels))
        flat = [c for pool, _ in pools for c in pool]
        scores = scorer.score([prob.image], prob.question, flat)  # the image is encoded once per problem
        for s, (pool, labels) in enumerate(pools):
            records.append((pool, labels, scores[s * POOL:(s + 1) * POOL]))
    score_s = time.perf_counter() - t0

    table: dict[str, dict[int, float]] = {k: {} for k in (*STRATS, "oracle")}
    for n in NS:
        hits = dict.fromkeys(table, 0)
        for pool, labels, scores in records:
            cands, labs, sc = pool[:n], labels[:n], scores[:n]
            for strat in STRATS:
                hits[strat] += labs[rerank(cands, strat, scores=sc, equal=equal).chosen]
            hits["oracle"] += any(labs)
        for k in table:
            table[k][n] = round(hits[k] / len(records), 4)
    pairs = wins = 0
    for _, labels, scores in records:
        for i, li in enumerate(labels):
            for j, lj in enumerate(labels):
                if li and not lj and scores[i] == scores[i] and scores[j] == scores[j]:
                    pairs += 1
                    wins += (scores[i] > scores[j]) + 0.5 * (scores[i] == scores[j])
    return {
        "reward_model": scorer.name,
        "reward_is_random": scorer.name == "tiny-reward",
        "reads": args.reads,
        "problems": {"examples": len(problems) - args.synthetic, "synthetic": args.synthetic},
        "seeds": args.seeds,
        "pools": len(records),
        "pool_size": POOL,
        "candidate_right_rate": round(sum(sum(lab) for _, lab, _ in records) / (len(records) * POOL), 4),
        "label_construction_mismatches": mismatches,
        "reward_pairwise_accuracy": round(wins / pairs, 4) if pairs else None,
        "accuracy": {k: {str(n): v for n, v in row.items()} for k, row in table.items()},
        "scoring_s": round(score_s, 2),
    }


def print_table(result: dict) -> None:
    print(f"reward model: {result['reward_model']}"
          + (" (random weights: the reward rows mean nothing)" if result["reward_is_random"] else "")
          + f"; reads: {result['reads']}")
    print(f"{result['pools']} pools ({result['problems']['examples']} examples + {result['problems']['synthetic']} "
          f"synthetic problems x {result['seeds']} seeds), {result['pool_size']} candidates each, "
          f"{result['candidate_right_rate']:.0%} of candidates right")
    print(f"{'strategy':14s}" + "".join(f"{'n=' + str(n):>8s}" for n in NS))
    for k, row in result["accuracy"].items():
        print(f"{k:14s}" + "".join(f"{row[str(n)]:8.3f}" for n in NS))
    print(f"reward pairwise accuracy (right vs wrong, same problem): {result['reward_pairwise_accuracy']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reward", default="tiny-reward", help="reward preset or checkpoint directory")
    p.add_argument("--reads", default="answer", choices=["answer", "thinking+answer"])
    p.add_argument("--synthetic", type=int, default=48, help="number of synthetic problems")
    p.add_argument("--seeds", type=int, default=3, help="candidate pools per problem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "rerank_accuracy.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
