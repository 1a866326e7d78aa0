"""Stage ``mpo``: Mixed Preference Optimisation on (images, prompt, chosen, rejected) pairs, on
``trl.DPOTrainer``.

    python -m training mpo --config training/recipes/tiny/mpo.yaml max_steps=2
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no -m training mpo --config training/recipes/tiny/mpo.yaml   # 2 CPU processes (gloo)

Loss (R1V2 / InternVL MPO): ``0.8 * DPO(sigmoid) + 0.2 * BCO + 1.0 * SFT`` with beta 0.1, as TRL's
``loss_type=["sigmoid", "bco_pair", "sft"]`` with ``loss_weights=[0.8, 0.2, 1.0]``, with two terms
brought back to the papers (``training.losses.mpo_loss`` stays the oracle; the tests compare):

- BCO: TRL's ``bco_pair`` has no reward shift. Here delta is the running mean of every implicit reward
  ``beta * log(pi/ref)`` seen so far, pooled over processes (``accelerator.gather``) and updated with
  the batch before use; it enters by shifting the reference log-prob sums by ``delta / beta``: the
  sigmoid (DPO) term sees only differences, so it is unchanged, and ``bco_pair`` becomes
  ``-log s(r_c - delta) - log s(-(r_r - delta))``. Delta is saved in every checkpoint, per process.
  TRL's logged ``rewards/chosen`` and ``rewards/rejected`` are then shifted by ``-delta``; the
  unshifted ones are logged as ``reward_chosen`` / ``reward_rejected``.
- SFT: TRL's ``sft`` averages the NLL over all chosen tokens of the batch; the paper averages each
  sequence's NLL over its length, then over the pairs. The difference is added to the loss.

The reference log-probs come from TRL's reference handling: ``ref_model`` when given (prepared and,
under ZeRO-3/FSDP, sharded by TRL), else a ``runs.SnapshotReference`` holding only the trainable
parameters (adapter-only MPO needs no second model). Prompts are ``tutor.prompts``' exact text.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from training.config import MPOConfig
from training.data import RESPONSE_END, Collator, Record, resolve_data
from training.losses import RunningMean, bco_loss, dpo_loss
from training.runs import (
    SnapshotReference,
    announce,
    apply_trainable,
    finish,
    load_checkpoint_weights,
    load_policy,
    metrics_callback,
    resume_path,
    trl_args,
)

log = logging.getLogger(__name__)

STATE_FILE = "mpo_state_rank{rank}.json"


def pairs_dataset(records: list[Record], processor, *, max_length: int, max_tiles: int):
    """A ``datasets.Dataset`` in TRL's vision preference format: ``images`` (PIL), ``prompt`` (tutor's
    ChatML text with the ``<think>\\n`` pre-fill, image placeholders as the processor's image token),
    ``chosen`` / ``rejected`` ending with ``<|im_end|>`` (the model's EOS, so TRL adds nothing).
    Every prompt is first encoded by the project's ``Collator``: a prompt that does not fit
    ``max_length`` or whose image tokens do not match its tiles is refused with its file and line."""
    from datasets import Dataset
    from PIL import Image

    check = Collator(processor, max_length=max_length, max_tiles=max_tiles)
    rows = []
    for rec in records:
        check.encode_prompt(rec)
        images = []
        for p in rec.images:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        rows.append({"images": images, "prompt": rec.prompt_text().replace("<image>", processor.image_token),
                     "chosen": rec.chosen + RESPONSE_END, "rejected": rec.rejected + RESPONSE_END})
    return Dataset.from_list(rows)


def _trainer_class():
    from trl import DPOTrainer

    class MPOTrainer(DPOTrainer):
        """``DPOTrainer`` with the BCO running delta and the per-sequence SFT term (module docstring)."""

        def __init__(self, *args, running: RunningMean, sft_weight: float, run_config: MPOConfig, **kw):
            self.running, self.sft_weight, self.run_config = running, sft_weight, run_config
            super().__init__(*args, **kw)
            if isinstance(self.ref_model, SnapshotReference):
                # TRL patched a fused LM head onto the reference too; ours runs the policy, which has it
                vars(self.ref_model).pop("forward", None)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            seen = {}
            ref = self.ref_model
            train = self.model.training

            def policy(*a, **kw):
                seen["policy"] = out = model(*a, **kw)
                return out

            def reference(*a, **kw):
                out = ref(*a, **kw)
                seen["ref_sums"] = out.log_probs.sum(1)
                return self._shift_reference(out, seen["policy"], kw["labels"], train)

            self.ref_model = reference
            try:
                result = super().compute_loss(policy, inputs, return_outputs, num_items_in_batch)
            finally:
                self.ref_model = ref
            loss, outputs = result if return_outputs else (result, None)
            loss = loss + self._sft_correction(seen["policy"].log_probs, inputs["completion_mask"][:, 1:],
                                               seen["ref_sums"])
            return (loss, outputs) if return_outputs else loss

        def _shift_reference(self, out, pol, labels, train: bool):
            """Update delta with the batch's implicit rewards (all processes), then add ``delta/beta``
            to each reference sequence log-prob (at its first completion token)."""
            mask = labels[:, 1:] != -100
            implicit = self.beta * (pol.log_probs.detach().sum(1) - out.log_probs.sum(1))
            gathered = self.accelerator.gather(implicit.float())
            if train:
                self.running.update(gathered)
            first = mask.float().argmax(dim=1)
            shift = torch.zeros_like(out.log_probs)
            shift[torch.arange(shift.size(0), device=shift.device), first] = self.running.mean / self.beta
            out.log_probs = out.log_probs + shift
            return out

        def _sft_correction(self, logps: torch.Tensor, mask: torch.Tensor, ref_sums: torch.Tensor) -> torch.Tensor:
            """``w_sft * (per-sequence NLL mean - TRL's token-mean NLL)`` on the chosen half; logs the parts."""
            b = logps.size(0) // 2
            m = mask[:b].to(logps.dtype)
            lp = logps[:b]
            per_seq = (-(lp * m).sum(1) / m.sum(1).clamp(min=1)).mean()
            token_mean = -lp[m.bool()].mean()
            mode = "train" if self.model.training else "eval"
            with torch.no_grad():
                seq = logps.detach().sum(1)
                pc, pr, rc, rr = seq[:b], seq[b:], ref_sums[:b], ref_sums[b:]
                parts = {"loss_dpo": dpo_loss(pc, pr, rc, rr, self.beta).mean(),
                         "loss_bco": bco_loss(pc, pr, rc, rr, self.beta, self.running.mean).mean(),
                         "loss_sft": per_seq.detach(),
                         "reward_chosen": (self.beta * (pc - rc)).mean(),
                         "reward_rejected": (self.beta * (pr - rr)).mean()}
                for k, v in parts.items():
                    self._metrics[mode][k].append(self.accelerator.gather(v.float().reshape(1)).mean().item())
                self._metrics[mode]["bco_delta"].append(self.running.mean)
            return self.sft_weight * (per_seq - token_mean)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            if self.is_deepspeed_enabled or self.is_fsdp_enabled:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            load_checkpoint_weights(model or self.model, resume_from_checkpoint)

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            path = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            path.mkdir(parents=True, exist_ok=True)
            (path / STATE_FILE.format(rank=self.accelerator.process_index)).write_text(
                json.dumps({"bco_delta": self.running.state_dict(), "rank": self.accelerator.process_index,
                            "world_size": self.accelerator.num_processes}))
            if self.accelerator.is_main_process:
                from training import config as config_mod

                config_mod.dump(self.run_config, path / "run_config.yaml", processes=self.accelerator.num_processes)

    return MPOTrainer


def load_running(checkpoint: str | Path, rank: int) -> RunningMean:
    """The BCO running mean saved by process ``rank`` in ``checkpoint`` (rank 0's if the run had fewer)."""
    path = Path(checkpoint)
    f = path / STATE_FILE.format(rank=rank)
    if not f.exists():
        f = path / STATE_FILE.format(rank=0)
    running = RunningMean()
    running.load_state_dict(json.loads(f.read_text())["bco_delta"])
    return running


def build_trainer(cfg: MPOConfig, model, processor, records: list[Record], *, running: RunningMean | None = None,
                  ref_model=None):
    """The ``MPOTrainer`` for ``cfg`` (trainable parts already set on ``model``)."""
    from trl import DPOConfig

    processor.image_processor.max_patches = cfg.max_tiles  # TRL calls the processor without max_patches
    dataset = pairs_dataset(records, processor, max_length=cfg.max_length, max_tiles=cfg.max_tiles)
    if ref_model is None:
        if cfg.ref_model:
            from engine.loading import load_model

            ref_model = load_model(cfg.ref_model, quantization=None, device="cpu",
                                   dtype=str(next(model.parameters()).dtype).removeprefix("torch.")).model.eval()
            ref_model.requires_grad_(False)
        else:
            ref_model = SnapshotReference(model)
    args = trl_args(cfg, DPOConfig, beta=cfg.beta, loss_type=["sigmoid", "bco_pair", "sft"],
                    loss_weights=[cfg.dpo_weight, cfg.bco_weight, cfg.sft_weight], max_length=cfg.max_length)
    renames = {"learning_rate": "lr"}
    return _trainer_class()(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                            processing_class=processor, running=running or RunningMean(),
                            sft_weight=cfg.sft_weight, run_config=cfg, callbacks=[metrics_callback(cfg.output_dir, renames)])


def train_mpo(cfg: MPOConfig):
    """Run the MPO stage; returns the finished trainer (``.out`` is the run directory)."""
    model, processor = load_policy(cfg)
    apply_trainable(model, cfg.trainable)
    records = resolve_data(cfg, "pairs")
    trainer = build_trainer(cfg, model, processor, records)
    acc = trainer.accelerator
    announce(cfg, "mpo", acc.num_processes, acc.is_main_process)
    start = resume_path(cfg)
    if start:
        trainer.running.load_state_dict(load_running(start, acc.process_index).state_dict())
        log.info("resuming from %s (bco_delta %.6f)", start, trainer.running.mean)
    trainer.train(resume_from_checkpoint=start)
    if cfg.save_final:
        final = Path(cfg.output_dir) / "final"
        trainer.save_model(str(final))
        if acc.is_main_process:
            from training import config as config_mod

            processor.save_pretrained(final)
            config_mod.dump(cfg, final / "training_config.yaml", processes=acc.num_processes)
    finish(acc, "mpo", trainer.model, trainer.state.global_step)
    trainer.out = Path(cfg.output_dir)
    return trainer
