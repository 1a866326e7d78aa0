"""engine.reward on tiny-reward: the score is the value head on the last token, batching, the head file,
the checkpoint layout, what is read of a candidate, 4-bit, and the Engine/CLI wiring."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from engine.core import Candidate, Engine, Sampling
from engine.reward import (
    REWARD_PRESETS,
    RewardScorer,
    ScoreSettings,
    last_token_hidden,
    load_reward,
    load_value_head,
    resolve_reward,
    with_settings,
)
from engine.reward_tiny import HEAD_BIAS, HEAD_FILE, HEAD_WEIGHT, tiny_reward_path, write_value_head
from tutor.errors import EngineError, InputError

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Solve 2x + 3 = 7. Put the final answer in \\boxed{}."
RESPONSES = ["2x = 4, so x = \\boxed{2}.", "x = \\boxed{3}", "Subtract 3 from both sides: 2x = 4. " * 6, "ok"]


@pytest.fixture(scope="module")
def scorer():
    return load_reward("tiny-reward", device="cpu")


@pytest.fixture(scope="module")
def photo():
    im = Image.new("RGB", (336, 224), "white")
    ImageDraw.Draw(im).text((30, 30), "2x + 3 = 7", fill="black")
    return im


def reference_score(scorer, image, question, response):
    """By hand: the processor's own input for one (image + question, response), the full model with
    hidden states, the head's weight and bias applied to the last token's final hidden state."""
    text = scorer.render(question, response, 1)
    inputs = scorer.processor(text=[text], images=[image], return_tensors="pt")
    with torch.no_grad():
        out = scorer.model(**inputs, output_hidden_states=True)
    w, b = load_value_head(scorer.path)
    last = out.hidden_states[-1][0, -1].float()
    return float(last @ w + b)


def test_score_equals_hand_computed_head_on_last_token(scorer, photo):
    scores = scorer.score([photo], QUESTION, RESPONSES)  # one padded batch, different lengths
    expected = [reference_score(scorer, photo, QUESTION, r) for r in RESPONSES]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert len(set(round(s, 5) for s in scores)) == len(scores)  # the responses are told apart


def test_batched_equals_one_by_one_and_keeps_order(scorer, photo):
    small = with_settings(scorer, batch_size=3)  # 4 responses: batches of 3 + 1, sorted by length
    batched = small.score([photo], QUESTION, RESPONSES)
    single = [scorer.score([photo], QUESTION, [r])[0] for r in RESPONSES]
    assert batched == pytest.approx(single, abs=1e-4)


def test_image_is_encoded_once_for_all_candidates(scorer, photo):
    calls = []
    hook = scorer.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    try:
        scorer.score([photo], QUESTION, RESPONSES * 2)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_image_and_question_change_the_score(scorer, photo):
    other = Image.new("RGB", (336, 224), "black")
    a = scorer.score([photo], QUESTION, RESPONSES[:1])[0]
    assert scorer.score([other], QUESTION, RESPONSES[:1])[0] != pytest.approx(a, abs=1e-5)
    assert scorer.score([photo], "Find y.", RESPONSES[:1])[0] != pytest.approx(a, abs=1e-5)
    assert isinstance(scorer.score([], QUESTION, RESPONSES[:1])[0], float)  # text only also works
    assert scorer.score([photo], QUESTION, []) == []


def test_last_token_hidden_handles_both_padding_sides():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(last_token_hidden(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(last_token_hidden(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))


def test_checkpoint_is_in_the_released_layout():
    from safetensors import safe_open

    path = tiny_reward_path()
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    with safe_open(str(path / HEAD_FILE), "pt") as f:
        head = {k: tuple(f.get_tensor(k).shape) for k in f.keys()}  # noqa: SIM118
    # Released Qwen2.5-VL checkpoints: visual.*, model.layers.*, lm_head; the head lives in its own file
    assert any(k.startswith("visual.blocks.") for k in keys) and any(k.startswith("model.layers.") for k in keys)
    assert "lm_head.weight" in keys and not any("v_head" in k for k in keys)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert head == {HEAD_WEIGHT: (1, config["text_config"]["hidden_size"]), HEAD_BIAS: (1,)}


def test_head_is_loaded_from_its_file(scorer, photo, tmp_path):
    ckpt = tmp_path / "rm"
    shutil.copytree(scorer.path, ckpt)
    hidden = scorer.weight.numel()
    write_value_head(ckpt, torch.zeros(1, hidden), torch.tensor([0.75]))
    constant = load_reward(ckpt, device="cpu")
    assert constant.score([photo], QUESTION, RESPONSES) == pytest.approx([0.75] * len(RESPONSES))
    # a scaled head scales the value: w -> 2w, b -> 2b + 1
    w, b = load_value_head(scorer.path)
    write_value_head(ckpt, 2 * w.reshape(1, -1), (2 * b + 1).reshape(1))
    scaled = load_reward(ckpt, device="cpu").score([photo], QUESTION, RESPONSES[:2])
    base = scorer.score([photo], QUESTION, RESPONSES[:2])
    assert scaled == pytest.approx([2 * s + 1 for s in base], abs=1e-4)


def test_bad_head_files_are_engine_errors(scorer, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(EngineError) as e:
        load_value_head(tmp_path)
    assert e.value.code == "reward_head_missing" and "价值头" in e.value.message("zh")
    save_file({"score.weight": torch.zeros(1, 8)}, str(tmp_path / HEAD_FILE))
    with pytest.raises(EngineError) as e:
        load_value_head(tmp_path, 64)
    assert e.value.code == "reward_head_bad" and "score.weight" in e.value.detail
    save_file({HEAD_WEIGHT: torch.zeros(1, 32), HEAD_BIAS: torch.zeros(1)}, str(tmp_path / HEAD_FILE))
    with pytest.raises(EngineError):
        load_value_head(tmp_path, 64)  # hidden size does not match the model
    (tmp_path / HEAD_FILE).write_bytes(b"not safetensors")
    with pytest.raises(EngineError) as e:
        load_value_head(tmp_path)
    assert e.value.code == "reward_head_unreadable"


def test_unknown_preset_and_bad_settings_are_input_errors():
    with pytest.raises(InputError) as e:
        resolve_reward("skywork-huge")
    assert "tiny-reward" in e.value.message("en") and "奖励模型" in e.value.message("zh")
    with pytest.raises(InputError):
        ScoreSettings(reads="everything")
    with pytest.raises(InputError):
        ScoreSettings(batch_size=0)
    assert REWARD_PRESETS["skywork-vl-reward-7b"].repo_id == "Skywork/Skywork-VL-Reward-7B"


def test_what_the_scorer_reads_of_a_candidate(scorer):
    thinking = " ".join(f"step{i}" for i in range(400))
    done = Candidate(0, thinking, "So x = \\boxed{2}.", "2", 10, "stop", False)
    cut = Candidate(1, thinking, "", "", 10, "length", True)
    assert scorer.response_text(done) == "So x = \\boxed{2}."  # default: the answer part only
    assert scorer.response_text("raw text") == "raw text"
    both = with_settings(scorer, reads="thinking+answer", thinking_tokens=20)
    text = both.response_text(done)
    assert text.startswith("<think>\n") and text.endswith("</think>\n\nSo x = \\boxed{2}.")
    assert "step399" in text and "step0 " not in text  # the tail of the thinking, within budget
    assert len(scorer.tokenizer(text.split("</think>")[0][8:])["input_ids"]) <= 21
    tail = scorer.response_text(cut)  # no answer part: the tail of the thinking
    assert tail.endswith("step399") and "step0 " not in tail
    short = with_settings(scorer, max_response_tokens=5).response_text("a b c d e f g h i j")
    assert short.endswith("j") and len(short) < 19


def test_nf4_quantizes_the_language_model_not_the_vision_tower(photo):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    q = load_reward("tiny-reward", quantization="nf4", device="cpu")
    lm = q.model.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(lm, bnb.nn.Linear4bit)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in q.model.model.visual.modules())
    assert not isinstance(q.model.lm_head, bnb.nn.Linear4bit)
    scores = q.score([photo], QUESTION, RESPONSES[:2])
    assert all(isinstance(s, float) and s == s for s in scores)


def test_engine_fills_rewards_and_explains_the_choice(tiny_loaded, scorer, photo):
    engine = Engine(loaded=tiny_loaded)
    sol = engine.solve([photo], "Find x.", n=3, sampling=Sampling(max_new_tokens=8, seed=0), reward=scorer)
    assert all(isinstance(c.reward, float) for c in sol.candidates)
    assert sol.strategy == "reward+vote" and sol.reason
    assert "reward_s" in sol.timings
    ranked = engine.solve([photo], "Find x.", n=3, sampling=Sampling(max_new_tokens=8, seed=0), reward=scorer,
                          rerank="reward")
    best = max(range(3), key=lambda i: (not ranked.candidates[i].truncated, ranked.candidates[i].reward, -i))
    assert ranked.chosen == best
    plain = engine.solve([photo], "Find x.", n=2, sampling=Sampling(max_new_tokens=8, seed=0))
    assert all(c.reward is None for c in plain.candidates) and plain.strategy == "vote"
    with pytest.raises(InputError):
        engine.solve([photo], "Find x.", n=2, rerank="reward")  # no reward model
    assert isinstance(scorer, RewardScorer)


def test_cli_solve_with_tiny_reward(tiny_dir, scorer, capsys):
    from engine.__main__ import main

    example = ROOT / "assets" / "examples" / "math-zh-trig-maximum.jpg"
    code = main(["solve", str(example), "--model", "tiny-random", "--reward", "tiny-reward", "--n", "4", "--json",
                 "--seed", "0"])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(out.out)
    assert len(data["candidates"]) == 4
    assert all(isinstance(c["reward"], float) for c in data["candidates"])
    assert 0 <= data["chosen"] < 4 and data["strategy"] == "reward+vote"
    assert f"candidate {data['chosen']}" in data["reason"]
    assert main(["solve", str(example), "--reward", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["solve", str(example), "--rerank", "reward"]) == 2  # no reward model given
