"""engine.reward on a native InternVL reward checkpoint written by training.reward.RewardModel.save:
the score equals RewardModel.forward on training's own input, the image is encoded once, candidates are
read in the training layout, bad checkpoints are clear errors, NF4 keeps the vision side, and the
Engine reranks with it. The checkpoint is built here over the tiny InternVL (never assets/mini)."""

import shutil

import pytest
import torch
from PIL import Image, ImageDraw

from engine.core import Engine, Sampling, _user_text, make_candidate
from engine.reward import (
    INTERNVL_SKIP_MODULES,
    REWARD_PRESETS,
    ScoreSettings,
    load_reward,
    resolve_reward,
    with_settings,
)
from engine.reward_internvl import InternVLRewardScorer
from tutor.errors import EngineError, InputError
from tutor.prompts import build_messages

TILES = 2
RESPONSES = [
    "2x = 4.\n</think>\n\nSo x = \\boxed{2}.",
    "Guess.\n</think>\n\n\\boxed{3}",
    "Subtract 3 from both sides: 2x = 4. " * 8 + "\n</think>\n\nThe answer is \\boxed{2}.",
    "x is",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_dir):
    """A reward checkpoint exactly as the reward stage saves it: RewardModel over the tiny InternVL."""
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    from training.reward import RewardModel

    out = tmp_path_factory.mktemp("internvl-reward")
    rm = RewardModel(InternVLForConditionalGeneration.from_pretrained(tiny_dir, dtype=torch.float32), seed=3)
    with torch.no_grad():
        rm.v_head.summary.bias.fill_(0.25)
    rm.save(out)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    processor.image_processor.max_patches = TILES  # training's max_tiles, saved with the processor
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def scorer(checkpoint):
    return load_reward(checkpoint, device="cpu", settings=ScoreSettings(reads="thinking+answer", batch_size=3))


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """(image file, the image as the collator opens it, the tutor's messages for it)."""
    path = tmp_path_factory.mktemp("img") / "q.png"
    im = Image.new("RGB", (448, 224), "white")  # two tiles + thumbnail at TILES = 2
    ImageDraw.Draw(im).text((30, 30), "2x + 3 = 7", fill="black")
    im.save(path)
    with Image.open(path) as f:
        image = f.convert("RGB")
    messages = build_messages("solve", n_images=1, question="Solve 2x + 3 = 7.", subject="math", lang="en")
    return path, image, messages


def training_scores(checkpoint, problem, responses):
    """What training computes: training.data.Collator rows (prompt + response + <|im_end|>) through
    RewardModel.forward (the full InternVL model with pixel_values, head on the last token)."""
    from transformers import AutoProcessor

    from training.data import Collator, Record
    from training.reward import RewardModel

    path, _, messages = problem
    rm = RewardModel.from_pretrained(checkpoint)
    collator = Collator(AutoProcessor.from_pretrained(checkpoint), max_length=4096, max_tiles=TILES)
    rec = Record(line=1, source="test", images=[path], messages=messages)
    batch = collator.completions([rec] * len(responses), [collator.response_ids(r) for r in responses])
    with torch.no_grad():
        return rm(batch["input_ids"], batch["attention_mask"], batch["pixel_values"]).tolist()


def test_scores_equal_the_training_forward(checkpoint, scorer, problem):
    _, image, messages = problem
    assert isinstance(scorer, InternVLRewardScorer) and scorer.max_tiles == TILES
    scores = scorer.score([image], _user_text(messages), RESPONSES)  # batches of 3 + 1, padded, sorted
    expected = training_scores(checkpoint, problem, RESPONSES)
    assert scores == pytest.approx(expected, abs=1e-4)
    assert max(scores) - min(scores) > 1e-3  # not one constant: the responses reach the head
    prompt = scorer.render_prompt(_user_text(messages), 1)
    assert prompt.startswith("<|im_start|>user\n<IMG_CONTEXT>\n") and prompt.endswith("assistant\n<think>\n")


