"""Held-out evaluation of a Mini-R1V checkpoint: accuracy of one sample, and of n samples chosen by
majority vote, reward argmax and ``reward+vote`` (``engine.rerank``) with the trained reward model.

    from training.mini.evaluate import sample, accuracy, rerank_accuracy
    groups = sample("data/mini/final", "data/mini/data/test.jsonl", n=8, seed=0)   # texts per problem
    accuracy(groups)                      # share of problems whose first sample is right
    rerank_accuracy(groups, reward_dir="data/mini/reward", n=8)   # {"first": .., "vote": .., ...}

Sampling is the policy's own ``generate`` (``training.rollout.HFRollout``) on prompts rendered by
``tutor.prompts`` through ``training.data.Collator``, at R1V2's temperature 0.6 / top-p 0.95 unless
told otherwise. Answers are judged by ``tutor.answers.accuracy_reward``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import torch

from tutor.drills import restated  # noqa: F401 - re-exported: how a solution restates its photo

log = logging.getLogger(__name__)


@dataclass
class Group:
    """The n sampled completions of one problem."""

    record: object  # training.data.Record
    texts: list[str]
    lengths: list[int]
    finished: list[bool]
    correct: list[float]


def load(path: str | Path):
    from engine.loading import load_model

    lm = load_model(str(path), quantization=None, device="auto", dtype="float32")  # CUDA when there is one
    return lm.model.eval(), lm.processor


@torch.no_grad()
def sample(model_dir, data: str | Path, *, n: int = 1, seed: int = 0, temperature: float = 0.6, top_p: float = 0.95,
           max_new_tokens: int = 160, limit: int | None = None, batch: int = 64, model=None, processor=None) -> list[Group]:
    """``n`` completions for each record of ``data`` (a JSONL with ``answer`` fields)."""
    from training.data import Collator, load_records
    from training.rollout import HFRollout
    from tutor.answers import accuracy_reward

    if model is None:
        model, processor = load(model_dir)
    records = load_records(data, "prompts")[:limit]
    collator = Collator(processor, max_length=1024, max_tiles=1)
    rollout = HFRollout(model, collator)
    eos = set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
              else [model.generation_config.eos_token_id])
    per = max(1, batch // n)
    out: list[Group] = []
    for i in range(0, len(records), per):
        recs = records[i:i + per]
        groups = rollout.generate(recs, n, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  seed=seed * 7919 + i)
        for rec, ids in zip(recs, groups, strict=True):
            texts = [collator.tok.decode(c, skip_special_tokens=True) for c in ids]
            correct = accuracy_reward(texts, [f"\\boxed{{{rec.answer}}}"] * len(texts))
            out.append(Group(rec, texts, [len(c) for c in ids], [bool(c) and c[-1] in eos for c in ids],
                             [c or 0.0 for c in correct]))
    return out


def reading(groups: list[Group]) -> dict[str, float]:
    """How well the policy read its photos, over every sample: the share that restate the statement
    exactly, the mean character similarity of the restatement, and the accuracy of the samples that read
    exactly vs the rest (how much of the error is reading and how much solving)."""
    exact = sims = right_exact = right_other = 0.0
    n = 0
    for g in groups:
        truth = g.record.meta.get("statement", "")
        for text, c in zip(g.texts, g.correct, strict=True):
            got = restated(text) or ""
            ok = got == truth
            exact += ok
            right_exact += c if ok else 0.0
            right_other += 0.0 if ok else c
            sims += SequenceMatcher(None, got, truth).ratio()
            n += 1
    return {"exact_read": round(exact / max(n, 1), 4), "similarity": round(sims / max(n, 1), 4),
            "accuracy_when_read_exactly": round(right_exact / exact, 4) if exact else None,
            "accuracy_otherwise": round(right_other / (n - exact), 4) if n > exact else None}


def accuracy(groups: list[Group]) -> float:
    """Share of problems whose first sample is right (single-sample accuracy)."""
    return sum(g.correct[0] for g in groups) / max(len(groups), 1)


@torch.no_grad()
def reward_scores(reward_dir: str | Path, groups: list[Group], *, batch: int = 32) -> list[list[float]]:
    """The reward model's score of every completion (``training.reward.RewardModel``)."""
    from transformers import AutoProcessor

    from training.data import Collator, to_device
    from training.reward import RewardModel
    from training.runs import pick_device

    device = pick_device()
    rm = RewardModel.from_pretrained(reward_dir).to(device).eval()
    collator = Collator(AutoProcessor.from_pretrained(reward_dir, trust_remote_code=False), max_length=1024, max_tiles=1)
    flat = [(g.record, t) for g in groups for t in g.texts]
    scores: list[float] = []
    for i in range(0, len(flat), batch):
        chunk = flat[i:i + batch]
        ids = [collator.response_ids(t) for _, t in chunk]
        b = to_device(collator.completions([r for r, _ in chunk], ids), device)
        scores += rm(b["input_ids"], b["attention_mask"], b.get("pixel_values")).tolist()
    k = len(groups[0].texts) if groups else 0
    return [scores[j * k:(j + 1) * k] for j in range(len(groups))]


def rerank_accuracy(groups: list[Group], scores: list[list[float]] | None, n: int) -> dict[str, float]:
    """Accuracy of each ``engine.rerank`` strategy over the first ``n`` samples of each group."""
    from engine.core import make_candidate
    from engine.rerank import STRATEGIES, rerank

    out: dict[str, float] = {}
    for strategy in STRATEGIES:
        if strategy.startswith("reward") and scores is None:
            continue
        right = 0.0
        for j, g in enumerate(groups):
            cands = [make_candidate(i, g.texts[i], g.lengths[i], "stop" if g.finished[i] else "length")
                     for i in range(n)]
            res = rerank(cands, strategy, scores=scores[j][:n] if scores is not None else None)
            right += g.correct[res.chosen]
        out[strategy] = round(right / max(len(groups), 1), 4)
    out["oracle_any_correct"] = round(sum(max(g.correct[:n]) for g in groups) / max(len(groups), 1), 4)
    return out
