"""``SSBGRPOTrainer``: ``trl.GRPOTrainer`` with the Selective Sample Buffer as a hook.

    trainer = SSBGRPOTrainer(model=..., reward_funcs=..., args=trl.GRPOConfig(...), train_dataset=...,
                             processing_class=processor, ssb=SelectiveSampleBuffer(...), use_ssb=True)

TRL generates, scores and computes the group advantages (over all processes) in
``_generate_and_score_completions``; this subclass takes that batch, this process's rows, and:

1. finds the vanished rows (zero advantage) and, with SSB on, puts buffered samples in those slots
   only (``training.ssb``); the batch keeps its number of rows, so the loss's denominator means the
   same thing with SSB on and off and is identical with an empty buffer (issue 21, M1);
2. gives every row its behaviour log-probs: fresh rows the policy's log-probs at generation time
   (TRL's own when it computed them, i.e. with vLLM; else one no-grad forward, completion tokens
   only through ``logits_to_keep``), replayed rows the ones stored with them, so the clipped
   ratio corrects for their being off-policy;
3. re-pads the rows (prompts left, completions right, image tiles concatenated in row order) and
   recounts ``num_items_in_batch`` gathered over all processes, the global token count TRL's
   ``dapo`` loss divides by (token normalisation over processes, not per process);
4. stores this step's effective fresh rows with their log-probs in the buffer.

Every process always runs forward and backward on its rows, vanished or not (TRL computes the loss
on all rows; a zero-advantage row just adds no gradient), so a rank whose groups all vanish with an
empty buffer still joins the gradient all-reduce (B4). The buffer is saved per process in each
checkpoint (``ssb-rank{N}.pt``, M4); ``steps.json`` per rank counts the backward passes (tests).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from trl import GRPOTrainer
from trl.trainer.utils import pad

from training.ssb import EPS, Sample, SelectiveSampleBuffer

log = logging.getLogger(__name__)

# per-row keys of TRL's batch this hook knows how to rebuild; any other per-row key is refused
_KNOWN = {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "num_items_in_batch",
          "old_per_token_logps", "sampling_per_token_logps", "importance_sampling_ratio", "ref_per_token_logps",
          "pixel_values", "num_images", "num_tiles"}


def sync_trainable_only(generation, model) -> None:
    """Make TRL's vLLM weight sync push only the trainable parameters (the 92M adapter of the 38B
    model when ``trainable=[adapter]``): the engine loaded the frozen rest from the same checkpoint.
    Every process still walks the same (filtered) list, so ZeRO-3 / FSDP gathers stay collective.
    GPU path: not run on this machine (no vLLM here)."""
    names = {generation._fix_param_name_to_vllm(n) for n, p in model.named_parameters() if p.requires_grad}
    if not names or len(names) == sum(1 for _ in model.parameters()):
        return
    full = generation._iter_named_params

    def trainable_only():
        for name, param in full():
            if name in names:
                yield name, param

    generation._iter_named_params = trainable_only
    log.info("vLLM weight sync: %d trainable tensors only", len(names))


def buffer_file(rank: int) -> str:
    return f"ssb-rank{rank}.pt"


class SSBGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose rollout batch passes through the Selective Sample Buffer."""

    def __init__(self, *args, ssb: SelectiveSampleBuffer, use_ssb: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.ssb, self.use_ssb = ssb, use_ssb
        self.backward_calls = 0
        if getattr(self, "vllm_generation", None) is not None:
            sync_trainable_only(self.vllm_generation, self.model)

    # ------------------------------------------------------------------------------ the hook

    def _generate_and_score_completions(self, inputs):
        step = self.state.global_step
        if self.model.training:
            # sampling seeded by (seed, step, rank): a resumed run draws what the uninterrupted one drew
            # (the Trainer's restored global RNG is consumed differently before the first step on resume)
            torch.manual_seed(self.args.seed * 1_000_003 + step * 1009 + self.accelerator.process_index)
        out = super()._generate_and_score_completions(inputs)
        if not self.model.training:
            return out
        extra = set(out) - _KNOWN
        if extra:
            raise NotImplementedError(f"SSB cannot rebuild the batch keys {sorted(extra)} (model not supported)")
        fresh = self._samples(out, inputs, step)
        if self.use_ssb:
            rows, stats = self.ssb.select(fresh, step)
        else:
            eff = sum(s.effective for s in fresh) / max(len(fresh), 1)
            rows, stats = fresh, {"effective_share_fresh": eff, "effective_share": eff, "replayed": 0.0}
        out = self._rebuild(out, rows)
        if self.use_ssb:
            self.ssb.add([s for s in rows if not s.replayed], step)
        stats["buffer_size"] = float(len(self.ssb))
        dev = self.accelerator.device
        mean = self.accelerator.gather(torch.tensor([list(stats.values())], device=dev)).mean(0).tolist()
        for k, v in zip(stats, mean, strict=True):
            self._metrics["train"][f"ssb/{k}"].append(v)
        return out

    def _forward_kwargs(self, out: dict) -> dict:
        return {"pixel_values": out.get("pixel_values"), "num_images": out.get("num_images"),
                "num_tiles": out.get("num_tiles")}

    @torch.no_grad()
    def _policy_logps(self, out: dict, model=None) -> torch.Tensor:
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        logps, _, _ = self._get_per_token_logps_and_entropies(
            model or self.model, ids, mask, out["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size, **self._forward_kwargs(out))  # micro-batched
        return logps

    def _samples(self, out: dict, inputs: list[dict], step: int) -> list[Sample]:
        """This process's rows as ``Sample``s with their behaviour log-probs (CPU copies)."""
        old = out.get("old_per_token_logps")
        if old is None and self.use_ssb:
            old = self._policy_logps(out)
        n_img = out.get("num_images") or [0] * len(inputs)
        tiles = out.get("num_tiles") or n_img  # InternVL with several tiles an image: TRL's num_tiles
        pv = out.get("pixel_values")
        pv_rows = list(torch.split(pv.cpu(), tiles)) if pv is not None else [None] * len(inputs)
        samples = []
        for i, x in enumerate(inputs):
            pm, cm = out["prompt_mask"][i].bool(), out["completion_mask"][i].bool()
            samples.append(Sample(
                record=int(x.get("record", -1)), completion_ids=out["completion_ids"][i][cm].tolist(),
                advantage=float(out["advantages"][i]), reward=0.0, step=step,
                old_logps=old[i][cm].tolist() if old is not None else [],
                prompt_ids=out["prompt_ids"][i][pm].tolist(), pixel_values=pv_rows[i], num_images=int(n_img[i]),
                num_tiles=int(tiles[i])))
        return samples

    def _rebuild(self, out: dict, rows: list[Sample]) -> dict:
        """TRL's batch from ``rows`` (same order and length as the fresh rows)."""
        if not self.use_ssb:
            return out  # SSB off: TRL's batch as it is
        dev = self.accelerator.device
        pad_id = self._tokenizer.pad_token_id

        def padded(seqs, value, side, dtype=torch.long):
            return pad([torch.tensor(s, dtype=dtype) for s in seqs], padding_value=value, padding_side=side).to(dev)

        new = dict(out)
        new["prompt_ids"] = padded([s.prompt_ids for s in rows], pad_id, "left")
        new["prompt_mask"] = padded([[1] * len(s.prompt_ids) for s in rows], 0, "left")
        new["completion_ids"] = padded([s.completion_ids for s in rows], pad_id, "right")
        new["completion_mask"] = padded([[1] * len(s.completion_ids) for s in rows], 0, "right")
        new["advantages"] = torch.tensor([s.advantage for s in rows], dtype=out["advantages"].dtype, device=dev)
        new["old_per_token_logps"] = padded([s.old_logps for s in rows], 0.0, "right", torch.float32)
        if "num_images" in out:
            new["num_images"] = [s.num_images for s in rows]
            if "num_tiles" in out:
                new["num_tiles"] = [s.num_tiles for s in rows]
            tiles = [s.pixel_values for s in rows if s.pixel_values is not None and len(s.pixel_values)]
            new["pixel_values"] = torch.cat(tiles).to(dev, out["pixel_values"].dtype) if tiles else None
        replayed = torch.tensor([s.replayed for s in rows], device=dev)
        for key in ("importance_sampling_ratio", "sampling_per_token_logps"):  # vLLM only
            if key in out:  # fresh rows keep theirs; replayed rows: ratio 1, the stored log-probs
                old = out[key]
                width = 1 if old.size(1) == 1 else new["completion_ids"].size(1)
                fill = torch.ones if key == "importance_sampling_ratio" else torch.zeros
                val = fill(len(rows), width, dtype=old.dtype, device=dev)
                for i, s in enumerate(rows):
                    if s.replayed and key == "sampling_per_token_logps":
                        val[i, : len(s.old_logps)] = torch.tensor(s.old_logps, dtype=old.dtype)
                    elif not s.replayed:
                        n = min(width, old.size(1))
                        val[i, :n] = old[i, :n]
                new[key] = val
        if "ref_per_token_logps" in out and replayed.any():
            model = self.ref_model if self.ref_model is not None else self.model
            new["ref_per_token_logps"] = self._policy_logps(new, model)
        tokens = new["completion_mask"].sum()
        new["num_items_in_batch"] = self.accelerator.gather(tokens).sum()
        return new

    # ----------------------------------------------------------------------- bookkeeping

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.backward_calls += 1
        return loss

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        path = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.ssb.state_dict(), path / buffer_file(self.accelerator.process_index))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume's model weights through ``from_pretrained``. transformers 5 saves InternVL under its
        original key names (``multi_modal_projector.*``), and ``Trainer._load_from_checkpoint`` loads
        them with ``load_state_dict(strict=False)`` into ``model.multi_modal_projector.*``: nothing
        matched, and a resumed run silently continued from the starting weights. FSDP and DeepSpeed
        checkpoints keep their own (sharded) path."""
        model = self.model if model is None else model
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        unwrapped = self.accelerator.unwrap_model(model)
        dtype = next(unwrapped.parameters()).dtype
        loaded = type(unwrapped).from_pretrained(resume_from_checkpoint, dtype=dtype)
        unwrapped.load_state_dict(loaded.state_dict(), strict=True)
        log.info("weights of %s loaded (%d tensors)", resume_from_checkpoint, len(loaded.state_dict()))

    def load_buffer(self, checkpoint: str | Path) -> None:
        """This process's buffer from ``checkpoint`` (each rank its own)."""
        f = Path(checkpoint) / buffer_file(self.accelerator.process_index)
        if f.exists():
            self.ssb.load_state_dict(torch.load(f, weights_only=False))
            log.info("rank %d: SSB buffer of %d samples from %s", self.accelerator.process_index, len(self.ssb), f)

    def write_rank_report(self, out_dir: str | Path) -> None:
        """``ranks/rank-N.json``: steps and backward passes this process ran (proof of participation)."""
        d = Path(out_dir) / "ranks"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank-{self.accelerator.process_index}.json").write_text(json.dumps({
            "rank": self.accelerator.process_index, "world": self.accelerator.num_processes,
            "global_step": self.state.global_step, "backward_calls": self.backward_calls,
            "buffer_size": len(self.ssb), "eps": EPS}))
