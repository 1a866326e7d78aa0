"""Sampling groups of completions from a policy with transformers ``generate``, for the mini
recipe's evaluation (``training.mini.evaluate``). GRPO's own rollouts are TRL's (``training.grpo``:
``generate`` on the CPU, TRL's vLLM integration on GPUs).

    rollout = HFRollout(model, collator)
    groups = rollout.generate(records, n=4, max_new_tokens=64, temperature=1.0, top_p=1.0, seed=7)
    # groups[i][j]: token ids of sample j for record i, ending with EOS when it stopped

The sampling RNG is seeded per call, so the same seed draws the same samples.
"""

from __future__ import annotations

import logging

import torch

from training.data import Collator

log = logging.getLogger(__name__)


def _eos_ids(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


class HFRollout:
    """Sampling with ``model.generate``: each record's prompt repeated ``n`` times in one batch."""

    def __init__(self, model: torch.nn.Module, collator: Collator):
        self.model, self.collator = model, collator

    @torch.no_grad()
    def generate(self, records, n, *, max_new_tokens, temperature, top_p, seed):
        rows = [r for r in records for _ in range(n)]
        inputs = self.collator.generation_inputs(rows)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(next(self.model.parameters()).dtype)
        torch.manual_seed(seed)
        width = inputs["input_ids"].shape[1]
        seqs = self.model.generate(**inputs, do_sample=temperature > 0, temperature=temperature or None,
                                   top_p=top_p, max_new_tokens=max_new_tokens, repetition_penalty=1.0,
                                   pad_token_id=self.collator.pad_id, use_cache=True)
        eos = _eos_ids(self.model)
        out: list[list[int]] = []
        for row in seqs[:, width:].tolist():
            end = next((j for j, t in enumerate(row) if t in eos), None)
            out.append(row if end is None else row[: end + 1])
        return [out[i * n:(i + 1) * n] for i in range(len(records))]
