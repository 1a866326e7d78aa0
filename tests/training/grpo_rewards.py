"""Reward functions for the GRPO tests (``extra_rewards=[tests.training.grpo_rewards:...]``).

``rank0_only``: on process 0 a reward that differs between completions (a hash of the generated
text, so groups carry a signal); on every other process 0.0 for all, so that rank's groups all
vanish. With an empty buffer that rank has nothing to replay: the B4 case of issue 21.
"""

import torch


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _text(c) -> str:
    return c if isinstance(c, str) else "".join(m["content"] for m in c)


def rank0_only(completions, record, **_):
    if _rank() != 0:
        return [0.0] * len(completions)
    return [float(sum(map(ord, _text(c))) % 7) for c in completions]


def text_hash(completions, **_):
    """A signal on every process (each completion's text hash mod 7)."""
    return [float(sum(map(ord, _text(c))) % 7) for c in completions]


def alternate(completions, trainer_state, **_):
    """A signal on even steps (0, 2, ...), nothing on odd ones: every group vanishes there."""
    if trainer_state.global_step % 2:
        return [0.0] * len(completions)
    return text_hash(completions)


SEEN: list[dict] = []


def recording(completions, **kw):
    """Records what TRL hands a reward function (in-process tests), rewards 0.0."""
    SEEN.append({"completions": completions, **{k: v for k, v in kw.items() if k in ("answer", "answer_kind",
                                                                                      "record", "images", "prompts")}})
    return [0.0] * len(completions)
