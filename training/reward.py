"""Stage ``reward``: the multimodal reward model (Skywork-VL-Reward style) on preference pairs.

    python -m training reward --config training/recipes/tiny/reward.yaml max_steps=2

Model: a VLM backbone (here the native InternVL class; Skywork-VL-Reward uses Qwen2.5-VL) whose
final hidden state at the last non-pad token goes through a scalar value head. Input: the prompt
as ``tutor.prompts`` renders it and the response, ending with ``<|im_end|>`` (right padding, so the
last non-pad token is that ``<|im_end|>``). Loss: Bradley-Terry ``-log s(r+ - r- - margin)`` with
an optional margin per pair and optional reward centering (``training.losses.bt_loss``).

Saved format (``output_dir/final``), the one Skywork-VL-Reward ships and ``engine.reward_tiny``
builds: the backbone as a normal checkpoint (``save_pretrained`` + processor) and the head alone in
``value_head.safetensors`` with tensors ``v_head.summary.weight`` (shape ``[1, hidden]``) and
``v_head.summary.bias`` (``[1]``). ``RewardModel.from_pretrained(dir)`` loads both back; the GRPO
stage scores with it. Written here: no library trains a reward head on a VLM with images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from training.config import RewardConfig
from training.data import Collator, batch_indices, resolve_data, to_device
from training.losses import bt_loss
from training.runs import Run, apply_trainable, load_policy

log = logging.getLogger(__name__)

HEAD_FILE = "value_head.safetensors"
HEAD_WEIGHT = "v_head.summary.weight"
HEAD_BIAS = "v_head.summary.bias"


class ValueHead(nn.Module):
    """``summary``: Linear(hidden -> 1), the name the Skywork checkpoints use."""

    def __init__(self, hidden: int):
        super().__init__()
        self.summary = nn.Linear(hidden, 1)


class RewardModel(nn.Module):
    """Backbone (``model``, kept ``lm_head`` frozen and unused) + ``v_head``; parameter names equal
    the native InternVL class's plus ``v_head.summary.*``, so ``trainable`` part names still apply."""

    def __init__(self, backbone: nn.Module, *, seed: int = 0):
        super().__init__()
        self.model = backbone.model
        self.lm_head = backbone.lm_head
        self._backbone = [backbone]  # a list, so the module is not registered twice
        hidden = backbone.config.get_text_config().hidden_size
        self.v_head = ValueHead(hidden)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.v_head.summary.weight.copy_(torch.randn(1, hidden, generator=gen) / hidden**0.5)
            self.v_head.summary.bias.zero_()

    @property
    def backbone(self) -> nn.Module:
        return self._backbone[0]

    @property
    def config(self):
        return self.backbone.config

    def forward(self, input_ids, attention_mask, pixel_values=None, **_) -> torch.Tensor:
        """Scores ``[B]``: the value head at each row's last non-pad token (right padding)."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                         use_cache=False)
        hidden = out.last_hidden_state
        last = attention_mask.sum(-1) - 1
        h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.v_head.summary(h.to(self.v_head.summary.weight.dtype)).squeeze(-1).float()

    def save(self, path: str | Path, state_dict: dict | None = None) -> None:
        """Backbone via ``save_pretrained`` + ``value_head.safetensors``."""
        from safetensors.torch import save_file

        state = state_dict if state_dict is not None else self.state_dict()
        head = {k: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith("v_head.")}
        body = {k: v for k, v in state.items() if not k.startswith("v_head.")}
        Path(path).mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path, state_dict=body)
        save_file(head, str(Path(path) / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype = torch.float32) -> RewardModel:
        from safetensors.torch import load_file
        from transformers import InternVLForConditionalGeneration

        backbone = InternVLForConditionalGeneration.from_pretrained(path, dtype=dtype)
        rm = cls(backbone)
        head = load_file(str(Path(path) / HEAD_FILE))
        rm.v_head.summary.weight.data.copy_(head[HEAD_WEIGHT])
        rm.v_head.summary.bias.data.copy_(head[HEAD_BIAS])
        return rm.eval()


def train_reward(cfg: RewardConfig) -> Run:
    """Run the reward-model stage; returns the finished ``Run``."""
    run = Run(cfg, "reward")
    records = resolve_data(cfg, "pairs")
    backbone, processor = load_policy(cfg)
    model = RewardModel(backbone, seed=cfg.seed)
    apply_trainable(model, cfg.trainable)
    collator = Collator(processor, max_length=cfg.max_length, max_tiles=cfg.max_tiles)
    model = run.setup(model)
    acc = run.accelerator

    def step_fn(step: int) -> dict[str, float]:
        sums: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            idx = batch_indices(step * cfg.grad_accum + micro, cfg.batch_size, len(records), cfg.seed,
                                acc.process_index, acc.num_processes)
            recs = [records[i] for i in idx]
            batch = to_device(collator.pairs(recs), run.device)
            b = len(recs)
            with run.no_sync(micro == cfg.grad_accum - 1):
                scores = model(batch["input_ids"], batch["attention_mask"], batch.get("pixel_values"))
                total, parts = bt_loss(scores[:b], scores[b:], margin=batch["margin"] if cfg.use_margin else None,
                                       center_coef=cfg.center_rewards_coef)
                run.backward(total / cfg.grad_accum)
            parts["loss"] = total.item()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
        return sums

    run.loop(step_fn)
    if cfg.save_final:
        run.save_final(processor, save_fn=lambda path, m, state: m.save(path, state))
    return run
