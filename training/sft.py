"""Stage ``sft``: supervised fine-tuning on (images, prompt, response) records.

    python -m training sft --config training/recipes/tiny/sft.yaml max_steps=2

The loss is the mean NLL over the response tokens of the micro-batch (the prompt, image tokens
included, is masked). Adapter pre-training, R1V2's first step after assembly, is this stage with
``trainable: [adapter]``. A few lines on top of ``training.runs``: no library trainer is used
because the same loop, checkpoint and resume code serves the preference and RL stages too.
"""

from __future__ import annotations

import logging

from training.config import SFTConfig
from training.data import Collator, batch_indices, resolve_data, to_device
from training.losses import sequence_logps
from training.runs import Run, apply_trainable, load_policy

log = logging.getLogger(__name__)


def train_sft(cfg: SFTConfig) -> Run:
    """Run the SFT stage; returns the finished ``Run`` (metrics in ``run.out / 'metrics.jsonl'``)."""
    run = Run(cfg, "sft")
    records = resolve_data(cfg, "sft")
    model, processor = load_policy(cfg)
    apply_trainable(model, cfg.trainable)
    collator = Collator(processor, max_length=cfg.max_length, max_tiles=cfg.max_tiles)
    model = run.setup(model)
    acc = run.accelerator

    def step_fn(step: int) -> dict[str, float]:
        loss_sum, tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            idx = batch_indices(step * cfg.grad_accum + micro, cfg.batch_size, len(records), cfg.seed,
                                acc.process_index, acc.num_processes)
            batch = to_device(collator.sft([records[i] for i in idx]), run.device)
            with run.no_sync(micro == cfg.grad_accum - 1):
                logp, mask, _ = sequence_logps(model, batch)
                loss = -logp.sum() / mask.sum().clamp(min=1)
                run.backward(loss / cfg.grad_accum)
            loss_sum += loss.item()
            tokens += int(mask.sum())
        return {"loss": loss_sum / cfg.grad_accum, "response_tokens": tokens}

    run.loop(step_fn)
    if cfg.save_final:
        run.save_final(processor)
    return run
