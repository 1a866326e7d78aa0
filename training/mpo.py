"""Stage ``mpo``: Mixed Preference Optimisation on (images, prompt, chosen, rejected) pairs.

    python -m training mpo --config training/recipes/tiny/mpo.yaml max_steps=2

Loss (R1V2 / InternVL MPO): ``0.8 * DPO(sigmoid) + 0.2 * BCO + 1.0 * SFT`` with beta 0.1 by default
(``training.losses.mpo_loss``). BCO shifts the implicit rewards by delta, the running mean of every
implicit reward seen so far, pooled over processes; delta is checkpointed so a resumed run continues
with the same value. The reference log-probs come from a frozen copy of the starting policy: by
default only its trainable parameters are copied (``runs.FrozenSnapshot``), so adapter-only MPO
needs no second model in memory. Written here, not with TRL: TRL's ``bco_pair`` has no delta.
"""

from __future__ import annotations

import logging

import torch

from training.config import MPOConfig
from training.data import Collator, batch_indices, resolve_data, to_device
from training.losses import RunningMean, mpo_loss, sequence_logps
from training.runs import Run, apply_trainable, load_policy, reference_policy

log = logging.getLogger(__name__)


def train_mpo(cfg: MPOConfig) -> Run:
    """Run the MPO stage; returns the finished ``Run``."""
    run = Run(cfg, "mpo")
    records = resolve_data(cfg, "pairs")
    model, processor = load_policy(cfg)
    apply_trainable(model, cfg.trainable)
    ref = reference_policy(cfg.ref_model, model, run.accelerator)
    running = RunningMean()
    collator = Collator(processor, max_length=cfg.max_length, max_tiles=cfg.max_tiles)
    model = run.setup(model, {"bco_delta": running})
    acc = run.accelerator
    weights = (cfg.dpo_weight, cfg.bco_weight, cfg.sft_weight)

    def step_fn(step: int) -> dict[str, float]:
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            idx = batch_indices(step * cfg.grad_accum + micro, cfg.batch_size, len(records), cfg.seed,
                                acc.process_index, acc.num_processes)
            recs = [records[i] for i in idx]
            batch = to_device(collator.pairs(recs), run.device)
            b = len(recs)
            with torch.no_grad():
                _, _, ref_sums = sequence_logps(ref, batch)
            with run.no_sync(micro == cfg.grad_accum - 1):
                logp, mask, seq = sequence_logps(model, batch)
                nll_chosen = -logp[:b].sum(-1) / mask[:b].sum(-1).clamp(min=1)
                pc, pr, rc, rr = seq[:b], seq[b:], ref_sums[:b], ref_sums[b:]
                implicit = torch.cat([cfg.beta * (pc - rc), cfg.beta * (pr - rr)]).detach()
                total, parts = mpo_loss(pc, pr, rc, rr, nll_chosen, beta=cfg.beta, weights=weights,
                                        running=running, gathered_rewards=acc.gather(implicit))
                run.backward(total / cfg.grad_accum)
            parts["loss"] = total.item()
            parts["chosen_tokens"] = int(mask[:b].sum())
            parts["rejected_tokens"] = int(mask[b:].sum())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
        sums["bco_delta"] = running.mean
        return sums

    run.loop(step_fn)
    if cfg.save_final:
        run.save_final(processor)
    return run
