"""``python -m training.mini``: the whole Mini-R1V recipe from scratch on a CPU, then the report card.

    python -m training.mini                      # everything, into data/mini, then ship to assets/mini
    python -m training.mini --out /tmp/m --no-ship --train-size 400   # a smaller run elsewhere
    python -m training.mini --from-stage assemble                     # reuse data + stage-0 parts
    python -m training.mini --out data/mini-long --parts-from data/mini --lm-steps 3000 --vision-steps 1900 --no-ship

Stages (each timed; the commands run are recorded in report.json):
  data      render train / val / test problems (``training.mini.tasks``)
  stage0    tokenizer + language model (text-only worked solutions) and vision tower (reading),
            the two in parallel processes (``training.mini.stage0``)
  assemble  ``python -m training assemble`` (recipes/mini/assemble.yaml)
  sft       adapter-only and adapter+LM runs from the same start and budget; the one better on
            *val* continues (``python -m training sft``)
  pairs     the chosen model samples 4 answers to train problems; right vs wrong by tutor.answers
  mpo       ``python -m training mpo`` on those pairs
  reward    ``python -m training reward`` (Bradley-Terry) on the same pairs
  grpo      with SSB and without, same start, seed and budget (``python -m training grpo``)
  eval      held-out test: one sample per stage; n = 8 with first / vote / reward / reward+vote
  ship      final policy -> assets/mini, reward model -> assets/mini/reward; REPORT.md, report.json, PNG
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "training" / "recipes" / "mini"
ASSETS = ROOT / "assets" / "mini"
STAGES = ("data", "stage0", "assemble", "sft", "pairs", "mpo", "reward", "grpo", "eval", "ship")

log = logging.getLogger("training.mini")


class Driver:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / "report.json"
        self.report = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.report.setdefault("seed", args.seed)
        self.report.setdefault("stages", {})
        self.report.setdefault("commands", [])

    # ------------------------------------------------------------------ helpers

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.report, indent=2, ensure_ascii=False))

    def stage(self, name: str, seconds: float, **metrics) -> None:
        self.report["stages"][name] = {"wall_s": round(seconds, 1), **metrics}
        self.save()
        log.info("stage %s done in %.0f s: %s", name, seconds, {k: v for k, v in metrics.items() if k != "curve"})

    def command(self, stage: str, recipe: str, **overrides) -> list[str]:
        """``python -m training STAGE --config RECIPE k=v ...`` (recorded in the report)."""
        cmd = [sys.executable, "-m", "training", stage, "--config", str(RECIPES / recipe)]
        cmd += [f"{k}={v}" for k, v in overrides.items()]
        self.report["commands"].append(" ".join(["python"] + cmd[1:]).replace(str(ROOT) + "/", ""))
        return cmd

    def parallel(self, jobs: dict[str, list[str]]) -> dict[str, float]:
        """Run the commands at once, one thread each when there are several; wall time of each."""
        threads = str(self.args.threads if len(jobs) == 1 else max(1, self.args.threads // len(jobs)))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads}
        procs, t0, walls = {}, time.perf_counter(), {}
        for name, cmd in jobs.items():
            log.info("running: %s", " ".join(cmd[1:]))
            logf = open(self.out / f"{name.replace('+', '-').replace(' ', '-')}.log", "w")  # noqa: SIM115
            procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT), logf)
        while procs:
            for name, (proc, logf) in list(procs.items()):
                if proc.poll() is not None:
                    walls[name] = time.perf_counter() - t0
                    logf.close()
                    del procs[name]
                    if proc.returncode != 0:
                        for other, _ in procs.values():
                            other.kill()
                        raise RuntimeError(f"{name} failed: see {logf.name}")
            time.sleep(0.5)
        return walls

    def cli(self, stage: str, recipe: str, **overrides) -> float:
        """One ``python -m training`` stage with all threads; returns its wall time."""
        return self.parallel({f"{stage}-{Path(recipe).stem}": self.command(stage, recipe, **overrides)})[
            f"{stage}-{Path(recipe).stem}"]

    def p(self, *parts: str) -> str:
        return str(self.out.joinpath(*parts))

    def evaluate(self, name: str, model_dir: str, splits=("val", "test")) -> dict:
        from training.mini import evaluate

        model, processor = evaluate.load(model_dir)
        res = {}
        for split in splits:
            groups = evaluate.sample(model_dir, self.p("data", f"{split}.jsonl"), n=1, seed=self.args.seed,
                                     model=model, processor=processor, limit=self.args.eval_limit)
            res[split] = round(evaluate.accuracy(groups), 4)
            if split == "test":  # how much of the error is reading the photo (the restated problem)
                self.report.setdefault("reading", {})[name] = evaluate.reading(groups)
        self.report.setdefault("accuracy", {})[name] = res
        self.save()
        log.info("accuracy after %s: %s", name, res)
        return res

    # ------------------------------------------------------------------ stages

    def run_data(self) -> None:
        from training.mini.tasks import write_split

        t0 = time.perf_counter()
        if self.args.parts_from:  # the earlier run's photos, so its parts continue on the data they know
            src = (Path(self.args.parts_from) / "data").resolve()
            if not (src / "train.jsonl").exists():
                raise SystemExit(f"--parts-from {self.args.parts_from}: no data/train.jsonl there")
            dst = self.out / "data"
            if dst.is_symlink() or dst.exists():
                if dst.resolve() != src:
                    raise SystemExit(f"{dst} exists and is not {src}: use an empty --out")
            else:
                dst.symlink_to(src, target_is_directory=True)
            self.stage("data", time.perf_counter() - t0, reused=str(src))
            return
        sizes = {"train": self.args.train_size, "val": self.args.eval_size, "test": self.args.eval_size}
        for split, count in sizes.items():
            write_split(self.p("data"), split, count, workers=self.args.threads)
        self.stage("data", time.perf_counter() - t0, sizes=sizes)

    def run_stage0(self) -> None:
        """The LM and the vision tower, in two processes at once (``python -m training.mini.stage0``)."""
        t0 = time.perf_counter()
        parts = {"lm": "llm", "vision": "vision"}
        before = {}
        if self.args.parts_from:  # continue the earlier run's parts (their steps and time add to these)
            for part, name in parts.items():
                m = json.loads((Path(self.args.parts_from) / name / "stage0_metrics.json").read_text())
                before[part] = {"from": str(Path(self.args.parts_from) / name), "steps": m.get("total_steps", m["steps"]),
                                "wall_s": m.get("total_wall_s", m["wall_s"])}
            prior = Path(self.args.parts_from) / "report.json"
            data_s = json.loads(prior.read_text())["stages"].get("data", {}).get("wall_s", 0.0) if prior.exists() else 0.0
            # what producing the continued parts cost before this run: rendering + the longer of the two parts
            self.report["stage0_continued"] = {**before, "prior_wall_s": round(
                data_s + max(b["wall_s"] for b in before.values()), 1)}
        jobs = {f"stage0-{part}": [sys.executable, "-m", "training.mini.stage0", part, str(self.out), str(steps),
                                   str(self.args.seed)] + ([before[part]["from"]] if before else [])
                + (["--layout-weight", str(self.args.layout_weight)] if part == "vision" and self.args.layout_weight != 1.0
                   else [])
                for part, steps in (("lm", self.args.lm_steps), ("vision", self.args.vision_steps))}
        for cmd in jobs.values():
            self.report["commands"].append(" ".join(["python"] + cmd[1:]).replace(str(ROOT) + "/", ""))
        walls = self.parallel(jobs)
        metrics = {part: json.loads((self.out / name / "stage0_metrics.json").read_text())
                   for part, name in parts.items()}
        for part, prior in before.items():  # the totals over both runs, saved beside the part
            metrics[part]["total_steps"] = prior["steps"] + metrics[part]["steps"]
            metrics[part]["total_wall_s"] = round(prior["wall_s"] + metrics[part]["wall_s"], 1)
            (self.out / parts[part] / "stage0_metrics.json").write_text(json.dumps(metrics[part], indent=2))
        self.stage("stage0", time.perf_counter() - t0, per_run_wall_s={k: round(v, 1) for k, v in walls.items()},
                   **metrics)

    def run_assemble(self) -> None:
        s = self.cli("assemble", "assemble.yaml", vision=self.p("vision"), llm=self.p("llm"),
                     output_dir=self.p("assembled"), seed=self.args.seed)
        self.stage("assemble", s)
        self.evaluate("assembled", self.p("assembled"))

    def run_sft(self) -> None:
        """Adapter-only and adapter+LM from the same start, data and budget, at the same time."""
        runs = {k: v for k, v in {"adapter": "sft-adapter.yaml", "adapter+llm": "sft-adapter-llm.yaml"}.items()
                if k in self.args.sft_runs.split(",")}
        t0 = time.perf_counter()
        walls = self.parallel({name: self.command("sft", recipe, model=self.p("assembled"),
                                                  data=self.p("data", "train.jsonl"),
                                                  output_dir=self.p(Path(recipe).stem),
                                                  max_steps=self.args.sft_steps, seed=self.args.seed)
                               for name, recipe in runs.items()})
        wall = time.perf_counter() - t0
        val = {name: self.evaluate(f"sft ({name})", self.p(Path(recipe).stem, "final"))["val"]
               for name, recipe in runs.items()}
        chosen = max(val, key=lambda k: (val[k], k == "adapter"))  # ties: R1V2's choice, adapter only
        self.report["sft_choice"] = {"chosen": chosen, "by": "val accuracy", "val": val}
        self.stage("sft", wall, per_run_wall_s={k: round(v, 1) for k, v in walls.items()}, chosen=chosen)

    def sft_model(self) -> tuple[str, str]:
        chosen = self.report["sft_choice"]["chosen"]
        name = "sft-adapter" if chosen == "adapter" else "sft-adapter-llm"
        return self.p(name, "final"), "[adapter]" if chosen == "adapter" else "[adapter,llm]"

    def run_pairs(self) -> None:
        from training.mini import evaluate

        t0 = time.perf_counter()
        model_dir, _ = self.sft_model()
        groups = evaluate.sample(model_dir, self.p("data", "train.jsonl"), n=4, seed=self.args.seed + 1,
                                 temperature=1.0, top_p=1.0, limit=self.args.pair_prompts)
        rng = random.Random(self.args.seed)
        lines, own_chosen, gold_chosen, all_right = [], 0, 0, 0
        train = {json.loads(x)["images"][0]: json.loads(x) for x in
                 Path(self.p("data", "train.jsonl")).read_text(encoding="utf-8").splitlines() if x.strip()}
        for g in groups:
            right = [t for t, c in zip(g.texts, g.correct, strict=True) if c == 1.0]
            wrong = [t for t, c in zip(g.texts, g.correct, strict=True) if c != 1.0]
            if not wrong:
                all_right += 1
                continue
            rel = str(g.record.images[0].relative_to(Path(self.p("data")).resolve()))
            rec = train[rel]
            if right:
                chosen, own_chosen = rng.choice(right), own_chosen + 1
            else:  # no right sample: the worked gold solution is the chosen side
                chosen, gold_chosen = rec["response"], gold_chosen + 1
            base = {k: rec[k] for k in ("question", "subject", "problem_type", "lang", "mode", "answer")}
            lines.append(json.dumps({**base, "images": ["data/" + rel], "chosen": chosen.strip(),
                                     "rejected": rng.choice(wrong).strip() or "</think>"}, ensure_ascii=False))
        Path(self.p("pairs.jsonl")).write_text("\n".join(lines) + "\n", encoding="utf-8")
        acc = sum(sum(g.correct) for g in groups) / max(1, 4 * len(groups))
        self.stage("pairs", time.perf_counter() - t0, prompts=len(groups), pairs=len(lines), own_chosen=own_chosen,
                   gold_chosen=gold_chosen, all_right_groups=all_right, sample_accuracy=round(acc, 4))

    def run_mpo(self) -> None:
        """MPO and the reward model both start from the SFT model and read the same pairs: at once."""
        model_dir, trainable = self.sft_model()
        t0 = time.perf_counter()
        walls = self.parallel({
            "mpo": self.command("mpo", "mpo.yaml", model=model_dir, data=self.p("pairs.jsonl"),
                                output_dir=self.p("mpo"), trainable=trainable, max_steps=self.args.mpo_steps,
                                seed=self.args.seed),
            "reward": self.command("reward", "reward.yaml", model=model_dir, data=self.p("pairs.jsonl"),
                                   output_dir=self.p("reward"), max_steps=self.args.reward_steps,
                                   seed=self.args.seed)})
        rows = [json.loads(x) for x in Path(self.p("reward", "metrics.jsonl")).read_text().splitlines() if x]
        self.stage("mpo", walls["mpo"])
        self.stage("reward", walls["reward"], final=rows[-1] if rows else {},
                   note="ran at the same time as mpo (one thread each)")
        self.report["stages"]["mpo"]["note"] = f"mpo and reward ran at once: {time.perf_counter() - t0:.0f} s together"
        self.evaluate("mpo", self.p("mpo", "final"))

    def run_reward(self) -> None:
        """Trained together with MPO (``run_mpo``); kept as a stage name to resume from."""

    def run_grpo(self) -> None:
        """GRPO with and without SSB: same start, data order, seed and budget, run at the same time."""
        _, trainable = self.sft_model()
        names = ("grpo-ssb", "grpo-nossb")
        t0 = time.perf_counter()
        walls = self.parallel({name: self.command("grpo", f"{name}.yaml", model=self.p("mpo", "final"),
                                                  data=self.p("data", "train.jsonl"), output_dir=self.p(name),
                                                  trainable=trainable, max_steps=self.args.grpo_steps,
                                                  seed=self.args.seed) for name in names})
        wall = time.perf_counter() - t0
        shares = {}
        for name in names:
            rows = [json.loads(x) for x in Path(self.p(name, "metrics.jsonl")).read_text().splitlines() if x]
            shares[name] = {"effective_share": [r.get("effective_share", 0.0) for r in rows],
                            "effective_share_fresh": [r.get("effective_share_fresh", 0.0) for r in rows],
                            "accuracy_reward": [r.get("reward_accuracy", 0.0) for r in rows]}
            self.evaluate(name, self.p(name, "final"))
        self.report["grpo_curves"] = shares
        self.stage("grpo", wall, per_run_wall_s={k: round(v, 1) for k, v in walls.items()})

    def final_choice(self) -> str:
        """The shipped policy: the best on *val* among every trained stage (ties: the later stage)."""
        acc = self.report["accuracy"]
        dirs = {"mpo": "mpo", "grpo-ssb": "grpo-ssb", "grpo-nossb": "grpo-nossb",
                "sft (adapter)": "sft-adapter", "sft (adapter+llm)": "sft-adapter-llm"}
        order = [k for k in ("sft (adapter)", "sft (adapter+llm)", "mpo", "grpo-nossb", "grpo-ssb") if k in acc]
        best = max(order, key=lambda k: (acc[k]["val"], order.index(k)))
        self.report["final_choice"] = {"chosen": best, "by": "val accuracy"}
        return self.p(dirs[best], "final")

    def run_eval(self) -> None:
        from training.mini import evaluate

        t0 = time.perf_counter()
        final = self.final_choice()
        groups = evaluate.sample(final, self.p("data", "test.jsonl"), n=8, seed=self.args.seed + 2,
                                 limit=self.args.eval_limit)
        scores = evaluate.reward_scores(self.p("reward", "final"), groups)
        res = {f"n={n}": evaluate.rerank_accuracy(groups, scores, n) for n in (4, 8)}
        res["single_sample_mean"] = round(sum(sum(g.correct) for g in groups) / (8 * len(groups)), 4)
        res["reading"] = evaluate.reading(groups)
        self.report["rerank"] = res
        self.stage("eval", time.perf_counter() - t0, model=final)

    def run_ship(self) -> None:
        from training.mini import report

        t0 = time.perf_counter()
        if not self.args.no_ship:
            final = Path(self.final_choice())
            if ASSETS.exists():
                for p in ASSETS.iterdir():
                    if p.name not in ("REPORT.md", "runs"):  # runs/: report cards of earlier runs
                        shutil.rmtree(p) if p.is_dir() else p.unlink()
            ASSETS.mkdir(parents=True, exist_ok=True)
            for f in final.iterdir():
                if f.suffix in (".json", ".safetensors", ".jinja", ".txt") and f.name != "training_config.json":
                    shutil.copy(f, ASSETS / f.name)
            rdir = ASSETS / "reward"
            rdir.mkdir(exist_ok=True)
            for f in Path(self.p("reward", "final")).iterdir():
                if f.suffix in (".json", ".safetensors", ".jinja", ".txt") and f.name != "training_config.json":
                    shutil.copy(f, rdir / f.name)
            ex = ASSETS / "examples"
            ex.mkdir(exist_ok=True)
            test = [json.loads(x) for x in Path(self.p("data", "test.jsonl")).read_text(encoding="utf-8").splitlines()]
            listing = []
            from training.mini.examples import pick

            for rec in pick(test):  # held-out photos to try the preset on: each (language, kind) once
                name = Path(rec["images"][0]).name
                shutil.copy(self.p("data", rec["images"][0]), ex / name)
                listing.append({"image": name, "statement": rec["statement"], "answer": rec["answer"],
                                "lang": rec["lang"], "problem_type": rec["problem_type"]})
            (ex / "examples.json").write_text(json.dumps(listing, indent=2, ensure_ascii=False), encoding="utf-8")
            self.report["shipped"] = {"policy": str(final), "size_mb": round(
                sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file()) / 2**20, 2)}
        self.stage("ship", time.perf_counter() - t0)
        # the whole recipe's wall time (stages, the evaluations between them, process starts), so far
        self.report["total_wall_s"] = round(self.prior_wall_s + time.perf_counter() - self.t0, 1)
        report.write(self.report, ASSETS if not self.args.no_ship else self.out)

    def run(self) -> None:
        start = STAGES.index(self.args.from_stage)
        stop = STAGES.index(self.args.to_stage)
        starts = self.report.setdefault("stage_start_s", {})  # recipe time when each stage began
        # resuming: the recipe's time is what the kept stages took, and their commands are the ones kept
        prior = starts.get(self.args.from_stage, self.report.get("total_wall_s", 0.0)) if start else 0.0
        self.report["commands"] = [c for c in self.report["commands"] if STAGES.index(_stage_of(c)) < start]
        for later in STAGES[start:]:
            starts.pop(later, None)
        self.t0, self.prior_wall_s = time.perf_counter(), prior
        for name in STAGES[start:stop + 1]:
            starts[name] = round(self.prior_wall_s + time.perf_counter() - self.t0, 1)
            getattr(self, f"run_{name}")()
        self.report["total_wall_s"] = round(self.prior_wall_s + time.perf_counter() - self.t0, 1)
        self.save()


def _stage_of(command: str) -> str:
    """The recipe stage a recorded command belongs to (``python -m training sft ...`` -> ``sft``)."""
    words = command.split()
    module = words[2] if len(words) > 2 else ""
    if module == "training.mini.stage0":
        return "stage0"
    return words[3] if module == "training" and len(words) > 3 and words[3] in STAGES else "data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.mini", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "data" / "mini"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-stage", default="data", choices=STAGES)
    ap.add_argument("--to-stage", default="ship", choices=STAGES)
    ap.add_argument("--no-ship", action="store_true", help="write the report under --out, leave assets/ alone")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=6000)
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--eval-limit", type=int, default=150, help="problems per held-out evaluation")
    ap.add_argument("--parts-from", default="", help="continue stage 0 from this earlier run's llm/ and vision/ "
                    "(and reuse its data/) instead of starting the parts from scratch")
    ap.add_argument("--lm-steps", type=int, default=1700)
    ap.add_argument("--vision-steps", type=int, default=900)
    ap.add_argument("--layout-weight", type=float, default=1.0, help="weight of the vision tower's per-patch "
                    "layout loss against its reading loss in stage 0 (3.0: run v5, assets/mini/runs/v5)")
    ap.add_argument("--sft-runs", default="adapter,adapter+llm", help="which SFT runs to compare")
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--pair-prompts", type=int, default=96)
    ap.add_argument("--mpo-steps", type=int, default=30)
    ap.add_argument("--reward-steps", type=int, default=30)
    ap.add_argument("--grpo-steps", type=int, default=16)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    driver = Driver(args)
    # how this report was made: every invocation that wrote it, in order (a resumed run has several)
    driver.report.setdefault("invocations", []).append(
        " ".join(["python -m training.mini", *(argv if argv is not None else sys.argv[1:])]))
    driver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
