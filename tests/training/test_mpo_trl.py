"""MPO on trl.DPOTrainer against the project's losses (the oracle), the adapter-only reference, and
two real processes from the command line.

    python -m pytest tests/training/test_mpo_trl.py
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.config import load_config
from training.data import Collator, load_records
from training.losses import RunningMean, mpo_loss, sequence_logps

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "training" / "recipes" / "tiny" / "mpo.yaml"


def _trainer(tmp_path, demo_data, **over):
    from training.mpo import build_trainer
    from training.runs import apply_trainable, load_policy

    cfg = load_config("mpo", str(RECIPE), [f"output_dir={tmp_path}", f"data={demo_data['pairs']}",
                                            *[f"{k}={v}" for k, v in over.items()]])
    model, processor = load_policy(cfg)
    apply_trainable(model, cfg.trainable)
    records = load_records(cfg.data, "pairs")
    running = RunningMean()
    running.load_state_dict({"mean": 0.37, "count": 6})  # a delta from "earlier steps"
    return cfg, build_trainer(cfg, model, processor, records, running=running), records, processor


def test_trl_loss_and_gradients_equal_the_project_losses(tmp_path, demo_data):
    cfg, trainer, records, processor = _trainer(tmp_path, demo_data)
    model = trainer.model
    with torch.no_grad():  # move the policy away from the reference so every term is non-trivial
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    recs = records[:2]
    inputs = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
    ours = Collator(processor, max_length=cfg.max_length, max_tiles=cfg.max_tiles).pairs(recs)
    # the same tokens as the project's collator (TRL flushes left; ours pads right: compare the real ones)
    for i in range(4):
        assert inputs["input_ids"][i][inputs["attention_mask"][i].bool()].tolist() == \
            ours["input_ids"][i][ours["attention_mask"][i].bool()].tolist()
    assert torch.equal(inputs["pixel_values"], ours["pixel_values"])

    model.train()
    loss = trainer.compute_loss(model, inputs)
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])

    oracle_running = RunningMean()
    oracle_running.load_state_dict({"mean": 0.37, "count": 6})
    logp, mask, seq = sequence_logps(model, ours)
    with torch.no_grad():
        _, _, ref = sequence_logps(trainer.ref_model, ours)
    b = len(recs)
    nll = -logp[:b].sum(-1) / mask[:b].sum(-1)
    total, parts = mpo_loss(seq[:b], seq[b:], ref[:b], ref[b:], nll, beta=cfg.beta,
                            weights=(cfg.dpo_weight, cfg.bco_weight, cfg.sft_weight), running=oracle_running)
    want = torch.autograd.grad(total, [p for p in model.parameters() if p.requires_grad])
    assert parts["loss_dpo"] != pytest.approx(math.log(2), abs=1e-3)  # the policy really moved
    assert trainer.running.mean == pytest.approx(oracle_running.mean, abs=1e-6)
    assert trainer.running.count == oracle_running.count == 10
    assert loss.item() == pytest.approx(total.item(), abs=1e-5)
    for a, w in zip(grads, want, strict=True):
        assert torch.allclose(a, w, atol=1e-5, rtol=1e-4)
    logged = trainer._metrics["train"]
    for k in ("loss_dpo", "loss_bco", "loss_sft"):
        assert logged[k][-1] == pytest.approx(parts[k], abs=1e-5), k


def test_adapter_reference_is_small_and_follows_the_model(tmp_path, demo_data):
    """B1: the reference must be where the model is. A dtype change stands in for the device move
    that ``prepare`` does on a GPU (the old FrozenSnapshot stayed behind: "mixed dtype")."""
    from training.runs import SnapshotReference

    _, trainer, _, _ = _trainer(tmp_path, demo_data)
    ref = trainer.ref_model
    assert isinstance(ref, SnapshotReference)
    n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in trainer.model.parameters())
    assert ref.numel() == n_train < n_all / 10 and not list(ref.parameters())  # no second model
    trainer.model.to(torch.float64)
    inputs = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(2)]))
    inputs["pixel_values"] = inputs["pixel_values"].double()
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, inputs)
    assert torch.isfinite(loss)
    assert all(b.dtype == torch.float64 for b in ref.buffers())
    assert trainer._metrics["train"]["loss_dpo"][-1] == pytest.approx(math.log(2), abs=1e-6)  # ref == policy


def _launch(out: Path, demo_data, *extra: str, processes: int = 2, timeout: int = 600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "training", "mpo", "--config", str(RECIPE), f"output_dir={out}", f"data={demo_data['pairs']}",
           "max_steps=2", "save_every=0", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_mpo_two_processes_from_the_command_line(tmp_path, demo_data):
    out = tmp_path / "mpo2"
    r = _launch(out, demo_data)
    assert r.returncode == 0, r.stderr[-3000:]
    text = r.stdout + r.stderr
    assert '"processes": 2' in text
    ranks = _rank_lines(text)
    assert set(ranks) == {"0/2", "1/2"}  # both processes ran, in one world of size 2
    assert ranks["0/2"]["weights"] == ranks["1/2"]["weights"] and ranks["0/2"]["steps"] == "2"
    assert "processes: 2" in (out / "config.yaml").read_text()
    ck = out / "checkpoints" / "checkpoint-2"
    assert "processes: 2" in (ck / "run_config.yaml").read_text()
    states = [json.loads((ck / f"mpo_state_rank{i}.json").read_text()) for i in (0, 1)]
    assert states[0]["bco_delta"] == states[1]["bco_delta"] and states[0]["bco_delta"]["count"] > 0
    assert states[0]["world_size"] == 2
    assert (ck / "rng_state_0.pth").exists() and (ck / "rng_state_1.pth").exists()
    # the delta pooled both ranks: 2 steps x 2 ranks x 2 pairs x (chosen, rejected)
    assert states[0]["bco_delta"]["count"] == 2 * 2 * 2 * 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # only rank 0 wrote the shared file


@pytest.mark.slow
def test_mpo_two_processes_teardown_is_clean_every_time(tmp_path, demo_data):
    """Five 2-process runs in a row: every one exits 0 with both ranks' lines (the GRPO abort at exit)."""
    for i in range(5):
        r = _launch(tmp_path / f"run{i}", demo_data, "max_steps=1", "save_final=false")
        assert r.returncode == 0, (i, r.stderr[-3000:])
        assert r.stdout.count("[training] mpo rank ") == 2, i


