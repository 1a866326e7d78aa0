"""Every stage a few steps on the tiny model through the CLI entry point (in process), with the
tiny recipes: finite losses, only the trainable parts change, checkpoints resume exactly."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.__main__ import main

RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes" / "tiny"


def run_cli(stage: str, out: Path, *overrides: str) -> Path:
    rc = main([stage, "--config", str(RECIPES / f"{stage}.yaml"), f"output_dir={out}", *overrides])
    assert rc == 0
    return out


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        if f.name != "value_head.safetensors":
            out.update(load_file(str(f)))
    return out


def changed_keys(before: dict, after: dict) -> set[str]:
    assert set(before) == set(after)
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.fixture(scope="module")
def start_weights():
    from engine.tiny import tiny_path

    return weights(tiny_path(0))


def test_sft(tmp_path, demo_data, start_weights):
    out = run_cli("sft", tmp_path / "sft", f"data={demo_data['sft']}", "max_steps=2", "save_every=0")
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in rows)
    changed = changed_keys(start_weights, weights(out / "final"))
    assert changed and all("multi_modal_projector" in k for k in changed)  # adapter only
    assert (out / "checkpoints" / "step-000002" / "config.yaml").exists()
    assert (out / "final" / "processor_config.json").exists()


def test_mpo_and_resume_equals_uninterrupted(tmp_path, demo_data, start_weights):
    """MPO on trl.DPOTrainer from the CLI: the loss goes down, only the adapter changes, and a run
    resumed from the step-2 checkpoint (weights, optimizer, RNG, BCO delta) equals the uninterrupted one."""
    common = (f"data={demo_data['pairs']}", "max_steps=3", "keep_checkpoints=0")
    full = run_cli("mpo", tmp_path / "full", *common, "save_every=1")
    rows = metrics(full)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss", "loss_dpo", "loss_bco", "loss_sft"))
    assert rows[0]["loss_dpo"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the start
    assert rows[-1]["bco_delta"] != 0.0
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["loss_dpo"] < rows[0]["loss_dpo"]
    changed = changed_keys(start_weights, weights(full / "final"))
    assert changed and all("multi_modal_projector" in k for k in changed)
    assert "processes: 1" in (full / "config.yaml").read_text()
    # resume from the step-2 checkpoint in a fresh directory: step 3 must match the uninterrupted run
    resumed = tmp_path / "resumed"
    shutil.copytree(full / "checkpoints" / "checkpoint-2", resumed / "checkpoints" / "checkpoint-2")
    run_cli("mpo", resumed, *common, "resume=auto")
    r3 = metrics(resumed)[-1]
    assert r3["step"] == 3
    for k in ("loss", "loss_dpo", "loss_bco", "loss_sft", "bco_delta", "grad_norm", "lr", "reward_chosen",
              "reward_rejected"):
        assert r3[k] == pytest.approx(rows[-1][k], rel=1e-5, abs=1e-7), k
    a, b = weights(full / "final"), weights(resumed / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, demo_data):
    out = tmp_path_factory.mktemp("reward")
    return run_cli("reward", out, f"data={demo_data['pairs']}", "max_steps=2", "save_every=0")


def test_reward_model(reward_run, demo_data, start_weights, tiny_processor):
    from safetensors import safe_open

    from training.data import Collator, load_records
    from training.reward import RewardModel

    rows = metrics(reward_run)
    assert all(math.isfinite(r["loss"]) and "loss_bt" in r and "loss_center" in r for r in rows)
    with safe_open(str(reward_run / "final" / "value_head.safetensors"), "pt") as f:
        assert sorted(f.keys()) == ["v_head.summary.bias", "v_head.summary.weight"]
        assert f.get_tensor("v_head.summary.weight").shape == (1, 64)
        assert f.get_tensor("v_head.summary.bias").shape == (1,)
    changed = changed_keys(start_weights, weights(reward_run / "final"))
    assert changed and all("multi_modal_projector" in k for k in changed)  # + the head, saved apart
    rm = RewardModel.from_pretrained(reward_run / "final")
    batch = Collator(tiny_processor, max_length=1024, max_tiles=1).pairs(load_records(demo_data["pairs"], "pairs")[:2])
    with torch.no_grad():
        scores = rm(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
    assert scores.shape == (4,) and torch.isfinite(scores).all()


def test_grpo_with_reward_model(tmp_path, reward_run, demo_data, start_weights):
    out = run_cli("grpo", tmp_path / "grpo", f"data={demo_data['prompts']}", "max_steps=1", "num_generations=2",
                  "max_new_tokens=6", f"reward_model={reward_run / 'final'}", "reward_model_weight=1.0",
                  "kl_beta=0.05", "loss_type=sequence")
    (row,) = metrics(out)
    for k in ("reward_accuracy", "reward_format", "reward_model", "reward_total", "effective_share",
              "effective_share_fresh", "buffer_size", "replayed", "kl", "completion_length", "lr", "loss"):  # TRL's, renamed
        assert k in row and math.isfinite(row[k]), k
    assert row["effective_share_fresh"] == 1.0  # continuous scores: no vanished group
    changed = changed_keys(start_weights, weights(out / "final"))
    assert changed and all("multi_modal_projector" in k for k in changed)


def test_assemble(tmp_path):
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    out = run_cli("assemble", tmp_path / "asm")
    model = InternVLForConditionalGeneration.from_pretrained(out)
    proc = AutoProcessor.from_pretrained(out)
    tok = proc.tokenizer
    assert all(t in tok.get_vocab() for t in ("<img>", "</img>", "<IMG_CONTEXT>"))
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    # the LM's original weights and the vision tower were copied, not re-initialised
    lm = load_file(str(out / "parts" / "llm" / "model.safetensors"))
    n_old = lm["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight, n_old)
    vit = load_file(str(out / "parts" / "vision" / "model.safetensors"))
    assert torch.equal(model.model.vision_tower.encoder.layer[1].mlp.fc1.weight, vit["encoder.layers.1.mlp.fc1.weight"])
    assert model.model.multi_modal_projector.linear_1.weight.shape == (64, 64 * 4)  # engine.tiny v4 vision: hidden 64
    from PIL import Image

    from tutor.prompts import build_messages, render_text_prompt

    text = render_text_prompt(build_messages("solve", question="x?", lang="en")).replace("<image>", "<IMG_CONTEXT>")
    inputs = proc(text=text, images=[Image.new("RGB", (64, 64))], return_tensors="pt", max_patches=1)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 256
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_cli_subprocess_help_and_bad_key():
    ok = subprocess.run([sys.executable, "-m", "training", "grpo", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "ssb_replay_share" in ok.stdout and "epsilon_high" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "training", "sft", "--config", str(RECIPES / "sft.yaml"), "bogus=1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "bogus" in bad.stderr and "错误" in bad.stderr


def test_a_one_process_stage_is_left_to_rank_0_under_a_multi_process_launch(tmp_path, monkeypatch, capsys):
    """`accelerate launch --num_processes 2 -m training assemble` ran assemble on both ranks, which wrote
    the same checkpoint files at once; rank 1 now leaves it to rank 0 and writes nothing."""
    from training.__main__ import main

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "assembled"
    assert main(["assemble", "--config", "training/recipes/tiny/assemble.yaml", f"output_dir={out}"]) == 0
    assert "rank 1/2 leaves it to rank 0" in capsys.readouterr().out
    assert not out.exists()
