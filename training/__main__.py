"""Command line: ``python -m training STAGE --config FILE.yaml [key=value ...]``.

    python -m training sft --config training/recipes/tiny/sft.yaml max_steps=2
    python -m training grpo --config training/recipes/tiny/grpo.yaml ssb=false
    python -m training sft --help                       # every setting of the stage, with its help
    python -m training plan --config training/recipes/full/r1v2-38b-grpo.yaml   # GRPO memory per GPU
    accelerate launch --config_file training/recipes/full/accelerate_fsdp2.yaml -m training mpo \\
        --config training/recipes/full/r1v2-38b-mpo.yaml

STAGE is one of assemble, sft, mpo, reward, grpo, eval (``training.eval``, which also takes
``--key value`` flags). Settings: the stage's dataclass defaults (a tiny CPU job), then the YAML
file, then the ``key=value`` overrides (``training.config``). Bad settings or data exit
with status 2 and the message in English and Chinese.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from training.config import STAGE_CONFIGS, help_text, load_config
from tutor.errors import TutorError

ONE_PROCESS = ("assemble", "eval")  # no training step: rank 0 alone, the others exit


def run_stage(stage: str, cfg) -> object:
    if stage == "assemble":
        from training.assemble import assemble

        return assemble(cfg)
    if stage == "sft":
        from training.sft import train_sft

        return train_sft(cfg)
    if stage == "mpo":
        from training.mpo import train_mpo

        return train_mpo(cfg)
    if stage == "eval":
        from training.eval import run_eval

        return run_eval(cfg)
    if stage == "reward":
        from training.reward import train_reward

        return train_reward(cfg)
    from training.grpo import train_grpo

    return train_grpo(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0],
                                     add_help=False)
    parser.add_argument("stage", choices=sorted(STAGE_CONFIGS), help="training stage")
    parser.add_argument("--config", default=None, help="YAML recipe (keys = the stage's config fields)")
    parser.add_argument("-h", "--help", action="store_true", help="show the stage's settings and exit")
    parser.add_argument("overrides", nargs="*", help="key=value settings that win over the YAML")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plan"]:  # memory per GPU of a GRPO recipe (training.plan)
        from training.plan import main as plan_main

        return plan_main(argv[1:])
    if argv[:1] == ["eval"]:
        from training.eval import flags_to_overrides

        argv = flags_to_overrides(argv)
    args = parser.parse_intermixed_args(argv)
    if args.help:
        print(help_text(args.stage))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if args.stage in ONE_PROCESS and rank > 0:  # under `accelerate launch`: every rank would write the same files
        print(f"[training] {args.stage} runs in one process: rank {rank}/{world} leaves it to rank 0")
        return 0
    try:
        cfg = load_config(args.stage, args.config, args.overrides)
        result = run_stage(args.stage, cfg)
        from training.runs import end_distributed

        end_distributed()
    except TutorError as e:
        print(f"error: {e.message('en')}\n错误：{e.message('zh')}", file=sys.stderr)
        if e.detail:
            print(f"detail: {e.detail}", file=sys.stderr)
        return 2
    out = getattr(result, "out", result)
    print(f"[training] {args.stage} done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
