"""Stage ``grpo``: GRPO on ``trl.GRPOTrainer`` with the Selective Sample Buffer, on prompts with gold answers.

    python -m training grpo --config training/recipes/tiny/grpo.yaml max_steps=2
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no -m training grpo --config training/recipes/tiny/grpo.yaml   # 2 CPU processes (gloo)

The project's settings (``training.config.GRPOConfig``) are mapped onto ``trl.GRPOConfig``
(``trl_args``): each process takes ``batch_size`` prompts a step and samples ``num_generations``
completions each; TRL renders the conversational prompts (``tutor.prompts.build_messages``, with
``{"type": "image"}`` parts and an ``images`` column) with the processor's chat template, which is
token-identical to the app's prompt, ``<think>\\n`` pre-fill included. Rewards are TRL reward
functions (``training.rewards``), each logged alone. Advantages are TRL's (group mean, and std when
``scale_rewards``), computed over all processes. Loss: ``loss_type=token`` is TRL's ``dapo``
(tokens summed over the whole step and divided by the global token count), ``sequence`` is TRL's
``grpo`` (mean per sample); log-probs only over completion tokens (``logits_to_keep``).
SSB is the trainer subclass ``training.ssb_trainer.SSBGRPOTrainer``.

Rollouts: ``rollout=hf`` is transformers ``generate`` on the policy (CPU, tests); ``rollout=vllm``
is TRL's vLLM integration (``vllm_mode`` colocate or server, optional sleep mode), whose weight sync
this project limits to the trainable tensors (``ssb_trainer.sync_trainable_only``). vLLM does not
run on this machine (no GPU): that path is configuration only here. ``micro_batch`` splits a step's
completions into gradient-accumulation micro-batches of one rollout (one optimizer step per rollout).

Run directory: ``config.yaml`` (resolved settings), ``metrics.jsonl`` (one row a step, the keys the
mini report reads), ``checkpoints/checkpoint-N`` (TRL/Trainer state + ``ssb-rankR.pt`` per rank),
``ranks/rank-R.json`` and ``final/`` (``save_pretrained`` + processor).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import TrainerCallback

from training import config as config_mod
from training.config import GRPOConfig
from training.data import resolve_data
from training.rewards import reward_functions
from training.runs import apply_trainable, load_policy
from training.ssb import SelectiveSampleBuffer
from tutor.errors import InputError

log = logging.getLogger(__name__)

# TRL's logged names -> the names of metrics.jsonl (the mini report and the tests read these)
METRIC_NAMES = {
    "loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "reward": "reward_total",
    "rewards/accuracy/mean": "reward_accuracy", "rewards/format/mean": "reward_format",
    "rewards/reward_model/mean": "reward_model", "kl": "kl", "completions/mean_length": "completion_length",
    "clip_ratio/region_mean": "clip_fraction", "frac_reward_zero_std": "vanished_group_share",
    "ssb/effective_share": "effective_share", "ssb/effective_share_fresh": "effective_share_fresh",
    "ssb/replayed": "replayed", "ssb/buffer_size": "buffer_size", "entropy": "entropy",
}


def trl_args(cfg: GRPOConfig, out: Path, world: int):
    """``trl.GRPOConfig`` for the project's settings."""
    import trl

    if cfg.grad_accum != 1:
        raise InputError("bad_config_value", "GRPO takes one update per rollout: set grad_accum=1 "
                         "(raise batch_size or the number of processes instead).",
                         "GRPO 每次采样只更新一次：请设 grad_accum=1（可调大 batch_size 或进程数）。")
    bf16 = cfg.mixed_precision == "bf16" and torch.cuda.is_available()
    vllm = {}
    if cfg.rollout == "vllm":
        vllm = dict(use_vllm=True, vllm_mode=cfg.vllm_mode, vllm_gpu_memory_utilization=cfg.vllm_gpu_memory,
                    vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size, vllm_enable_sleep_mode=cfg.vllm_sleep,
                    vllm_server_base_url=cfg.vllm_server_url or None, vllm_max_model_length=cfg.max_length,
                    vllm_importance_sampling_correction=True)
    per_step = cfg.batch_size * cfg.num_generations
    micro = cfg.micro_batch or per_step
    accum = per_step // micro  # micro-batches of one rollout, one optimizer step (B2: not 16 x 12k at once)
    return trl.GRPOConfig(
        output_dir=str(out / "checkpoints"), seed=cfg.seed, data_seed=cfg.seed, max_steps=cfg.max_steps,
        per_device_train_batch_size=micro, gradient_accumulation_steps=accum, steps_per_generation=accum,
        num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high or cfg.epsilon, beta=cfg.kl_beta,
        scale_rewards="group" if cfg.scale_rewards else "none",
        loss_type={"token": "dapo", "sequence": "grpo"}[cfg.loss_type],
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler, max_grad_norm=cfg.max_grad_norm, bf16=bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        logging_steps=cfg.log_every, save_strategy="steps" if cfg.save_every else "no",
        save_steps=cfg.save_every or cfg.max_steps, save_total_limit=cfg.keep_checkpoints or None,
        save_only_model=False, report_to=["tensorboard"] if cfg.tensorboard else [],
        remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), ddp_find_unused_parameters=False,
        ddp_backend=None if torch.cuda.is_available() or world == 1 else "gloo",
        disable_tqdm=False, log_completions=False, **vllm)


