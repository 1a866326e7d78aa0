"""The thinking budget: 64K presets, YaRN when budget + prompt pass max_position_embeddings, the cut at the
model's positions.

    python -m pytest tests/engine/test_context.py -q
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from PIL import Image

from engine.context import QWEN_PRETRAIN_CONTEXT, plan_context, prompt_reserve
from engine.presets import PRESETS, R1V2_BUDGET
from tutor.errors import InputError

QWQ_TEXT = {"max_position_embeddings": 40960, "rope_parameters": {"rope_theta": 1e6, "rope_type": "default"}}


def test_r1v2_presets_budget_64k_and_small_presets_stay_small():
    assert R1V2_BUDGET == 64_000
    for name in ("r1v2-38b", "r1v2-38b-nf4", "r1v2-38b-awq"):
        assert PRESETS[name].max_new_tokens == 64_000
    assert PRESETS["tiny-random"].max_new_tokens <= 128 and PRESETS["mini"].max_new_tokens <= 128
    from tutor.limits import MAX_NEW_TOKENS

    assert MAX_NEW_TOKENS == 64_000  # a request may ask for the whole budget


def test_qwq_context_gets_yarn_x4_for_a_64k_budget():
    plan = plan_context(QWQ_TEXT, R1V2_BUDGET, prompt_reserve(256, 12))
    assert plan.rope_scaling == {"rope_type": "yarn", "factor": 4.0,
                                 "original_max_position_embeddings": QWEN_PRETRAIN_CONTEXT}
    assert plan.context == 131072 >= plan.needed == 64_000 + 13 * 256 + 512
    assert plan.vllm_overrides() == {"llm_config": {"rope_scaling": plan.rope_scaling}}


def test_fitting_budget_and_declared_scaling_leave_the_config_alone():
    assert plan_context(QWQ_TEXT, 16_384, 3840).rope_scaling is None
    declared = {**QWQ_TEXT, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
    plan = plan_context(declared, R1V2_BUDGET, 3840)
    assert plan.rope_scaling is None and plan.context == 131072 and plan.declared["factor"] == 4.0
    small = plan_context({"max_position_embeddings": 40960}, 40_000, 3840)
    assert small.rope_scaling["factor"] == 2.0 and small.context == 65536  # the smallest factor that fits


def test_a_budget_beyond_yarn_x4_is_refused_in_both_languages():
    with pytest.raises(InputError) as e:
        plan_context(QWQ_TEXT, 200_000, 3840)
    assert e.value.code == "budget_too_long" and "131072" in e.value.en and "131072" in e.value.zh


def test_loading_applies_yarn_to_the_real_model_only_when_the_budget_needs_it(tiny_dir):
    from engine.loading import load_model

    plain = load_model("tiny-random", quantization=None, device="cpu")  # budget 64: nothing changes
    assert plain.model.config.text_config.rope_parameters["rope_type"] == "default"
    assert plain.model.model.language_model.rotary_emb.attention_scaling == 1.0
    assert plain.budget == PRESETS["tiny-random"].max_new_tokens and plain.context == 32768

    long = load_model("tiny-random", quantization=None, device="cpu", max_new_tokens=40_000)
    rope = long.model.config.text_config.rope_parameters
    assert rope["rope_type"] == "yarn" and rope["factor"] == 2.0 and rope["original_max_position_embeddings"] == 32768
    rotary = long.model.model.language_model.rotary_emb
    assert rotary.attention_scaling == pytest.approx(0.1 * math.log(2.0) + 1.0)  # YaRN's mscale, in the module
    assert not (rotary.inv_freq == plain.model.model.language_model.rotary_emb.inv_freq).all()
    assert long.budget == 40_000 and long.context == 65536


def test_generation_stops_at_the_models_positions_and_says_so(tiny_loaded):
    from engine.core import Engine, Sampling

    eng = Engine(loaded=replace(tiny_loaded, context=10_000))
    probe = eng.solve([Image.new("RGB", (64, 64), "white")], "1+1?", n=1, sampling=Sampling(max_new_tokens=4, seed=0))
    prompt = probe.prompt_tokens
    assert probe.timings["max_new_tokens"] == 4 and "context_limit" not in probe.timings
    eng = Engine(loaded=replace(tiny_loaded, context=prompt + 3))
    sol = eng.solve([Image.new("RGB", (64, 64), "white")], "1+1?", n=1,
                    sampling=Sampling(max_new_tokens=50, min_new_tokens=50, seed=0))
    assert sol.candidates[0].tokens == 3 and sol.candidates[0].finish_reason == "length"
    assert sol.timings["max_new_tokens"] == 3 and sol.timings["context_limit"] == prompt + 3


def test_the_cli_says_when_the_thinking_budget_ran_out(tiny_dir, tmp_path, capsys):
    from engine.__main__ import main

    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 64), "white").save(photo)
    assert main(["solve", str(photo), "--question", "1+1?", "--max-new-tokens", "4", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "(ran out of thinking budget: all 4 tokens were used before it finished thinking; raise " \
           "--max-new-tokens)" in out
    assert main(["solve", str(photo), "--max-new-tokens", "70000"]) == 2
    assert "from 1 to 64000" in capsys.readouterr().err
