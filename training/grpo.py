"""Stage ``grpo``: GRPO with the Selective Sample Buffer, on prompts with gold answers.

    python -m training grpo --config training/recipes/tiny/grpo.yaml max_steps=2

One step, on each process:
1. take ``batch_size`` prompt records (seeded order, ``data.batch_indices``) and sample
   ``num_generations`` completions each (``training.rollout``: HF generate, or vLLM on GPUs);
2. reward each completion: ``tutor.answers.accuracy_reward`` and ``format_reward``, plus an optional
   reward-model score (``training.reward.RewardModel``), weighted; each component is logged alone;
3. group advantages ``(r - mean) / std`` (``scale_rewards``), ``losses.group_advantages``;
4. with SSB on, keep the effective samples and replay buffered ones for the vanished groups
   (``training.ssb``); the effective-sample share is logged with and without the buffer;
5. clipped surrogate (``epsilon``, optional ``epsilon_high``), optional k3 KL to the frozen
   reference, token- or sequence-level aggregation (``losses.grpo_loss``); one update per rollout,
   so fresh samples have ratio 1 and replayed ones carry the log-probs of the policy that made them;
6. push the new weights to the rollout engine (at the start of the next step, so a resumed run
   pushes the checkpoint's weights too).

Written here because no library has SSB (FACTS.md); the math lives in ``losses`` and ``ssb``, which
the tests check by hand. Prompts are rendered by ``tutor.prompts`` exactly as the app renders them.
"""

from __future__ import annotations

import logging

import torch

from training.config import GRPOConfig
from training.data import Collator, Record, batch_indices, resolve_data, to_device
from training.losses import group_advantages, grpo_loss, sequence_logps
from training.rollout import make_rollout
from training.runs import Run, apply_trainable, load_policy, reference_policy
from training.ssb import Sample, SelectiveSampleBuffer
from tutor.answers import accuracy_reward, format_reward

log = logging.getLogger(__name__)


class RewardScorer:
    """Scores completions with a reward model saved by the ``reward`` stage."""

    def __init__(self, path: str, *, max_length: int, max_tiles: int, device):
        from transformers import AutoProcessor

        from training.reward import RewardModel

        self.model = RewardModel.from_pretrained(path).to(device).eval()
        self.collator = Collator(AutoProcessor.from_pretrained(path, trust_remote_code=False), max_length=max_length, max_tiles=max_tiles)
        self.device = device

    @torch.no_grad()
    def __call__(self, records: list[Record], texts: list[str]) -> list[float]:
        ids = [self.collator.response_ids(t) for t in texts]
        batch = to_device(self.collator.completions(records, ids), self.device)
        return self.model(batch["input_ids"], batch["attention_mask"], batch.get("pixel_values")).tolist()


