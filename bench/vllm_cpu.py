"""The real vLLM (CPU build) serving tiny-random: start time, memory, prompt tokens, request latency.

    python bench/vllm_cpu.py [--port 18200] [--tokens 32] [--repeat 3] [--json bench/results/vllm_cpu.json]

Starts the server with ``engine.vllm_cpu.start_server`` (the engine env and the converted checkpoint
are built first if missing; that time is not counted in the start), then measures:

    start_s              process start until /health and /v1/models answer
    rss_gib              resident memory of the server's process tree (API server + engine core), after
                         the requests
    prompt_tokens        the server's usage for the solve prompt: text only, one 448x448 image, one
                         800x600 image (the preset's 6 tiles + thumbnail), and 800x600 at max_tiles=12
    latency_n1_s         one request, n=1, ``--tokens`` new tokens, one 448x448 image (median of --repeat)
    latency_n4_s         the same with native n=4 (one request)

Figures depend on the machine (this one: 2 shared cores); tiny-random's weights are random, so this
measures the serving path, not the model. Not a CI test (about two minutes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_gib(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    total = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    return round(total / 2**30, 2)


def main() -> int:
    from PIL import Image, ImageDraw

    from engine.core import Sampling
    from engine.http import HttpEngine
    from engine.vllm_cpu import prepare, start_server

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=18200)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "vllm_cpu.json"))
    args = ap.parse_args()

    def photo(w, h):
        img = Image.new("RGB", (w, h), "white")
        ImageDraw.Draw(img).text((20, h // 2), "2x + 3 = 7", fill="black")
        return img

    t0 = time.monotonic()
    prepare(log=lambda m: print(m, file=sys.stderr))
    prepare_s = time.monotonic() - t0
    server = start_server(args.port, log=lambda m: print(m, file=sys.stderr))
    print(f"start_s {server.start_s:.1f}")
    try:
        eng = HttpEngine(server.url, max_retries=0)
        eng.check()

        def run(images, n=1, tokens=1, tiles=None, seed=0):
            t = time.perf_counter()
            sol = eng.solve(images, "Solve for x.", n=n, max_tiles=tiles,
                            sampling=Sampling(temperature=1.0, max_new_tokens=tokens, seed=seed))
            return time.perf_counter() - t, sol

        square, wide = photo(448, 448), photo(800, 600)
        prompt = {
            "text_only": run([])[1].prompt_tokens,
            "image_448x448": run([square])[1].prompt_tokens,
            "image_800x600": run([wide])[1].prompt_tokens,
            "image_800x600_max_tiles_12": run([wide], tiles=12)[1].prompt_tokens,
        }
        print("prompt_tokens", prompt)
        lat = {}
        for n in (1, 4):
            times, gen = [], []
            for k in range(args.repeat):
                dt, sol = run([square], n=n, tokens=args.tokens, seed=10 + k)
                times.append(dt)
                gen.append(sum(c.tokens for c in sol.candidates))
            lat[n] = {"median_s": round(statistics.median(times), 3), "all_s": [round(x, 3) for x in times],
                      "generated_tokens": gen}
            print(f"latency_n{n}_s {lat[n]['median_s']}  (runs {lat[n]['all_s']}, tokens {gen})")
        rss = _rss_gib(server.proc.pid)
        print(f"rss_gib {rss}")
        out = {"engine": "vllm-cpu 0.32.0", "model": "tiny-random (Skywork-R1V layout)", "prepare_s": round(prepare_s, 1),
               "start_s": round(server.start_s, 1), "rss_gib": rss, "prompt_tokens": prompt,
               "max_new_tokens": args.tokens, "latency_n1_s": lat[1], "latency_n4_s": lat[4],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
