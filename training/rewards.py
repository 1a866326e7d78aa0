"""GRPO rewards as TRL reward functions: ``fn(completions, **columns) -> list[float | None]``.

    from training.rewards import reward_functions
    funcs, weights = reward_functions(cfg, records, device)   # -> trl.GRPOTrainer(reward_funcs=funcs, ...)

One small function per reward, so TRL logs each on its own (``rewards/<name>/mean``):

- ``accuracy``: ``tutor.answers.accuracy_reward`` against the record's gold ``answer`` column (the
  same grading the app uses); ``None`` where the gold has nothing to compare with (TRL skips it);
- ``format``: ``tutor.answers.format_reward`` (one ``</think>``, thinking before it, a ``\\boxed{}``);
- ``reward_model``: the score of a reward-stage model (``training.reward.RewardModel``) on the prompt
  with its images and the completion, loaded once in bf16 on GPUs (fp32 on the CPU) on each process;
- any ``extra_rewards`` (``module:function`` import paths, weight 1.0 each), for experiments and for
  the tests that need a rank whose groups all vanish.

TRL passes completions as assistant messages (conversational prompts); ``tutor.answers`` reads both
those and plain strings. The completion starts inside the thinking: the ``<think>\\n`` pre-fill is
part of the prompt, as in the app.
"""

from __future__ import annotations

import importlib

import torch

from training.data import Collator, Record, to_device
from tutor.answers import accuracy_reward, format_reward
from tutor.errors import InputError


def _text(completion) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(m["content"] if isinstance(m["content"], str) else
                       "".join(p.get("text", "") for p in m["content"]) for m in completion)
    return str(completion)


def accuracy(completions, answer, answer_kind=None, **_) -> list[float | None]:
    """1.0 when the final answer matches the gold ``answer`` column, 0.0 when not, None: no gold."""
    return accuracy_reward([_text(c) for c in completions], list(answer), answer_kind=answer_kind)


def format(completions, **_) -> list[float]:  # noqa: A001 - TRL logs the function's name
    """1.0 for the R1V2 answer format, else 0.0."""
    return format_reward([_text(c) for c in completions])


class RewardModelScore:
    """The reward-stage model as a reward function; rows are found by the ``record`` column."""

    __name__ = "reward_model"

    def __init__(self, path: str, records: list[Record], *, max_length: int, max_tiles: int, device):
        from transformers import AutoProcessor

        from training.reward import RewardModel

        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        self.model = RewardModel.from_pretrained(path).to(device=device, dtype=dtype).eval()
        self.model.requires_grad_(False)
        self.collator = Collator(AutoProcessor.from_pretrained(path), max_length=max_length, max_tiles=max_tiles)
        self.records, self.device, self.dtype = records, device, dtype

    @torch.no_grad()
    def __call__(self, completions, record, **_) -> list[float]:
        recs = [self.records[i] for i in record]
        ids = [self.collator.response_ids(_text(c)) for c in completions]
        batch = to_device(self.collator.completions(recs, ids), self.device)
        pv = batch.get("pixel_values")
        scores = self.model(batch["input_ids"], batch["attention_mask"], None if pv is None else pv.to(self.dtype))
        return scores.float().tolist()


def load_function(spec: str):
    """``package.module:function`` -> the function (InputError when it cannot be found)."""
    mod, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise InputError("bad_reward_function", f"Cannot load reward function '{spec}' (module:function).",
                         f"无法加载奖励函数“{spec}”（格式 module:function）。", str(e)) from e
    return fn


def reward_functions(cfg, records: list[Record], device) -> tuple[list, list[float]]:
    """The reward functions of a GRPO run and their weights (zero-weight ones are left out)."""
    funcs, weights = [], []
    for fn, w in ((accuracy, cfg.accuracy_weight), (format, cfg.format_weight)):
        if w:
            funcs.append(fn)
            weights.append(float(w))
    if cfg.reward_model and cfg.reward_model_weight:
        funcs.append(RewardModelScore(cfg.reward_model, records, max_length=cfg.max_length,
                                      max_tiles=cfg.max_tiles, device=device))
        weights.append(float(cfg.reward_model_weight))
    for spec in cfg.extra_rewards:
        funcs.append(load_function(spec))
        weights.append(1.0)
    if not funcs:
        raise InputError("no_rewards", "Every reward weight is zero: nothing to train on.",
                         "所有奖励的权重都为零，没有可训练的信号。")
    return funcs, weights