def build_dataset(records):
    """TRL rows: conversational ``prompt`` (tutor messages), ``images`` (PIL), gold columns, ``record``."""
    from datasets import Dataset
    from PIL import Image

    rows = []
    for i, r in enumerate(records):
        images = []
        for p in r.images:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        rows.append({"prompt": r.messages, "images": images, "answer": r.answer,
                     "answer_kind": r.answer_kind, "record": i})
    return Dataset.from_list(rows)


class MetricsFile(TrainerCallback):
    """One ``metrics.jsonl`` row per logged step on the main process, in the project's names."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step}
        for k, v in logs.items():
            if isinstance(v, int | float):
                row[METRIC_NAMES.get(k, k)] = v
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _resume_checkpoint(cfg: GRPOConfig, out: Path) -> str | None:
    if not cfg.resume:
        return None
    if cfg.resume != "auto":
        p = Path(cfg.resume)
        if not (p / "trainer_state.json").exists():
            raise InputError("bad_checkpoint", f"Not a training checkpoint: {p}", f"不是训练检查点：{p}")
        return str(p)
    found = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    found = [p for p in found if (p / "trainer_state.json").exists()]
    return str(found[-1]) if found else None


def build_trainer(cfg: GRPOConfig):
    """The configured ``SSBGRPOTrainer`` (policy, rewards, data, buffer); prints and saves the config."""
    import os

    out = Path(cfg.output_dir)
    args = trl_args(cfg, out, int(os.environ.get("WORLD_SIZE", "1")))  # sets up the process group
    world, rank = args.world_size, args.process_index
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        resolved = {"processes": world, **config_mod.to_dict(cfg)}
        print(f"[training] grpo config:\n{json.dumps(resolved, indent=2, ensure_ascii=False)}", flush=True)
        config_mod.dump(cfg, out / "config.yaml")
    with args.main_process_first(desc="demo data"):  # the demo set is written once
        records = resolve_data(cfg, "prompts")
    model, processor = load_policy(cfg)
    apply_trainable(model, cfg.trainable)
    processor.image_processor.max_patches = cfg.max_tiles  # TRL calls the processor without max_patches
    funcs, weights = reward_functions(cfg, records, args.device)
    args.reward_weights = weights
    from training.ssb_trainer import SSBGRPOTrainer

    buffer = SelectiveSampleBuffer(cfg.ssb_size, cfg.ssb_replay_share, cfg.ssb_max_staleness,
                                   seed=cfg.seed * 1009 + rank)
    trainer = SSBGRPOTrainer(model=model, reward_funcs=funcs, args=args, train_dataset=build_dataset(records),
                             processing_class=processor, ssb=buffer, use_ssb=cfg.ssb,
                             callbacks=[MetricsFile(out / "metrics.jsonl")])
    return trainer, processor, out, rank


def train_grpo(cfg: GRPOConfig):
    """Run the GRPO stage; returns the trainer (``.out``: the run directory)."""
    trainer, processor, out, rank = build_trainer(cfg)
    ckpt = _resume_checkpoint(cfg, out)
    if ckpt:
        trainer.load_buffer(ckpt)
        metrics = out / "metrics.jsonl"
        step = json.loads((Path(ckpt) / "trainer_state.json").read_text())["global_step"]
        if rank == 0 and metrics.exists():  # drop rows logged after the checkpoint
            keep = [ln for ln in metrics.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
            metrics.write_text("".join(k + "\n" for k in keep))
    elif rank == 0:
        (out / "metrics.jsonl").unlink(missing_ok=True)
    trainer.train(resume_from_checkpoint=ckpt)
    trainer.write_rank_report(out)
    if cfg.save_final:
        trainer.save_model(str(out / "final"))
        if rank == 0:
            processor.save_pretrained(out / "final")
            config_mod.dump(cfg, out / "final" / "training_config.yaml")
    teardown()
    trainer.out = out
    return trainer


def teardown() -> None:
    """Every rank leaves the process group together and explicitly, before interpreter exit, so no
    rank's gloo group is torn down by garbage collection while a peer (and rank 0's TCPStore) is
    gone or still writing the final checkpoint."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
