"""GRPO on trl.GRPOTrainer with the SSB hook, through the CLI: one process in-process, two processes
as a real gloo pair under ``accelerate launch`` (a subprocess), rewards, replay, resume, M1 and B4."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training import grpo_rewards
from tests.training.test_stages import RECIPES, changed_keys, metrics, run_cli, weights

ROOT = Path(__file__).resolve().parents[2]
R = "tests.training.grpo_rewards"


@pytest.fixture(scope="module")
def start_weights():
    from engine.tiny import tiny_path

    return weights(tiny_path(0))


def test_tiny_grpo_one_process_trains_the_adapter(tmp_path, demo_data, start_weights, capsys):
    grpo_rewards.SEEN.clear()
    out = run_cli("grpo", tmp_path / "g", f"data={demo_data['prompts']}", "max_steps=2", "save_every=0",
                  f"extra_rewards=[{R}:text_hash,{R}:recording]")
    assert '"processes": 1' in capsys.readouterr().out
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for k in ("loss", "reward_accuracy", "reward_format", "reward_total", "effective_share",
                  "effective_share_fresh", "replayed", "buffer_size", "completion_length", "lr", "grad_norm"):
            assert k in r and math.isfinite(r[k]), k
        assert r["rewards/text_hash/mean"] > 0  # each reward function logged on its own
    assert rows[0]["effective_share_fresh"] > 0 and rows[0]["grad_norm"] > 0
    changed = changed_keys(start_weights, weights(out / "final"))
    assert changed and all("multi_modal_projector" in k for k in changed)  # adapter only
    rank = json.loads((out / "ranks" / "rank-0.json").read_text())
    assert rank["world"] == 1 and rank["backward_calls"] == 2
    # the reward functions got the completions as assistant messages and the dataset's columns
    seen = grpo_rewards.SEEN[0]
    assert len(seen["completions"]) == 4 and seen["completions"][0][0]["role"] == "assistant"
    assert len(seen["answer"]) == 4 and len(seen["answer_kind"]) == 4 and len(seen["record"]) == 4
    assert seen["record"][0] == seen["record"][3]  # one prompt, num_generations=4 samples


def test_ssb_fills_vanished_slots_with_replays_and_resumes(tmp_path, demo_data):
    common = (f"data={demo_data['prompts']}", "max_steps=2", "save_every=1", "keep_checkpoints=0",
              f"extra_rewards=[{R}:alternate]", "ssb_replay_share=0.5")
    full = run_cli("grpo", tmp_path / "full", *common)
    r1, r2 = metrics(full)
    assert r1["effective_share_fresh"] == 1.0 and r1["buffer_size"] == 4.0 and r1["replayed"] == 0.0
    # step 2: every group vanished; 2 of the 4 slots (replay share 0.5) hold buffered samples
    assert r2["effective_share_fresh"] == 0.0 and r2["replayed"] == 2.0 and r2["effective_share"] == 0.5
    assert math.isfinite(r2["loss"]) and r2["grad_norm"] > 0  # the replays carried a gradient
    ck = full / "checkpoints" / "checkpoint-1"
    assert (ck / "ssb-rank0.pt").exists()
    resumed = tmp_path / "resumed"
    shutil.copytree(ck, resumed / "checkpoints" / "checkpoint-1")
    run_cli("grpo", resumed, *common, "resume=auto")
    again = metrics(resumed)[-1]
    assert again["step"] == 2 and again["replayed"] == 2.0 and again["buffer_size"] == r2["buffer_size"]
    for k in ("loss", "grad_norm", "num_tokens", "entropy", "clip_fraction"):  # the same step as uninterrupted
        assert again[k] == pytest.approx(r2[k], rel=1e-5, abs=1e-7), k


def test_ssb_on_with_empty_buffer_equals_ssb_off(tmp_path, demo_data):
    """M1: the slots and the token count the loss divides by are the same with SSB on and off."""
    common = (f"data={demo_data['prompts']}", "max_steps=1", "save_every=0", f"extra_rewards=[{R}:text_hash]")
    on = metrics(run_cli("grpo", tmp_path / "on", *common, "ssb=true"))[0]
    off = metrics(run_cli("grpo", tmp_path / "off", *common, "ssb=false"))[0]
    assert on["effective_share_fresh"] == off["effective_share_fresh"] and on["replayed"] == 0.0
    for k in ("loss", "grad_norm", "reward_total", "num_tokens"):
        assert on[k] == pytest.approx(off[k], rel=1e-5, abs=1e-8), k
    a, b = weights(tmp_path / "on" / "final"), weights(tmp_path / "off" / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)


def launch_two(out: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "training", "grpo",
           "--config", str(RECIPES / "grpo.yaml"), f"output_dir={out}", *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# default run: 18 s on an idle machine here, 55-97 s while other jobs shared the 2 cores
def test_two_processes_one_rank_all_vanished(tmp_path, demo_data, start_weights):
    """B4: rank 1's groups all vanish and its buffer stays empty; both ranks still take every step."""
    out = tmp_path / "two"
    p = launch_two(out, f"data={demo_data['prompts']}", "max_steps=2", "save_every=2",
                   f"extra_rewards=[{R}:rank0_only]")
    assert p.returncode == 0, p.stderr[-3000:]
    assert '"processes": 2' in p.stdout
    ranks = [json.loads((out / "ranks" / f"rank-{i}.json").read_text()) for i in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [r["backward_calls"] for r in ranks] == [2, 2]  # every rank stepped, none skipped backward
    assert ranks[0]["buffer_size"] > 0 and ranks[1]["buffer_size"] == 0
    # M4: each rank's buffer in its own file (rank 0's holds samples, rank 1's none)
    saved = [torch.load(out / "checkpoints" / "checkpoint-2" / f"ssb-rank{i}.pt", weights_only=False) for i in (0, 1)]
    assert len(saved[0]["items"]) == ranks[0]["buffer_size"] > 0 and saved[1]["items"] == []
    rows = metrics(out)
    assert [r["effective_share_fresh"] for r in rows] == [0.5, 0.5]  # gathered: rank 0 all, rank 1 none
    changed = changed_keys(start_weights, weights(out / "final"))
    assert changed and all("multi_modal_projector" in k for k in changed)


@pytest.mark.slow  # the shipped mini model: ~1 min a recipe here
@pytest.mark.parametrize("recipe", ["grpo-ssb", "grpo-nossb"])
def test_mini_grpo_recipes_run_on_trl(tmp_path, recipe):
    """The mini's two GRPO stages, one short step each on the shipped mini model and its own data."""
    from training.mini import tasks

    data = tasks.write_split(tmp_path / "data", "val", 4)
    rc = main_cli("grpo", ROOT / "training" / "recipes" / "mini" / f"{recipe}.yaml", "model=mini", f"data={data}",
                  f"output_dir={tmp_path / recipe}", "max_steps=1", "batch_size=1", "num_generations=4",
                  "max_new_tokens=8", "micro_batch=2")
    assert rc == 0
    (row,) = metrics(tmp_path / recipe)
    assert math.isfinite(row["loss"]) and "effective_share" in row and "reward_accuracy" in row
    assert (tmp_path / recipe / "final" / "config.json").is_file()


def main_cli(stage: str, recipe: Path, *overrides: str) -> int:
    from training.__main__ import main

    return main([stage, "--config", str(recipe), *overrides])


def test_plan_prints_the_memory_table_from_the_recipe(capsys):
    from training.__main__ import main
    from training.config import load_config
    from training.plan import grpo_memory

    full = ROOT / "training" / "recipes" / "full" / "r1v2-38b-grpo.yaml"
    assert main(["plan", "--config", str(full)]) == 0
    out = capsys.readouterr().out
    assert "completion log-probs" in out and "reward model (bf16" in out and "fits" in out
    one = dict((n, g) for n, g, _ in grpo_memory(load_config("grpo", full), gpus=8, gpu="H200"))
    all16 = dict((n, g) for n, g, _ in grpo_memory(load_config("grpo", full, ["micro_batch=16"]), gpus=8, gpu="H200"))
    # B2: 16 sequences in one micro-batch is 16x the activations and logits of micro_batch 1
    assert all16["activations (checkpointed)"] == pytest.approx(16 * one["activations (checkpointed)"])
    assert sum(g for n, g in all16.items() if not n.startswith("  ")) > 141
    tiny = dict((n, g) for n, g, _ in grpo_memory(load_config("grpo", RECIPES / "grpo.yaml", ["model=" + str(tiny_dir())])))
    assert tiny["frozen policy weights (bf16, sharded)"] < 0.01  # the tiny checkpoint's own shape


def tiny_dir():
    from engine.tiny import tiny_path

    return tiny_path(0)


@pytest.mark.parametrize("loss_type", ["token", "sequence"])
def test_trl_loss_equals_the_project_oracle(tmp_path, demo_data, loss_type):
    """TRL's GRPO loss (dapo / grpo) on a fixed batch equals ``training.losses.grpo_loss`` to 1e-5,
    clipping on both sides included (ratios far from 1)."""
    from training.config import load_config
    from training.grpo import build_trainer
    from training.losses import grpo_loss

    cfg = load_config("grpo", RECIPES / "grpo.yaml", [f"data={demo_data['prompts']}", f"output_dir={tmp_path}",
                                                      f"loss_type={loss_type}", "epsilon=0.2", "epsilon_high=0.28"])
    trainer, *_ = build_trainer(cfg)
    g = torch.Generator().manual_seed(0)
    b, t = 4, 7
    logp = (-torch.rand(b, t, generator=g) * 3).requires_grad_(True)
    old = logp.detach() + torch.randn(b, t, generator=g) * 0.4  # ratios from ~0.3 to ~3: both clips active
    adv = torch.tensor([1.0, -0.5, 0.0, 2.0])
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros(b, t), None)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() per step
    inputs = {"prompt_ids": torch.ones(b, 3, dtype=torch.long), "prompt_mask": torch.ones(b, 3, dtype=torch.long),
              "completion_ids": torch.ones(b, t, dtype=torch.long), "completion_mask": mask, "advantages": adv,
              "old_per_token_logps": old, "num_items_in_batch": mask.sum()}
    trl_loss = trainer._compute_loss(trainer.model, inputs)
    ours, _ = grpo_loss(logp, old, adv, mask, epsilon=0.2, epsilon_high=0.28, loss_type=loss_type)
    assert float(trl_loss) == pytest.approx(float(ours), abs=1e-5)
    g1 = torch.autograd.grad(trl_loss, logp, retain_graph=True)[0]
    g2 = torch.autograd.grad(ours, logp)[0]
    assert torch.allclose(g1, g2, atol=1e-6)
