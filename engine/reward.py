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
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tutor.errors import EngineError, InputError
from tutor.settings import data_dir

log = logging.getLogger(__name__)

HEAD_FILE = "value_head.safetensors"
SKIP_MODULES = ["model.visual", "lm_head"]  # full module prefixes of the native class (FACTS.md)
INTERNVL_SKIP_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]  # = engine.loading's
FAMILIES = ("qwen2_5_vl", "internvl")  # config.json model_type of the backbones load_reward reads
READS = ("answer", "thinking+answer")


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


@dataclass(frozen=True)
class ScoreSettings:
    """What the scorer reads of each candidate and how it batches (see the module docstring)."""

    reads: str = "answer"  # "answer" | "thinking+answer"
    thinking_tokens: int = 1024  # for reads="thinking+answer", and for candidates with no answer part
    max_response_tokens: int = 4096
    batch_size: int = 8
    max_tiles: int | None = None  # InternVL only: tiles per image; None = the checkpoint processor's max_patches

    def __post_init__(self):
        if self.reads not in READS:
            raise InputError("bad_reward_reads", f"Unknown reward input '{self.reads}'. Use one of: {', '.join(READS)}.",
                             f"未知的奖励模型输入方式“{self.reads}”，可选：{'、'.join(READS)}。")
        for name in ("thinking_tokens", "max_response_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError("bad_reward_setting", f"The reward setting {name} must be a positive integer "
                                 f"(got {value!r}).", f"奖励模型设置 {name} 必须是正整数（收到 {value!r}）。")
        if self.max_tiles is not None and (not isinstance(self.max_tiles, int) or not 1 <= self.max_tiles <= 40):
            raise InputError("bad_reward_setting", f"The reward setting max_tiles must be an integer from 1 to 40 "
                             f"(got {self.max_tiles!r}).", f"奖励模型设置 max_tiles 必须是 1 到 40 的整数"
                             f"（收到 {self.max_tiles!r}）。")


def get_reward_preset(name: str) -> RewardPreset:
    """The reward preset called ``name``; an unknown name is an InputError that lists the valid ones."""
    try:
        return REWARD_PRESETS[name]
    except KeyError:
        valid = ", ".join(sorted(REWARD_PRESETS))
        raise InputError("unknown_reward_preset", f"Unknown reward model '{name}'. Valid ones: {valid}, or none.",
                         f"未知的奖励模型“{name}”。可用的有：{valid}，或 none。") from None


# ------------------------------------------------------------------------------------------ value head


def load_value_head(path: str | Path, hidden_size: int | None = None):
    """Read ``value_head.safetensors`` (a file, or the checkpoint directory holding it).

    Returns ``(weight, bias)`` as float32 tensors of shapes ``[hidden]`` and ``[]``. Accepts the
    TRL/LLaMA-Factory keys ``v_head.summary.weight``/``.bias`` (the real checkpoint) and the same
    without the ``v_head.`` prefix; anything else is an EngineError naming the keys found.
    """
    from safetensors import safe_open

    path = Path(path)
    file = path / HEAD_FILE if path.is_dir() else path
    if not file.is_file():
        raise EngineError("reward_head_missing", f"The reward model has no value head file ({file.name}).",
                          f"奖励模型缺少价值头文件（{file.name}）。", detail=str(file))
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as e:  # corrupt or not safetensors
        raise EngineError("reward_head_unreadable", "The reward model's value head file could not be read.",
                          "无法读取奖励模型的价值头文件。", detail=f"{file}: {e!r}") from e
    weight = tensors.get("v_head.summary.weight", tensors.get("summary.weight"))
    bias = tensors.get("v_head.summary.bias", tensors.get("summary.bias"))
    ok = weight is not None and weight.dim() in (1, 2) and weight.reshape(-1).numel() == weight.shape[-1]
    if ok and hidden_size is not None:
        ok = weight.shape[-1] == hidden_size
    if ok and bias is not None:
        ok = bias.numel() == 1
    if not ok:
        shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        raise EngineError("reward_head_bad", "The reward model's value head does not fit the model.",
                          "奖励模型的价值头与模型不匹配。",
                          detail=f"{file}: {shapes}, expected v_head.summary.weight [1, {hidden_size}] + bias [1]")
    weight = weight.reshape(-1).float()
    bias = bias.reshape(()).float() if bias is not None else weight.new_zeros(())
    return weight, bias


# -------------------------------------------------------------------------------------------- scorer


