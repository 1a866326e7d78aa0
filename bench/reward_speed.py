"""Benchmark: reward scores for 8 candidates in one batched call against 8 one-by-one calls, and the
scores of n=4 candidates through the reward server (``engine.reward_server``) against in process.

    python bench/reward_speed.py                               # tiny-reward, n=8, 5 repeats; HTTP at n=4
    python bench/reward_speed.py --reward skywork-vl-reward-7b --n 8 --out bench/results/reward_batch.json
    python bench/reward_speed.py --url http://gpu-box:30001    # the HTTP side against a running server

HTTP vs in process: the same problem and the first ``--http-n`` responses scored by the loaded scorer
directly (in a worker thread, see ``in_thread``) and by ``HttpRewardScorer`` through a reward server on 127.0.0.1 (started in this process on
the same loaded model, so the difference is the HTTP round trip: JSON, the image as a PNG data URL
encoded by the client and decoded and checked by the server), or through ``--url``. Medians of
interleaved repeats after a warm-up; the largest score difference is printed too.

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
    p.add_argument("--http-n", type=int, default=4, help="candidates per request for HTTP vs in process")
    p.add_argument("--url", default=None, help="a running reward server (default: one started here)")
    p.add_argument("--api-key", default=None, help="its key (default: R1V_REWARD_API_KEY)")
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
    http = http_vs_in_process(scorer, [image], question, texts[: args.http_n], args.repeats, args.url, args.api_key)
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
        "http": http,
        "hardware": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                    f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}",
        "torch": torch.__version__,
    }
    print(f"reward model: {scorer.name}, n={args.n}, {tokens} tokens in the batched call, problem {example.id}")
    print(f"{'':12s}{'seconds':>10s}")
    print(f"{'batched':12s}{b:10.4f}")
    print(f"{'one-by-one':12s}{s:10.4f}")
    print(f"ratio batched/one-by-one = {b / s:.3f} (target <= 0.4); largest score difference {max_diff:.2e}")
    print(f"n={http['n']} over HTTP ({http['server']}): {http['http_s']:.4f} s vs in process "
          f"{http['in_process_s']:.4f} s (+{http['overhead_s'] * 1000:.1f} ms, ratio {http['ratio']:.3f}); "
          f"request body {http['request_bytes']} bytes; largest score difference {http['max_score_difference']:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def in_thread(fn):
    """(result, seconds) of ``fn()`` run in a fresh thread, as the server scores in its request thread
    and the app in its engine thread. (On this 2-core machine under load, the same torch call in the
    main thread was measured 5-10x slower than in a fresh thread: timing one side in each would
    measure that, not HTTP.)"""
    import threading

    out: list = []

    def run():
        t = time.perf_counter()
        r = fn()
        out.append((r, time.perf_counter() - t))

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return out[0]


def http_vs_in_process(scorer, images, question, texts, repeats, url=None, api_key=None) -> dict:
    """Median seconds of scoring ``texts`` in process and through a reward server (one request)."""
    import threading

    from engine.reward_client import HttpRewardScorer
    from engine.reward_server import make_server

    server = None
    if url is None:
        server = make_server(scorer, host="127.0.0.1", port=0, api_key="bench")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url, api_key = server.url, "bench"
    client = HttpRewardScorer(url, api_key=api_key)
    try:
        client.score(images, question, texts)  # warm-up (connection, first request)
        local_t, http_t = [], []
        for _ in range(repeats):
            local, secs = in_thread(lambda: scorer.score(images, question, texts))
            local_t.append(secs)
            remote, secs = in_thread(lambda: client.score(images, question, texts))
            http_t.append(secs)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    from engine.http import _data_url

    body = len(json.dumps({"question": question, "images": [_data_url(im, "png") for im in images],
                           "responses": list(texts)}).encode())
    lo, hi = statistics.median(local_t), statistics.median(http_t)
    return {"n": len(texts), "server": "in this process, 127.0.0.1" if server is not None else url,
            "in_process_s": round(lo, 4), "http_s": round(hi, 4), "overhead_s": round(hi - lo, 4),
            "ratio": round(hi / lo, 3), "request_bytes": body,
            "max_score_difference": max(abs(x - y) for x, y in zip(local, remote, strict=True))}


if __name__ == "__main__":
    sys.exit(main())
