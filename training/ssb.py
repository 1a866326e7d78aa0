"""The Selective Sample Buffer (SSB) of R1V2's GRPO stage.

GRPO learns nothing from a group whose samples all got the same reward (all right or all wrong):
every advantage is zero. As training goes on, more groups vanish this way (the report: the share of
effective samples falls below 40%). SSB keeps samples that did carry a signal and replays them in
place of the vanished ones:

    buf = SelectiveSampleBuffer(size=64, replay_share=0.5, max_staleness=8, seed=0)
    batch, stats = buf.select(fresh, step)   # fresh: this step's samples with their advantages
    ...train on batch...
    buf.add([s for s in batch if not s.replayed], step)   # the fresh effective ones, with old log-probs

``select`` returns a batch as long as ``fresh``, slot for slot: effective samples stay where they are
and only vanished slots are filled, with up to ``min(#vanished, replay_share * #fresh)`` buffered
samples drawn without replacement, with probability proportional to |advantage|; vanished slots left
over keep their zero-advantage sample. So the batch (and the token count the loss is divided by)
has the same rows with SSB on and off; with an empty buffer the two are identical (finding M1 of
issue 21: dropping the vanished samples made SSB-on take larger steps). Samples older than ``max_staleness`` steps are dropped before drawing;
beyond ``size`` the oldest go first. A replayed sample keeps the per-token log-probs of the policy
that generated it, so the clipped importance ratio corrects for it being off-policy.

No open framework implements SSB (FACTS.md), so this is ours. Buffer size, replay share and
staleness are not given in the report; the defaults are our choice (see the recipe README).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

EPS = 1e-6


@dataclass
class Sample:
    """One generated completion with what training and replay need."""

    record: int  # index of the prompt record in the dataset
    completion_ids: list[int]
    advantage: float
    reward: float
    step: int  # the step that generated it
    old_logps: list[float] = field(default_factory=list)  # per completion token, behaviour policy
    replayed: bool = False
    prompt_ids: list[int] = field(default_factory=list)  # the prompt as the policy saw it
    pixel_values: Any = None  # the prompt's image tiles (CPU tensor [tiles, 3, H, W]) or None
    num_images: int = 0
    num_tiles: int = 0  # rows of pixel_values (tiles of all its images)

    @property
    def effective(self) -> bool:
        return abs(self.advantage) > EPS


class SelectiveSampleBuffer:
    """Size-bounded, staleness-bounded store of effective samples, drawn by |advantage|."""

    def __init__(self, size: int = 64, replay_share: float = 0.5, max_staleness: int = 8, seed: int = 0):
        self.size, self.replay_share, self.max_staleness = size, replay_share, max_staleness
        self.items: list[Sample] = []
        self.gen = torch.Generator().manual_seed(seed)
        self.total_replayed = 0

    def __len__(self) -> int:
        return len(self.items)

    def add(self, samples: list[Sample], step: int) -> None:
        """Store the effective ones among ``samples``; evict the oldest beyond ``size``."""
        for s in samples:
            if s.effective and not s.replayed:
                self.items.append(replace(s, step=s.step if s.step >= 0 else step))
        if len(self.items) > self.size:
            self.items.sort(key=lambda s: s.step)  # stable: among equals, insertion order
            self.items = self.items[len(self.items) - self.size:]

    def prune(self, step: int) -> None:
        """Drop samples generated more than ``max_staleness`` steps before ``step``."""
        self.items = [s for s in self.items if step - s.step <= self.max_staleness]

    def draw(self, k: int, step: int) -> list[Sample]:
        """Up to ``k`` distinct samples, each draw with probability proportional to |advantage|."""
        self.prune(step)
        k = min(k, len(self.items))
        if k <= 0:
            return []
        weights = torch.tensor([abs(s.advantage) for s in self.items], dtype=torch.float64)
        idx = torch.multinomial(weights, k, replacement=False, generator=self.gen).tolist()
        self.total_replayed += k
        return [replace(self.items[i], replayed=True) for i in idx]

    def select(self, fresh: list[Sample], step: int) -> tuple[list[Sample], dict[str, float]]:
        """This step's training samples, slot for slot: the effective fresh ones, and replays in the
        first vanished slots (the rest of the vanished slots keep their zero-advantage samples)."""
        effective = [s for s in fresh if s.effective]
        vanished = [i for i, s in enumerate(fresh) if not s.effective]
        limit = int(self.replay_share * len(fresh))
        replay = self.draw(min(len(vanished), limit), step)
        batch = list(fresh)
        for i, r in zip(vanished, replay, strict=False):
            batch[i] = r
        n = max(len(fresh), 1)
        stats = {
            "effective_share_fresh": len(effective) / n,
            "effective_share": (len(effective) + len(replay)) / n,
            "replayed": float(len(replay)),
            "buffer_size": float(len(self.items)),
        }
        return batch, stats

    def state_dict(self) -> dict:
        return {"items": [asdict(s) for s in self.items], "gen": self.gen.get_state(),
                "total_replayed": self.total_replayed}

    def load_state_dict(self, state: dict) -> None:
        self.items = [Sample(**d) for d in state["items"]]
        self.gen.set_state(state["gen"])
        self.total_replayed = int(state["total_replayed"])