class RewardScorer:
    """Scores responses to one problem with a loaded reward model (see the module docstring).
    This class reads Qwen2.5-VL checkpoints; ``engine.reward_internvl`` subclasses it for InternVL."""

    family = "qwen2_5_vl"

    def __init__(self, model, processor, weight, bias, *, name: str, path: Path | None = None,
                 settings: ScoreSettings | None = None, quantization: str | None = None):
        self.model, self.processor = model, processor
        self.name, self.path, self.quantization = name, path, quantization
        self.settings = settings or ScoreSettings()
        self.weight, self.bias = weight.to(self.device), bias.to(self.device)
        self._lock = threading.Lock()
        self.last_timings: dict = {}

    @property
    def device(self):
        return self.model.device

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    # -- what is read of a candidate ----------------------------------------------------------------

    def _tail(self, text: str, tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= tokens else self.tokenizer.decode(ids[-tokens:])

    def response_text(self, candidate) -> str:
        """The response the reward model reads: a string is used as is; an engine ``Candidate``
        (anything with ``thinking``/``text``) is read as ``settings.reads`` says."""
        s = self.settings
        if isinstance(candidate, str):
            text = candidate
        else:
            answer = (getattr(candidate, "text", "") or "").strip()
            thinking = (getattr(candidate, "thinking", "") or "").strip()
            if answer and s.reads == "answer":
                text = answer
            elif answer:
                text = f"<think>\n{self._tail(thinking, s.thinking_tokens)}\n</think>\n\n{answer}"
            else:
                text = self._tail(thinking, s.thinking_tokens)
        return self._tail(text, s.max_response_tokens)

    # -- scoring ------------------------------------------------------------------------------------

    def render(self, question: str, response: str, n_images: int) -> str:
        """The chat text of (images + question, response), no generation prompt, one image pad each."""
        user = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": question}]
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": [{"type": "text", "text": response}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def score(self, images: Sequence, question: str, responses: Sequence) -> list[float]:
        """Scores of ``responses`` (strings or candidates) to one problem (``images`` + ``question``),
        in order. The images are processed and encoded once for all responses."""
        if not responses:
            return []
        if not isinstance(question, str):
            raise InputError("bad_question", "The question must be text.", "题目必须是文本。")
        texts = [self.response_text(r) for r in responses]
        with self._lock:
            try:
                return self._score(list(images), question, texts)
            except (EngineError, InputError):
                raise
            except Exception as e:
                raise _reward_error(e) from e

    def _score(self, images, question, texts) -> list[float]:
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        from engine.core import _as_pil

        t0 = time.perf_counter()
        pil = [_as_pil(im) for im in images]
        tok, model = self.tokenizer, self.model
        image_token = self.processor.image_token
        features, grid = None, None
        expansions: list[str] = []
        if pil:
            vis = self.processor.image_processor(images=pil, return_tensors="pt")
            grid = vis["image_grid_thw"].to(self.device)
            merge = self.processor.image_processor.merge_size ** 2
            expansions = [image_token * int(g.prod().item() // merge) for g in vis["image_grid_thw"]]
            with torch.inference_mode():
                pixel_values = vis["pixel_values"].to(self.device, model.model.visual.dtype)
                features = model.model.get_image_features(pixel_values, grid, return_dict=True).pooler_output
        t1 = time.perf_counter()

        rendered = [self._expand(self.render(question, t, len(pil)), image_token, expansions) for t in texts]
        encoded = [tok(r, add_special_tokens=False)["input_ids"] for r in rendered]
        image_id = self.processor.image_token_id

        def hidden_states(ids, mask):
            kwargs = {}
            if features is not None:
                kwargs = {
                    "image_grid_thw": grid.repeat(len(ids), 1),
                    "mm_token_type_ids": (ids == image_id).long() * mask,
                    "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(
                        pooler_output=tuple(features) * len(ids))},
                }
            return model.model(input_ids=ids, attention_mask=mask, use_cache=False, **kwargs).last_hidden_state

        return self._score_rows(encoded, hidden_states, t0, t1)

    def _score_rows(self, encoded: list[list[int]], hidden_states, t0: float, t1: float) -> list[float]:
        """Values of token rows: sorted by length into right-padded batches of ``settings.batch_size``
        (as the reference scoring code and ``training.data.Collator``), ``hidden_states(ids, mask)`` run
        on each, the head read at each row's last token; records ``last_timings``."""
        import torch

        tok = self.tokenizer
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        scores: list[float] = [math.nan] * len(encoded)
        bs = self.settings.batch_size
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        for start in range(0, len(order), bs):
            rows = order[start:start + bs]
            width = max(len(encoded[i]) for i in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[r, : len(encoded[i])] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            with torch.inference_mode():
                values = self.head(last_token_hidden(hidden_states(ids, mask), mask))
            for r, i in enumerate(rows):
                scores[i] = float(values[r])
        t2 = time.perf_counter()
        self.last_timings = {"vision_s": round(t1 - t0, 4), "score_s": round(t2 - t1, 4),
                             "responses": len(encoded), "tokens": sum(len(e) for e in encoded)}
        return scores

    def head(self, hidden):
        """The value head on hidden states ``[..., hidden]`` (computed in float32)."""
        return hidden.float() @ self.weight + self.bias

    @staticmethod
    def _expand(text: str, image_token: str, expansions: list[str]) -> str:
        parts = text.split(image_token)
        if len(parts) - 1 != len(expansions):
            raise EngineError("reward_template", "The reward model's chat template lost the image.",
                              "奖励模型的对话模板丢失了图片。",
                              detail=f"{len(parts) - 1} image tokens for {len(expansions)} images")
        out = [parts[0]]
        for exp, rest in zip(expansions, parts[1:], strict=True):
            out += [exp, rest]
        return "".join(out)


def last_token_hidden(hidden, mask):
    """Each row's hidden state at its last non-pad position (either padding side)."""
    import torch

    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * mask.bool()).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


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


def _reward_error(e: BaseException) -> EngineError:
    import torch

    log.exception("reward scoring failed", exc_info=e)
    if isinstance(e, torch.OutOfMemoryError):
        return EngineError("out_of_memory", "The reward model ran out of memory. Try fewer candidates.",
                           "奖励模型内存不足，请减少候选数量。", detail=repr(e))
    return EngineError("reward_failed", "The reward model failed while scoring the solutions.",
                       "奖励模型在评分时出错。", detail=repr(e))