def compute_rewards(cfg: GRPOConfig, records: list[Record], texts: list[str],
                    scorer: RewardScorer | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted total reward per completion and the mean of each component (for the metrics)."""
    acc = [0.0 if a is None else a for a in accuracy_reward(texts, [r.answer for r in records],
                                                             answer_kind=[r.answer_kind for r in records])]
    fmt = format_reward(texts)
    total = torch.tensor([cfg.accuracy_weight * a + cfg.format_weight * f for a, f in zip(acc, fmt, strict=True)])
    parts = {"reward_accuracy": sum(acc) / len(acc), "reward_format": sum(fmt) / len(fmt)}
    if scorer is not None and cfg.reward_model_weight:
        rm = torch.tensor(scorer(records, texts))
        total = total + cfg.reward_model_weight * rm
        parts["reward_model"] = rm.mean().item()
    parts["reward_total"] = total.mean().item()
    return total, parts


def _old_logps(batch_samples: list[Sample], logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Behaviour-policy log-probs: the current ones (detached) for fresh samples, the stored ones
    for replayed samples, placed at their completion-token positions."""
    old = logp.detach().clone()
    for i, s in enumerate(batch_samples):
        if s.replayed and s.old_logps:
            pos = mask[i].nonzero().flatten()
            k = min(len(pos), len(s.old_logps))
            old[i, pos[:k]] = torch.tensor(s.old_logps[:k], dtype=old.dtype, device=old.device)
    return old


def train_grpo(cfg: GRPOConfig) -> Run:
    """Run the GRPO stage; returns the finished ``Run``."""
    run = Run(cfg, "grpo")
    records = resolve_data(cfg, "prompts")
    model, processor = load_policy(cfg)
    apply_trainable(model, cfg.trainable)
    ref = reference_policy("", model, run.accelerator) if cfg.kl_beta > 0 else None
    collator = Collator(processor, max_length=cfg.max_length, max_tiles=cfg.max_tiles)
    buffer = SelectiveSampleBuffer(cfg.ssb_size, cfg.ssb_replay_share, cfg.ssb_max_staleness, seed=cfg.seed)
    model = run.setup(model, {"ssb": buffer})
    acc = run.accelerator
    policy = acc.unwrap_model(model)
    rollout = make_rollout(cfg, policy, collator)
    scorer = (RewardScorer(cfg.reward_model, max_length=cfg.max_length, max_tiles=cfg.max_tiles, device=run.device)
              if cfg.reward_model and cfg.reward_model_weight else None)
    n = cfg.num_generations

    def step_fn(step: int) -> dict[str, float]:
        # the optimizer stepped after the previous call (or weights came from a checkpoint): sync the engine
        rollout.push_weights(policy)
        idx = batch_indices(step, cfg.batch_size, len(records), cfg.seed, acc.process_index, acc.num_processes)
        recs = [records[i] for i in idx]
        seed = cfg.seed * 1_000_003 + step * 1009 + acc.process_index
        groups = rollout.generate(recs, n, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                  top_p=cfg.top_p, seed=seed)
        flat_recs = [r for r in recs for _ in range(n)]
        flat_idx = [i for i in idx for _ in range(n)]
        comp_ids = [c for g in groups for c in g]
        texts = [collator.tok.decode(c, skip_special_tokens=True) for c in comp_ids]
        rewards, parts = compute_rewards(cfg, flat_recs, texts, scorer)
        adv = group_advantages(rewards, n, scale=cfg.scale_rewards)
        fresh = [Sample(record=flat_idx[i], completion_ids=comp_ids[i], advantage=float(adv[i]),
                        reward=float(rewards[i]), step=step) for i in range(len(comp_ids))]
        if cfg.ssb:
            batch_samples, ssb_stats = buffer.select(fresh, step)
        else:
            batch_samples = fresh
            eff = sum(s.effective for s in fresh) / len(fresh)
            ssb_stats = {"effective_share_fresh": eff, "effective_share": eff, "replayed": 0.0, "buffer_size": 0.0}
        parts.update(ssb_stats)
        parts["completion_length"] = sum(len(c) for c in comp_ids) / len(comp_ids)
        parts["advantage_abs"] = adv.abs().mean().item()
        if not batch_samples:
            log.info("step %d: every group vanished and the buffer had nothing to replay; no update", step + 1)
            return {**parts, "loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "_updated": False}

        # one optimizer step over the kept samples, in micro-batches of batch_size * n rows
        chunk = cfg.batch_size * n
        chunks = [batch_samples[i:i + chunk] for i in range(0, len(batch_samples), chunk)]
        batches = [to_device(collator.completions([records[s.record] for s in ch],
                                                  [s.completion_ids for s in ch]), run.device) for ch in chunks]
        tokens = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
        agg: dict[str, float] = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio_mean": 0.0}
        for k, (ch, batch) in enumerate(zip(chunks, batches, strict=True)):
            weight = tokens[k] / max(sum(tokens), 1) if cfg.loss_type == "token" else len(ch) / len(batch_samples)
            ref_logp = None
            if ref is not None:
                with torch.no_grad():
                    ref_logp, _, _ = sequence_logps(ref, batch)
            with run.no_sync(k == len(chunks) - 1):
                logp, mask, _ = sequence_logps(model, batch)
                old = _old_logps(ch, logp, mask)
                a = torch.tensor([s.advantage for s in ch], device=logp.device)
                loss, lp = grpo_loss(logp, old, a, mask, epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
                                     ref_logp=ref_logp, kl_beta=cfg.kl_beta, loss_type=cfg.loss_type)
                run.backward(loss * weight)
            for s, row, m in zip(ch, logp.detach(), mask, strict=True):  # behaviour log-probs for the buffer
                if not s.replayed:
                    s.old_logps = row[m].tolist()
            agg["loss"] += loss.item() * weight
            for key in ("kl", "clip_fraction", "ratio_mean"):
                agg[key] += lp[key] * weight
        if cfg.ssb:
            buffer.add([s for s in batch_samples if not s.replayed], step)
            parts["buffer_size"] = float(len(buffer))
        return {**parts, **agg}

    run.loop(step_fn)
    if cfg.save_final:
        run.save_final(processor)
    return run