def test_vision_tower_runs_once_for_all_responses(scorer, problem):
    _, image, messages = problem
    calls = []
    hook = scorer.model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    try:
        scorer.score([image], _user_text(messages), RESPONSES * 2)  # 8 responses, 3 batches
    finally:
        hook.remove()
    assert len(calls) == 1
    assert scorer.last_timings["responses"] == 8


def test_candidates_are_read_as_the_completion(scorer, problem):
    _, image, messages = problem
    question = _user_text(messages)
    raw = [RESPONSES[0], RESPONSES[3]]  # a finished completion, and one cut off while thinking
    cands = [make_candidate(i, t, 10, "stop") for i, t in enumerate(raw)]
    assert scorer.response_text(cands[0]) == RESPONSES[0] and scorer.response_text(cands[1]) == "x is"
    assert scorer.score([image], question, cands) == pytest.approx(scorer.score([image], question, raw), abs=1e-5)
    answer_only = with_settings(scorer, reads="answer")
    assert isinstance(answer_only, InternVLRewardScorer)
    assert answer_only.response_text(cands[0]) == "\n</think>\n\nSo x = \\boxed{2}."
    scorer.score([image], question, raw[:1])
    tokens = scorer.last_timings["tokens"]
    fewer = with_settings(scorer, max_tiles=1)  # one tile instead of two + thumbnail: fewer image tokens
    fewer.score([image], question, raw[:1])
    assert fewer.max_tiles == 1 and fewer.last_timings["tokens"] < tokens


def test_default_settings_read_the_whole_completion(checkpoint):
    assert load_reward(checkpoint, device="cpu").settings.reads == "thinking+answer"


def test_bad_checkpoints_are_clear_errors(checkpoint, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(checkpoint, plain)
    (plain / "value_head.safetensors").unlink()
    with pytest.raises(EngineError) as e:
        load_reward(plain, device="cpu")
    assert e.value.code == "reward_head_missing"
    assert "value_head.safetensors" in e.value.message("en") and "价值头" in e.value.message("zh")
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    cfg = (other / "config.json").read_text().replace('"model_type": "internvl"', '"model_type": "llava"', 1)
    (other / "config.json").write_text(cfg)
    with pytest.raises(EngineError) as e:
        load_reward(other, device="cpu")
    assert e.value.code == "reward_unsupported" and "llava" in e.value.message("en")
    with pytest.raises(InputError):
        ScoreSettings(max_tiles=0)


def test_mini_reward_preset_points_at_the_shipped_model():
    preset = REWARD_PRESETS["mini-reward"]
    assert preset.source == "local" and preset.quantization is None
    path, found = resolve_reward("mini-reward")
    assert found is preset and path.parts[-3:] == ("assets", "mini", "reward")


def test_nf4_keeps_the_vision_tower_projector_and_lm_head(checkpoint, problem):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    assert INTERNVL_SKIP_MODULES == ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
    q = load_reward(checkpoint, quantization="nf4", device="cpu")
    assert isinstance(q.model.model.language_model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    for part in (q.model.model.vision_tower, q.model.model.multi_modal_projector, q.model.lm_head):
        assert not any(isinstance(m, bnb.nn.Linear4bit) for m in part.modules())
    _, image, messages = problem
    scores = q.score([image], _user_text(messages), RESPONSES[:2])
    assert all(isinstance(s, float) and s == s for s in scores)


def test_engine_reranks_with_it(tiny_loaded, scorer, problem):
    _, image, _ = problem
    sol = Engine(loaded=tiny_loaded).solve([image], "Solve 2x + 3 = 7.", n=3, reward=scorer,
                                           sampling=Sampling(max_new_tokens=8, seed=0))
    assert all(isinstance(c.reward, float) for c in sol.candidates)
    assert sol.strategy == "reward+vote" and "reward_s" in sol.timings
