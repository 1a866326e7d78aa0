"""Rollouts for GRPO behind one interface: ``generate(records, n, ...) -> completions``, then
``push_weights(model)`` after each policy update.

    rollout = make_rollout(cfg, model, collator)
    groups = rollout.generate(records, n=4, max_new_tokens=64, temperature=1.0, top_p=1.0, seed=7)
    # groups[i][j]: token ids of sample j for record i, ending with EOS when it stopped
    rollout.push_weights(model)

- ``HFRollout``: transformers ``generate`` on the policy itself (CPU, small GPUs); nothing to push.
  The sampling RNG is seeded per step, so a resumed run draws the same samples.
- ``VLLMRollout``: a colocated vLLM engine (GPU only, optional import). The policy's weights are
  pushed after each update, renamed to the InternVL-chat layout vLLM serves
  (``engine.convert.state_dict_to_original``). Not run on this machine (no GPU): the code path is
  exercised when a GPU is lent; its interface is the one ``HFRollout`` passes tests with.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch

from training.data import Collator, Record

log = logging.getLogger(__name__)


class Rollout(Protocol):
    def generate(self, records: list[Record], n: int, *, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[list[list[int]]]: ...

    def push_weights(self, model: torch.nn.Module) -> None: ...


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

    def push_weights(self, model) -> None:  # the policy generates itself
        return None


class VLLMRollout:
    """A colocated vLLM engine; weights pushed after each update. GPU only; untested here."""

    def __init__(self, model_path: str, collator: Collator, *, gpu_memory_utilization: float = 0.3,
                 max_model_len: int = 8192, seed: int = 0):
        from vllm import LLM  # optional: GPU machines only

        self.collator = collator
        self.llm = LLM(model=model_path, gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=max_model_len, seed=seed, trust_remote_code=False,
                       limit_mm_per_prompt={"image": 8})

    def generate(self, records, n, *, max_new_tokens, temperature, top_p, seed):
        from PIL import Image
        from vllm import SamplingParams

        params = SamplingParams(n=n, max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        prompts = []
        for r in records:
            images = [Image.open(p).convert("RGB") for p in r.images]
            prompts.append({"prompt": r.prompt_text(), "multi_modal_data": {"image": images} if images else {}})
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[list(c.token_ids) for c in o.outputs] for o in outs]

    def push_weights(self, model) -> None:
        from engine.convert import state_dict_to_original

        state = {k: v.detach() for k, v in model.state_dict().items()}
        weights = list(state_dict_to_original(state).items())
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner  # colocated, one GPU
        runner.model.load_weights(weights)
        self.llm.reset_prefix_cache()


def make_rollout(cfg, model, collator: Collator) -> Rollout:
    if cfg.rollout == "vllm":
        return VLLMRollout(cfg.rollout_model or cfg.model, collator, gpu_memory_utilization=cfg.vllm_gpu_memory,
                           max_model_len=cfg.max_length, seed=cfg.seed)
    return HFRollout(model, collator)
