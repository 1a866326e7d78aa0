"""Configs (YAML + overrides), JSONL loading with line numbers, prompt rendering, collation."""

import json

import pytest
from PIL import Image

from training.config import GRPOConfig, load_config, parse_overrides
from training.data import Collator, batch_indices, demo_dataset, load_records
from tutor.errors import InputError
from tutor.prompts import build_messages, render_text_prompt


def test_overrides_and_types(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("max_steps: 3\nlearning_rate: 1.0e-4\ntrainable: [adapter]\n")
    cfg = load_config("grpo", y, ["max_steps=5", "trainable=[adapter,llm]", "ssb=false", "epsilon_high=0.28"])
    assert isinstance(cfg, GRPOConfig)
    assert (cfg.max_steps, cfg.learning_rate, cfg.trainable, cfg.ssb, cfg.epsilon_high) == (
        5, 1e-4, ["adapter", "llm"], False, 0.28)
    assert parse_overrides(["a=1", "b=x,y"]) == {"a": 1, "b": "x,y"}
    with pytest.raises(InputError, match="Unknown config keys"):
        load_config("sft", None, ["nope=1"])
    with pytest.raises(InputError, match="expects"):
        load_config("sft", None, ["max_steps=abc"])
    with pytest.raises(InputError, match="num_generations"):
        load_config("grpo", None, ["num_generations=1"])
    with pytest.raises(InputError, match="not key=value"):
        parse_overrides(["oops"])


def _write(tmp_path, rows):
    Image.new("RGB", (120, 80), "white").save(tmp_path / "a.png")
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return p


GOOD = {"images": ["a.png"], "question": "求 x", "subject": "math", "lang": "zh", "response": "想一想</think>\\boxed{2}"}


def test_bad_lines_are_named(tmp_path):
    p = _write(tmp_path, [GOOD, "", "{not json"])
    with pytest.raises(InputError, match=r"d\.jsonl, line 3: not valid JSON"):
        load_records(p, "sft")
    p = _write(tmp_path, [GOOD, {**GOOD, "images": ["missing.png"]}])
    with pytest.raises(InputError, match="line 2: image not found: missing.png"):
        load_records(p, "sft")
    p = _write(tmp_path, [{**GOOD, "chosen": "a"}])
    with pytest.raises(InputError, match="line 1: 'rejected'"):
        load_records(p, "pairs")
    p = _write(tmp_path, [GOOD])
    with pytest.raises(InputError, match="'answer'"):
        load_records(p, "prompts")
    p = _write(tmp_path, [{**GOOD, "subject": "art"}])
    with pytest.raises(InputError, match="line 1: Unknown subject") as e:
        load_records(p, "sft")
    assert "第 1 行" in e.value.message("zh")
    p = _write(tmp_path, [{"images": ["a.png"], "messages": [{"role": "user", "content": "hi"}], "response": "x"}])
    with pytest.raises(InputError, match="0 image parts but 'images' lists 1"):
        load_records(p, "sft")


def test_prompt_is_rendered_by_tutor(tmp_path):
    p = _write(tmp_path, [{**GOOD, "problem_type": "fill_blank"}])
    (rec,) = load_records(p, "sft")
    expected = render_text_prompt(build_messages("solve", question="求 x", subject="math", problem_type="fill_blank",
                                                 lang="zh", n_images=1))
    assert rec.prompt_text() == expected
    assert rec.images == [(tmp_path / "a.png").resolve()]


def test_collation_keeps_image_tokens(tmp_path, tiny_processor):
    processor = tiny_processor
    p = _write(tmp_path, [GOOD, {**GOOD, "response": "长" * 400 + "</think>\\boxed{3}"}])
    recs = load_records(p, "sft")
    col = Collator(processor, max_length=900, max_tiles=1)
    batch = col.sft(recs)
    img_id = col.image_token_id
    assert batch["input_ids"].shape[1] <= 900
    for row, lab in zip(batch["input_ids"], batch["labels"], strict=True):
        assert int((row == img_id).sum()) == 256  # one tile, never cut
        assert int((lab == img_id).sum()) == 0  # prompt tokens are not trained on
    assert batch["pixel_values"].shape[0] == 2
    prompt_len = len(col.encode_prompt(recs[0]).ids)
    text = processor.tokenizer.decode(batch["labels"][0][prompt_len:][batch["labels"][0][prompt_len:] != -100])
    assert text.endswith("<|im_end|>") and "boxed{2}" in text
    assert int((batch["labels"][1] != -100).sum()) == 900 - prompt_len  # the long response was cut at its end
    with pytest.raises(InputError, match="image tokens are never cut"):
        Collator(processor, max_length=200, max_tiles=1).sft(recs[:1])


def test_batch_indices_resume_and_cover():
    n = 5
    seen = [i for step in range(5) for i in batch_indices(step, 2, n, seed=3)]
    assert sorted(seen[:5]) == list(range(5))  # first epoch is a permutation
    assert batch_indices(3, 2, n, seed=3) == batch_indices(3, 2, n, seed=3)
    a = batch_indices(4, 2, n, seed=3, rank=0, world=2)
    b = batch_indices(4, 2, n, seed=3, rank=1, world=2)
    assert len(a) == len(b) == 2


def test_demo_dataset(tmp_path):
    paths = demo_dataset(tmp_path, size=3)
    assert len(load_records(paths["sft"], "sft")) == 3
    pairs = load_records(paths["pairs"], "pairs")
    assert all(p.chosen != p.rejected for p in pairs)
    prompts = load_records(paths["prompts"], "prompts")
    assert all(p.answer for p in prompts)


def test_full_recipes_parse():
    from pathlib import Path

    full = Path(__file__).resolve().parents[2] / "training" / "recipes" / "full"
    stages = {"r1v2-38b-assemble": "assemble", "r1v2-38b-sft": "sft", "r1v2-38b-mpo": "mpo",
              "r1v2-38b-grpo": "grpo", "vl-reward": "reward"}
    for name, stage in stages.items():
        cfg = load_config(stage, full / f"{name}.yaml")
        assert getattr(cfg, "mixed_precision", "bf16") == "bf16" or stage == "assemble"
