"""Reward scores for candidate solutions: a VLM backbone + scalar value head (Skywork-VL-Reward style).

    from engine.reward import load_reward, ScoreSettings
    scorer = load_reward("tiny-reward")                 # built locally; "skywork-vl-reward-7b" downloads
    scorer = load_reward("mini-reward")                 # Mini-R1V's (assets/mini/reward), or any directory
    scorer.score([image], "Find x.", ["... \\boxed{2}", "... \\boxed{3}"])      # -> [0.41, -0.12]
    scorer.score([image], question, solution.candidates)  # engine Candidates: read per ScoreSettings

The model (FACTS.md, "Reward model"): ``Qwen2_5_VLForConditionalGeneration`` whose LM head is not
used; a linear value head maps the final (post-norm) hidden state of the last non-pad token to one
number. Input: the user turn (images + question) and the assistant turn (the response), rendered by
the checkpoint's chat template without a generation prompt. Scores are unbounded Bradley-Terry
logits: compare them within one problem, never read them as probabilities.

Two backbones, told apart by the checkpoint's ``config.json`` ``model_type``: ``qwen2_5_vl``
(Skywork-VL-Reward; this module) and ``internvl``, the native InternVL reward models that
``training.reward`` trains and saves (Mini-R1V's); those are scored by
``engine.reward_internvl.InternVLRewardScorer`` in their training layout (tutor's prompt with the
``<think>`` pre-fill, the whole completion, ``<|im_end|>``) -- see that module.

Batching. ``score`` handles all n candidates of one problem together: the images go through the
image processor and the vision tower once, and the features are reused for every row
(``mm_encoder_outputs``); rows are right-padded, sorted by length into batches of
``ScoreSettings.batch_size``, and each row's value is read at its own last non-pad token (found from
the attention mask, so left padding would work too).

What the scorer reads of a candidate (``ScoreSettings.reads``):

- ``"answer"`` (default): the answer part after ``</think>`` -- the worked solution the student is
  shown, a few hundred tokens. Why the default: R1V2's reasoning runs to tens of thousands of tokens,
  and scoring 8 of those with a 7B model costs more than generating them again; the answer part is
  what the reward model judges best (it was trained on final responses of VLMs and reasoners); and
  its cost stays bounded however long the model thought. A candidate with no answer part (it never
  closed its thinking) is scored on the tail of its thinking, and loses in ``engine.rerank`` anyway.
- ``"thinking+answer"``: the last ``thinking_tokens`` tokens of the thinking (its conclusion and
  checks), wrapped in ``<think>...</think>``, then the answer.

Either way the response is cut to ``max_response_tokens`` (the end is kept).

4-bit: ``quantization="nf4"`` loads the language model in bitsandbytes NF4; the vision tower
(``model.visual``; InternVL: ``model.vision_tower`` and ``model.multi_modal_projector``), ``lm_head``
and the value head stay in full precision.

What was and was not verified. The value head's file name (``value_head.safetensors``), its keys
(``v_head.summary.weight`` of shape ``[1, hidden]`` and ``v_head.summary.bias`` of shape ``[1]``, a
TRL ``ValueHead`` saved by LLaMA-Factory) and the scoring recipe (TRL
``AutoModelForCausalLMWithValueHead`` over ``Qwen2_5_VLForConditionalGeneration``, value gathered at
``attention_mask.sum() - 1``, i.e. the last token of a right-padded row) come from public scoring
code that loads this checkpoint (the reward-bench pipeline for Skywork/Skywork-VL-Reward-7B) and
from LLaMA-Factory's value-head loader; they were not checked against the downloaded files (no hub
access here). Tested here on a tiny checkpoint written in that layout (``engine.reward_tiny``):
backbone weights under the keys of the released Qwen2.5-VL checkpoints (``visual.*``,
``model.layers.*``, ``lm_head.weight``; transformers 5 writes these and maps them onto its module
tree when loading) plus the separate head file; loading, the head read from its own file, and the
score equal to the head applied by hand to the last token's final hidden state. Not verified: that
the real backbone files use exactly those keys, the dtype of the real head, the real processor's
pixel limits and chat template (``processor.apply_chat_template`` of the checkpoint is used as is),
and any real score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.reward_scorer import (  # noqa: F401 - re-exported: the scorer lives below this module
    HEAD_FILE,
    READS,
    RewardScorer,
    ScoreSettings,
    last_token_hidden,
    load_value_head,
)
from tutor.errors import EngineError, InputError
from tutor.settings import data_dir

log = logging.getLogger(__name__)

SKIP_MODULES = ["model.visual", "lm_head"]  # full module prefixes of the native class (FACTS.md)
INTERNVL_SKIP_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]  # = engine.loading's
FAMILIES = ("qwen2_5_vl", "internvl")  # config.json model_type of the backbones load_reward reads


@dataclass(frozen=True)
class RewardPreset:
    name: str
    source: str  # "tiny" (built locally) | "hub" | "local" (a directory in the repository)
    description: str
    repo_id: str = ""
    quantization: str | None = None  # None | "nf4"
    seed: int = 0
    notes: dict = field(default_factory=dict)


REWARD_PRESETS: dict[str, RewardPreset] = {
    "tiny-reward": RewardPreset(
        name="tiny-reward",
        source="tiny",
        description="Miniature random-weight Skywork-VL-Reward (Qwen2.5-VL + value head), built locally; "
                    "for tests: its scores mean nothing",
    ),
    "mini-reward": RewardPreset(
        name="mini-reward",
        source="local",
        repo_id="assets/mini/reward",
        description="Mini-R1V's reward model (native InternVL + value head, trained by training/mini); "
                    "judges only the mini model's own task family",
    ),
    "skywork-vl-reward-7b": RewardPreset(
        name="skywork-vl-reward-7b",
        source="hub",
        repo_id="Skywork/Skywork-VL-Reward-7B",
        description="Skywork-VL-Reward-7B in bf16 (about 16 GB of weights)",
    ),
    "skywork-vl-reward-7b-nf4": RewardPreset(
        name="skywork-vl-reward-7b-nf4",
        source="hub",
        repo_id="Skywork/Skywork-VL-Reward-7B",
        quantization="nf4",
        description="Skywork-VL-Reward-7B, language model in NF4, vision tower in bf16 (about 6 GB)",
    ),
}


def get_reward_preset(name: str) -> RewardPreset:
    """The reward preset called ``name``; an unknown name is an InputError that lists the valid ones."""
    try:
        return REWARD_PRESETS[name]
    except KeyError:
        valid = ", ".join(sorted(REWARD_PRESETS))
        raise InputError("unknown_reward_preset", f"Unknown reward model '{name}'. Valid ones: {valid}, or none.",
                         f"未知的奖励模型“{name}”。可用的有：{valid}，或 none。") from None


# ------------------------------------------------------------------------------------------- loading


def _quantization_config(kind: str | None, skip: list[str] = SKIP_MODULES):
    if kind is None:
        return None
    if kind != "nf4":
        raise InputError("unknown_quantization", f"Unknown quantization '{kind}' for the reward model. Use nf4.",
                         f"奖励模型不支持量化方式“{kind}”，请使用 nf4。")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=list(skip))


def resolve_reward(reward: str | Path) -> tuple[Path, RewardPreset | None]:
    """A reward preset name or a checkpoint directory -> (directory, preset or None)."""
    if isinstance(reward, str) and reward in REWARD_PRESETS:
        preset = REWARD_PRESETS[reward]
        if preset.source == "tiny":
            from engine.reward_tiny import tiny_reward_path

            return tiny_reward_path(preset.seed), preset
        if preset.source == "local":
            return Path(__file__).resolve().parent.parent / preset.repo_id, preset
        return _download(preset), preset
    path = Path(reward).expanduser()
    if not path.is_dir():
        get_reward_preset(str(reward))  # raises "unknown reward model, valid ones are ..."
    return path, None


def _download(preset: RewardPreset) -> Path:
    local = data_dir() / "models" / preset.repo_id.replace("/", "--")
    if (local / HEAD_FILE).exists():
        return local
    from engine.hub import download

    return download(preset.repo_id, local_dir=local, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"],
                    what=("the reward model", "奖励模型"),
                    local_hint=("pass a local copy with --reward DIR", "用 --reward DIR 指定本地副本"))


def reward_family(path: Path) -> str:
    """The backbone of the checkpoint at ``path`` (its ``config.json`` ``model_type``), one of ``FAMILIES``;
    a missing or unreadable config or another model type is an EngineError."""
    import json

    file = Path(path) / "config.json"
    try:
        model_type = json.loads(file.read_text(encoding="utf-8")).get("model_type", "")
    except (OSError, ValueError, AttributeError) as e:
        raise EngineError("reward_load_failed", f"The reward model at {path} has no readable config.json.",
                          f"{path} 处的奖励模型缺少可读的 config.json。", detail=repr(e)) from e
    if model_type not in FAMILIES:
        raise EngineError("reward_unsupported", f"The reward model at {path} is a '{model_type}' model; "
                          f"only {', '.join(FAMILIES)} backbones are supported.",
                          f"{path} 处的奖励模型类型为“{model_type}”，只支持 {'、'.join(FAMILIES)}。",
                          detail=str(file))
    return model_type


def load_reward(reward: str | Path = "tiny-reward", *, quantization: str | None = "preset", device: str = "auto",
                dtype: str = "auto", settings: ScoreSettings | None = None) -> RewardScorer:
    """Load a reward preset or checkpoint directory (backbone + ``value_head.safetensors``).

    The backbone class follows the checkpoint's ``model_type`` (``FAMILIES``): Qwen2.5-VL gives a
    ``RewardScorer``, InternVL an ``engine.reward_internvl.InternVLRewardScorer`` (default settings
    for it: ``reads="thinking+answer"``, the whole completion, as in training).
    ``quantization="preset"`` takes the preset's own setting; ``None`` forces full precision.
    ``device="auto"`` uses CUDA when available; ``dtype="auto"``: bf16 on GPU, float32 on CPU.
    """
    import torch
    from transformers import AutoProcessor

    path, preset = resolve_reward(reward)
    if not path.is_dir():
        raise EngineError("reward_missing", f"The reward model directory {path} does not exist.",
                          f"奖励模型目录 {path} 不存在。", detail=str(path))
    if not (path / HEAD_FILE).is_file():  # before loading gigabytes of backbone
        raise EngineError("reward_head_missing", f"The reward model at {path} has no value head file ({HEAD_FILE}); "
                          "it is a plain model, not a reward model.",
                          f"{path} 处的奖励模型缺少价值头文件（{HEAD_FILE}），它是普通模型而不是奖励模型。",
                          detail=str(path / HEAD_FILE))
    family = reward_family(path)
    if family == "internvl":
        from transformers import InternVLForConditionalGeneration as model_class

        from engine.reward_internvl import InternVLRewardScorer as scorer_class
        skip = INTERNVL_SKIP_MODULES
        if settings is None:
            settings = ScoreSettings(reads="thinking+answer")
    else:
        from transformers import Qwen2_5_VLForConditionalGeneration as model_class

        scorer_class, skip = RewardScorer, SKIP_MODULES
    if quantization == "preset":
        quantization = preset.quantization if preset else None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = (torch.bfloat16 if device.startswith("cuda") else torch.float32) if dtype == "auto" \
        else getattr(torch, dtype)
    kwargs: dict = {"dtype": torch_dtype}
    qc = _quantization_config(quantization, skip)
    if qc is not None:
        kwargs.update(quantization_config=qc, device_map="auto" if device.startswith("cuda") else "cpu")
    elif device.startswith("cuda"):
        kwargs["device_map"] = device if ":" in device else "cuda:0"
    log.info("loading %s reward model %s from %s (%s, %s, %s)", family, reward, path, device, torch_dtype,
             quantization or "full precision")
    try:
        model = model_class.from_pretrained(path, **kwargs).eval()
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except torch.OutOfMemoryError as e:
        raise EngineError("out_of_memory", "Not enough memory for the reward model. Try its 4-bit preset.",
                          "内存不足，无法加载奖励模型。请尝试其 4 位量化预设。", detail=repr(e)) from e
    except OSError as e:
        raise EngineError("reward_load_failed", f"Could not load the reward model from {path}.",
                          f"无法从 {path} 加载奖励模型。", detail=repr(e)) from e
    if qc is None and device == "cpu":
        model.to("cpu")
    if family == "internvl":
        from engine.convert import apply_ps_version

        apply_ps_version(model)
    weight, bias = load_value_head(path, model.config.text_config.hidden_size)
    name = preset.name if preset else str(reward)
    return scorer_class(model, processor, weight, bias, name=name, path=path, settings=settings,
                        quantization=quantization)


def with_settings(scorer: RewardScorer, **changes) -> RewardScorer:
    """The same loaded model with other ``ScoreSettings`` (shares the weights)."""
    new = type(scorer)(scorer.model, scorer.processor, scorer.weight, scorer.bias, name=scorer.name,
                       path=scorer.path, settings=replace(scorer.settings, **changes),
                       quantization=scorer.quantization)
    return new