def _rank_lines(text: str) -> dict[str, dict[str, str]]:
    out = {}
    for line in text.splitlines():
        if line.startswith("[training] mpo rank "):
            rank, rest = line.removeprefix("[training] mpo rank ").split(":", 1)
            out[rank] = dict(kv.split("=") for kv in rest.split())
    return out


@pytest.mark.slow
def test_mpo_two_processes_resume_equals_uninterrupted(tmp_path, demo_data):
    """2 processes, checkpoint at step 1, resume on 2 processes: each rank restores its RNG and BCO
    state and both end with the uninterrupted run's weights."""
    import shutil

    full = _launch(tmp_path / "full", demo_data, "save_every=1", "keep_checkpoints=0")
    assert full.returncode == 0, full.stderr[-3000:]
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "checkpoint-1", resumed / "checkpoints" / "checkpoint-1")
    again = _launch(resumed, demo_data, "save_every=1", "keep_checkpoints=0", "resume=auto")
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = _rank_lines(full.stdout), _rank_lines(again.stdout)
    assert set(a) == set(b) == {"0/2", "1/2"}
    assert a["0/2"]["weights"] == b["0/2"]["weights"] == b["1/2"]["weights"]
    s_full = json.loads((tmp_path / "full" / "checkpoints" / "checkpoint-2" / "mpo_state_rank1.json").read_text())
    s_res = json.loads((resumed / "checkpoints" / "checkpoint-2" / "mpo_state_rank1.json").read_text())
    assert s_res["bco_delta"]["count"] == s_full["bco_delta"]["count"]
    assert s_res["bco_delta"]["mean"] == pytest.approx(s_full["bco_delta"]["mean"], rel=1e-5)
