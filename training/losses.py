"""The training objectives as pure tensor functions: MPO (DPO + BCO with running delta + SFT),
Bradley-Terry for the reward model, and GRPO (group advantages, clipped surrogate, KL, aggregation).

Written here rather than taken from TRL because TRL is not a dependency and, where it has these
pieces, they differ from the R1V2 recipe: its current ``bco_pair`` dropped the running reward shift
delta (FACTS.md), and its GRPO trainer has no place for the Selective Sample Buffer. Every function
takes already-computed log-probs or scores, so the tests check them against hand-computed values.

    logp, mask = token_logps(logits, labels)               # per-token log-probs of the labels
    total, parts = mpo_loss(pc, pr, rc, rr, nll_c, beta=0.1, running=RunningMean())
    loss, parts = bt_loss(r_pos, r_neg, margin=m, center_coef=0.01)
    adv = group_advantages(rewards, n=4, scale=True)
    loss, parts = grpo_loss(logp, old_logp, adv, mask, epsilon=0.2, epsilon_high=0.28, loss_type="token")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob of each next-token label. Returns ``(logp, mask)``, both ``[B, T-1]``; masked
    positions (label -100) have logp 0. Uses logsumexp so the full softmax is never stored twice."""
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE
    safe = target.masked_fill(~mask, 0)
    picked = torch.gather(logits, -1, safe.unsqueeze(-1)).squeeze(-1)
    logp = (picked - torch.logsumexp(logits, dim=-1)) * mask
    return logp, mask


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` on a collated batch. Returns per-token ``logp [B, T-1]``, ``mask`` and the sums."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch.get("pixel_values"), use_cache=False)
    logp, mask = token_logps(out.logits, batch["labels"])
    return logp, mask, logp.sum(-1)


# ----------------------------------------------------------------------------------------------- MPO


class RunningMean:
    """Mean of every implicit reward seen so far (count-weighted): the BCO shift delta.

    Kept in the checkpoint (``state_dict``) so that a resumed run uses the same delta."""

    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0

    def update(self, values: torch.Tensor) -> None:
        v = values.detach().float().flatten()
        if v.numel() == 0:
            return
        n = self.count + v.numel()
        self.mean = self.mean + (v.sum().item() - self.mean * v.numel()) / n
        self.count = n

    def state_dict(self) -> dict:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.count = float(state["mean"]), int(state["count"])


def dpo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, beta: float) -> torch.Tensor:
    """Sigmoid DPO per pair: -log s(beta * ((pc - rc) - (pr - rr))); p = policy, r = reference sums."""
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))


def bco_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, beta: float,
             delta: float) -> torch.Tensor:
    """BCO per pair: -log s(beta*lr_c - delta) - log s(-(beta*lr_r - delta)), lr = log(pi/ref)."""
    return -F.logsigmoid(beta * (pc - rc) - delta) - F.logsigmoid(-(beta * (pr - rr) - delta))


def mpo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, nll_chosen: torch.Tensor, *,
             beta: float = 0.1, weights: tuple[float, float, float] = (0.8, 0.2, 1.0),
             running: RunningMean | None = None, gathered_rewards: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """MPO = w_dpo * DPO + w_bco * BCO + w_sft * SFT, each averaged over the pairs.

    ``nll_chosen``: per-pair NLL of the chosen response divided by its length. ``running`` holds the
    BCO delta: it is first updated with this batch's implicit rewards (``beta*lr`` of chosen and
    rejected; ``gathered_rewards`` when several processes pool theirs), then used, as the original
    BCO pairing does. Returns the total and each part (plus reward statistics) as floats for logging.
    """
    running = running if running is not None else RunningMean()
    r_c = beta * (pc - rc).detach()
    r_r = beta * (pr - rr).detach()
    running.update(gathered_rewards if gathered_rewards is not None else torch.cat([r_c, r_r]))
    dpo = dpo_loss(pc, pr, rc, rr, beta).mean()
    bco = bco_loss(pc, pr, rc, rr, beta, running.mean).mean()
    sft = nll_chosen.mean()
    w_dpo, w_bco, w_sft = weights
    total = w_dpo * dpo + w_bco * bco + w_sft * sft
    parts = {"loss_dpo": dpo.item(), "loss_bco": bco.item(), "loss_sft": sft.item(),
             "bco_delta": running.mean, "reward_chosen": r_c.mean().item(), "reward_rejected": r_r.mean().item(),
             "reward_accuracy": (r_c > r_r).float().mean().item()}
    return total, parts


# -------------------------------------------------------------------------------------- reward model


def bt_loss(r_pos: torch.Tensor, r_neg: torch.Tensor, *, margin: torch.Tensor | None = None,
            center_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Bradley-Terry: mean of -log s(r+ - r- - margin), plus ``center_coef * mean((r+ + r-)^2)``
    (reward centering keeps the unbounded scores near zero)."""
    diff = r_pos - r_neg - (margin if margin is not None else 0.0)
    bt = -F.logsigmoid(diff).mean()
    center = ((r_pos + r_neg) ** 2).mean()
    total = bt + center_coef * center
    return total, {"loss_bt": bt.item(), "loss_center": center.item(),
                   "accuracy": (r_pos > r_neg).float().mean().item(),
                   "score_chosen": r_pos.mean().item(), "score_rejected": r_neg.mean().item()}


# ---------------------------------------------------------------------------------------------- GRPO


def group_advantages(rewards: torch.Tensor, n: int, *, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """(r - group mean) [/ (group std + eps)] for consecutive groups of ``n`` samples.

    Uses the unbiased std (as GRPO does). A group whose rewards are all equal gets exactly zero."""
    g = rewards.float().view(-1, n)
    adv = g - g.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (g.std(dim=1, keepdim=True) + eps)
    adv = torch.where(g.max(dim=1, keepdim=True).values == g.min(dim=1, keepdim=True).values,
                      torch.zeros_like(adv), adv)
    return adv.flatten()


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
              epsilon: float = 0.2, epsilon_high: float = 0.0, ref_logp: torch.Tensor | None = None,
              kl_beta: float = 0.0, loss_type: str = "token") -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate per token, optional k3 KL to the reference, aggregated over tokens.

    ``ratio = exp(logp - old_logp)``; per-token loss ``-min(ratio*A, clip(ratio, 1-eps, 1+eps_high)*A)``
    (``eps_high`` = ``epsilon`` when 0), plus ``kl_beta * (exp(ref-logp) - (ref-logp) - 1)``.
    ``loss_type="token"``: sum over all tokens / number of tokens (every token weighs the same, DAPO);
    ``"sequence"``: mean over each sample's tokens, then mean over samples (GRPO's original).
    """
    m = mask.float()
    eh = epsilon_high if epsilon_high > 0 else epsilon
    ratio = torch.exp(logp - old_logp)
    a = advantages.unsqueeze(-1)
    unclipped = ratio * a
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + eh) * a
    per_token = -torch.min(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and kl_beta > 0:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
        per_token = per_token + kl_beta * kl
    if loss_type == "token":
        loss = (per_token * m).sum() / m.sum().clamp(min=1)
    elif loss_type == "sequence":
        loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    else:
        raise ValueError(f"loss_type must be token or sequence, not {loss_type!r}")
    with torch.no_grad():
        is_clipped = ((ratio < 1 - epsilon) & (a < 0)) | ((ratio > 1 + eh) & (a > 0))
        tokens = m.sum().clamp(min=1)
        parts = {"clip_fraction": ((is_clipped.float() * m).sum() / tokens).item(),
                 "kl": ((kl * m).sum() / tokens).item(),
                 "ratio_mean": ((ratio * m).sum() / tokens).item()}
    return loss, parts
