"""The reward scorer itself: ``ScoreSettings``, the value head reader and ``RewardScorer`` (Qwen2.5-VL;
``engine.reward_internvl`` subclasses it for InternVL). Kept apart from ``engine.reward`` (presets and
loading) so the two scorers share one base without importing each other; ``engine.reward`` re-exports
these names, and its module docstring describes the model, the batching and what is read.

    from engine.reward import load_reward              # what callers use
    from engine.reward_scorer import RewardScorer      # what a new backbone subclasses
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tutor.errors import EngineError, InputError

log = logging.getLogger(__name__)

HEAD_FILE = "value_head.safetensors"
READS = ("answer", "thinking+answer")

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

        from tutor.intake import as_pil

        t0 = time.perf_counter()
        pil = [as_pil(im) for im in images]
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


def _reward_error(e: BaseException) -> EngineError:
    import torch

    log.exception("reward scoring failed", exc_info=e)
    if isinstance(e, torch.OutOfMemoryError):
        return EngineError("out_of_memory", "The reward model ran out of memory. Try fewer candidates.",
                           "奖励模型内存不足，请减少候选数量。", detail=repr(e))
    return EngineError("reward_failed", "The reward model failed while scoring the solutions.",
                       "奖励模型在评分时出错。", detail=repr(e))
