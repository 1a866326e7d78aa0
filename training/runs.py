"""Run bookkeeping shared by every stage: accelerate setup, freezing, optimizer, the step loop,
metrics JSONL, tqdm, checkpoints and resume; and the shared base of the stages on TRL trainers
(``trl_args``, ``announce``, ``MetricsFile``, ``SnapshotReference``, ``resume_path``, ``finish``).

    run = Run(cfg, stage="sft")                       # prints + saves the resolved config
    model, processor = load_policy(cfg)
    names = apply_trainable(model, cfg.trainable)     # freeze everything else
    run.setup(model, extra_state={"bco": running})    # optimizer, scheduler, accelerate.prepare, resume
    run.loop(step_fn)                                  # step_fn(step) -> {"loss": float, ...}

Scale-out is accelerate's: the same code runs under ``accelerate launch -m training STAGE ...`` with
DDP, FSDP2 or DeepSpeed ZeRO-3 (configs in ``training/recipes/full``). A checkpoint is
``accelerator.save_state`` (model, optimizer, scheduler, RNG of every process, and each stage's
extra state such as the BCO delta or the sample buffer) plus ``config.yaml`` and
``trainer_state.json``; ``resume=auto`` picks the newest one and the next step equals an
uninterrupted run's (data order is a pure function of the step, see ``data.batch_indices``).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from training import config as config_mod
from tutor.errors import InputError


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when there is one, else the CPU (as ``engine.loading`` picks)."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


log = logging.getLogger(__name__)

# Names for groups of parameters of the native InternVL class (and the reward model's head).
PARTS = {
    "vision": ("model.vision_tower.",),
    "adapter": ("model.multi_modal_projector.",),
    "llm": ("model.language_model.", "lm_head."),
    "lm_head": ("lm_head.",),
    "embeddings": ("model.language_model.embed_tokens.",),
    "value_head": ("v_head.",),
}


def apply_trainable(model: torch.nn.Module, parts: list[str]) -> list[str]:
    """Freeze every parameter except those of ``parts`` (names from ``PARTS``, ``all`` or a name
    prefix). Returns the trainable parameter names; raises InputError if none matched."""
    prefixes: list[str] = []
    for p in parts:
        prefixes += [""] if p == "all" else list(PARTS.get(p, (p,)))
    names = []
    for name, param in model.named_parameters():
        on = any(name.startswith(pre) for pre in prefixes)
        param.requires_grad_(on)
        if on:
            names.append(name)
    if not names:
        raise InputError("nothing_trainable", f"No parameters match trainable={parts}.",
                         f"trainable={parts} 没有匹配到任何参数。")
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("trainable: %s (%d of %d parameters, %.2f%%)", parts, n_train, n_all, 100 * n_train / n_all)
    return names


def load_policy(cfg: config_mod.BaseConfig):
    """The starting model (train mode, float32 on CPU / bf16 weights with bf16 mixed precision) and processor."""
    from engine.loading import load_model

    dtype = "bfloat16" if cfg.mixed_precision == "bf16" and torch.cuda.is_available() else "float32"
    lm = load_model(cfg.model, quantization=None, device="cpu", dtype=dtype)
    model = lm.model.train()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model, lm.processor


def reference_policy(ref_model: str, model: torch.nn.Module, accelerator=None):
    """The frozen reference: a ``SnapshotReference`` of ``model``'s trainable parameters when
    ``ref_model`` is empty, else that preset/checkpoint loaded frozen (prepared by accelerate in
    evaluation mode when running distributed, so ZeRO-3/FSDP shard it too)."""
    if not ref_model:
        ref = SnapshotReference(model)
        return ref.to(accelerator.device) if accelerator is not None else ref
    from engine.loading import load_model

    ref = load_model(ref_model, quantization=None, device="cpu",
                     dtype=str(next(model.parameters()).dtype).removeprefix("torch.")).model.eval()
    ref.requires_grad_(False)
    if accelerator is not None and accelerator.num_processes > 1:
        return accelerator.prepare_model(ref, evaluation_mode=True)
    return ref.to(accelerator.device if accelerator is not None else "cpu")


class _Counter:
    """The step counter as a checkpointed object."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, s: dict) -> None:
        self.step = int(s["step"])


class Run:
    """One training run: output dir, metrics, accelerate, checkpoints."""

    def __init__(self, cfg: config_mod.BaseConfig, stage: str):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg, self.stage = cfg, stage
        self.out = Path(cfg.output_dir)
        # cpu=True on a machine without CUDA: accelerate then joins the processes that
        # ``accelerate launch --multi_gpu`` started in one gloo group instead of each running alone
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        set_seed(cfg.seed)
        self.counter = _Counter()
        self.metrics_path = self.out / "metrics.jsonl"
        self._tb = None
        announce(cfg, stage, self.accelerator.num_processes, self.is_main)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def device(self):
        return self.accelerator.device

    def setup(self, model: torch.nn.Module, extra_state: dict[str, Any] | None = None):
        """Optimizer (AdamW on trainable params), scheduler, ``accelerator.prepare``, then resume."""
        from accelerate.utils import DistributedType
        from transformers import get_scheduler

        if self.accelerator.distributed_type == DistributedType.DEEPSPEED and self.cfg.grad_accum > 1:
            # accelerate's DeepSpeed backward() also steps the engine: accumulate in DeepSpeed instead
            raise InputError("bad_config_value", "Under DeepSpeed set grad_accum=1 and use the DeepSpeed "
                             "config's gradient_accumulation_steps.",
                             "在 DeepSpeed 下请设 grad_accum=1，并在 DeepSpeed 配置中设置 gradient_accumulation_steps。")
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.cfg.learning_rate, weight_decay=self.cfg.weight_decay)
        # accelerate's prepared scheduler advances once per process on each step: scale to match
        world = self.accelerator.num_processes
        sched = get_scheduler(self.cfg.lr_scheduler, opt, num_warmup_steps=self.cfg.warmup_steps * world,
                              num_training_steps=self.cfg.max_steps * world)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, opt, sched)
        self.accelerator.register_for_checkpointing(self.counter)
        self.extra_state = extra_state or {}
        for obj in self.extra_state.values():
            self.accelerator.register_for_checkpointing(obj)
        self._maybe_resume()
        return self.model

    # ------------------------------------------------------------------------------- checkpoints

    def checkpoints(self) -> list[Path]:
        root = self.out / "checkpoints"
        found = [p for p in root.glob("step-*") if (p / "trainer_state.json").exists()] if root.is_dir() else []
        return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))

    def _maybe_resume(self) -> None:
        r = self.cfg.resume
        if not r:
            return
        if r == "auto":
            found = self.checkpoints()
            if not found:
                log.info("resume=auto: no checkpoint under %s, starting fresh", self.out)
                return
            path = found[-1]
        else:
            path = Path(r)
            if not (path / "trainer_state.json").exists():
                raise InputError("bad_checkpoint", f"Not a training checkpoint: {path}", f"不是训练检查点：{path}")
        self.accelerator.load_state(str(path))
        log.info("resumed from %s at step %d", path, self.counter.step)
        if self.is_main and self.metrics_path.exists():  # drop lines logged after the checkpoint
            keep = [ln for ln in self.metrics_path.read_text().splitlines()
                    if ln.strip() and json.loads(ln)["step"] <= self.counter.step]
            self.metrics_path.write_text("".join(k + "\n" for k in keep))

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoints" / f"step-{self.counter.step:06d}"
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path))
        if self.is_main:
            config_mod.dump(self.cfg, path / "config.yaml", processes=self.accelerator.num_processes)
            (path / "trainer_state.json").write_text(json.dumps(
                {"step": self.counter.step, "stage": self.stage, "max_steps": self.cfg.max_steps}))
            keep = self.cfg.keep_checkpoints
            if keep > 0:
                for old in self.checkpoints()[:-keep]:
                    shutil.rmtree(old, ignore_errors=True)
        return path

    def save_final(self, processor, save_fn: Callable[[Path, Any, dict], None] | None = None) -> Path:
        """``output_dir/final``: the model (``save_pretrained``, or ``save_fn(path, model, state_dict)``),
        the processor and the resolved config. The full state dict is gathered on every process
        (needed under FSDP/ZeRO-3) and written by the main one."""
        path = self.out / "final"
        self.accelerator.wait_for_everyone()
        state = self.accelerator.get_state_dict(self.model)
        model = self.accelerator.unwrap_model(self.model)
        if self.is_main:
            if save_fn is not None:
                save_fn(path, model, state)
            else:
                model.save_pretrained(path, state_dict=state, save_function=self.accelerator.save)
            processor.save_pretrained(path)
            config_mod.dump(self.cfg, path / "training_config.yaml")
        return path

    # -------------------------------------------------------------------------------------- loop

    def log_metrics(self, row: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if self.cfg.tensorboard:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(str(self.out / "tb"))
            for k, v in row.items():
                if isinstance(v, int | float) and k != "step":
                    self._tb.add_scalar(f"{self.stage}/{k}", v, row["step"])

    def loop(self, step_fn: Callable[[int], dict[str, float]]) -> list[dict]:
        """Run steps ``counter.step .. max_steps-1``. ``step_fn(step)`` does forward + backward for
        the step's micro-batches and returns its metrics; here: clip, optimizer and scheduler step,
        metrics line, checkpoint. Non-finite losses stop the run with a clear error."""
        from tqdm.auto import tqdm

        cfg, rows = self.cfg, []
        bar = tqdm(total=cfg.max_steps, initial=self.counter.step, desc=self.stage, disable=not self.is_main)
        while self.counter.step < cfg.max_steps:
            step, t0 = self.counter.step, time.perf_counter()
            parts = step_fn(step)
            if not math.isfinite(parts.get("loss", 0.0)):
                raise RuntimeError(f"{self.stage}: non-finite loss at step {step + 1}: {parts}")
            grad_norm, lr = None, self.scheduler.get_last_lr()[0]
            if parts.pop("_updated", True):
                if cfg.max_grad_norm > 0:
                    gn = self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                    grad_norm = None if gn is None else float(gn)  # DeepSpeed clips inside its engine
                self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.counter.step += 1
            row = {"step": self.counter.step, "lr": lr, **parts,
                   "time_s": round(time.perf_counter() - t0, 4)}
            if grad_norm is not None:
                row["grad_norm"] = grad_norm
            rows.append(row)
            if self.counter.step % cfg.log_every == 0 or self.counter.step == cfg.max_steps:
                self.log_metrics(row)
            bar.update(1)
            bar.set_postfix(loss=f"{parts.get('loss', float('nan')):.4f}")
            if (cfg.save_every and self.counter.step % cfg.save_every == 0) or self.counter.step == cfg.max_steps:
                self.save_checkpoint()
        bar.close()
        if self._tb is not None:
            self._tb.close()
        return rows

    def backward(self, loss: torch.Tensor, last: bool = True) -> None:
        self.accelerator.backward(loss)

    def no_sync(self, last: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        import contextlib

        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)


# ------------------------------------------------------------------- shared base of the TRL stages


def announce(cfg: config_mod.BaseConfig, stage: str, processes: int, is_main: bool) -> None:
    """Print the resolved config (with ``processes: N``, the number of processes really joined in
    the run) and save it as ``output_dir/config.yaml``; only the main process does either."""
    if not is_main:
        return
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = json.dumps({**config_mod.to_dict(cfg), "processes": processes}, indent=2, ensure_ascii=False)
    print(f"[training] {stage} config:\n{resolved}", flush=True)
    config_mod.dump(cfg, out / "config.yaml", processes=processes)


def trl_args(cfg: config_mod.BaseConfig, args_cls, **extra):
    """A TRL/transformers ``TrainingArguments`` subclass (``args_cls``, e.g. ``trl.DPOConfig``) from the
    project's config. On a machine without CUDA ``use_cpu`` and the gloo backend are set: with
    ``accelerate launch --multi_gpu --num_processes N`` that gives a real N-process CPU run (accelerate's
    ``--cpu`` flag starts one process). Checkpoints every ``save_every`` steps and at the end; the
    Trainer saves each process's RNG state in them."""
    import os

    cpu = not torch.cuda.is_available()
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1  # set by accelerate launch / torchrun
    save_steps = cfg.save_every if cfg.save_every > 0 else cfg.max_steps
    kw = dict(
        output_dir=str(Path(cfg.output_dir) / "checkpoints"), seed=cfg.seed, data_seed=cfg.seed,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps, lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm, logging_steps=cfg.log_every, save_strategy="steps",
        save_steps=save_steps, save_total_limit=cfg.keep_checkpoints or None,
        bf16=cfg.mixed_precision == "bf16", fp16=cfg.mixed_precision == "fp16",
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        report_to=["tensorboard"] if cfg.tensorboard else [],
        use_cpu=cpu, ddp_backend="gloo" if cpu and several else None, dataloader_num_workers=0,
        disable_tqdm=False, save_only_model=False,
    )
    kw.update(extra)
    return args_cls(**kw)


def resume_path(cfg: config_mod.BaseConfig) -> str | None:
    """The checkpoint a TRL stage resumes from: ``resume`` as a dir, or the newest for ``auto``."""
    from transformers.trainer_utils import get_last_checkpoint

    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        root = Path(cfg.output_dir) / "checkpoints"
        found = get_last_checkpoint(str(root)) if root.is_dir() else None
        if not found:
            log.info("resume=auto: no checkpoint under %s, starting fresh", root)
        return found
    if not (Path(cfg.resume) / "trainer_state.json").exists():
        raise InputError("bad_checkpoint", f"Not a training checkpoint: {cfg.resume}", f"不是训练检查点：{cfg.resume}")
    return cfg.resume


def metrics_callback(out: str | Path, rename: dict[str, str] | None = None):
    """A ``TrainerCallback`` appending each logged row to ``out/metrics.jsonl`` (main process only),
    as ``{"step": N, "loss": ..., ...}`` with TRL's keys renamed by ``rename``. On resume the lines
    after the checkpoint's step are dropped first."""
    from transformers import TrainerCallback

    path = Path(out) / "metrics.jsonl"
    names = rename or {}

    class MetricsFile(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if state.is_world_process_zero and path.exists():
                keep = [ln for ln in path.read_text().splitlines()
                        if ln.strip() and json.loads(ln)["step"] <= state.global_step]
                path.write_text("".join(k + "\n" for k in keep))

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            row = {"step": state.global_step, **{names.get(k, k): v for k, v in logs.items()}}
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return MetricsFile()


class SnapshotReference(torch.nn.Module):
    """The frozen reference for adapter-only training without a second model: a copy of the policy's
    *trainable* parameters only (buffers of this module), and ``forward`` runs the live policy with
    them swapped in (``torch.func.functional_call``). Being a module, it moves with ``.to()`` when a
    trainer prepares it; and each call casts the copy to the live parameter's device and dtype, so a
    policy moved after the snapshot was taken still gets a reference on its own device (the crash
    "mixed dtype" / "expected all tensors on the same device" of the old ``FrozenSnapshot``).
    Single process or DDP; under FSDP/ZeRO-3 give ``ref_model`` instead (TRL shards that one)."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "_policy", policy)  # not a submodule: .to()/parameters() leave it alone
        self.config = policy.config
        self._names = {}
        for name, p in policy.named_parameters():
            if p.requires_grad:
                key = name.replace(".", "__")
                self.register_buffer(key, p.detach().clone(), persistent=False)
                self._names[name] = key

    def snapshot(self) -> dict[str, torch.Tensor]:
        live = dict(self._policy.named_parameters())
        out = {}
        for name, key in self._names.items():
            ref, p = getattr(self, key), live[name]
            if ref.device != p.device or ref.dtype != p.dtype:
                ref = ref.to(device=p.device, dtype=p.dtype)
                setattr(self, key, ref)
            out[name] = ref
        return out

    def numel(self) -> int:
        return sum(b.numel() for b in self.buffers())

    @torch.no_grad()
    def forward(self, *args, **kw):
        return torch.func.functional_call(self._policy, self.snapshot(), args=args, kwargs=kw, strict=False)


def rank_digest(model: torch.nn.Module) -> str:
    """A short hash of the trainable parameters, for checking that every process ends identical."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def end_distributed() -> None:
    """Wait for every process, then destroy the process group (no-op in a single process). Leaving
    the group to the interpreter's exit lets one rank tear down its gloo sockets while another still
    has them open, which can abort that rank after the run finished; the barrier and the explicit
    destroy keep the teardown ordered. ``python -m training`` calls it after every stage."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def finish(accelerator, stage: str, model: torch.nn.Module, steps: int) -> None:
    """End of a run on every process: print this rank's line (rank, world size, steps, digest of its
    trainable weights: the proof that N processes took part and ended identical), then
    ``end_distributed``."""
    print(f"[training] {stage} rank {accelerator.process_index}/{accelerator.num_processes}: "
          f"steps={steps} weights={rank_digest(model)}", flush=True)
    end_distributed()


def load_checkpoint_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
    """Load a Trainer checkpoint's ``model.safetensors`` into ``model`` (single process / DDP).

    transformers 5 saves checkpoints in the original key layout (``multi_modal_projector.*`` for the
    native InternVL, whose modules are ``model.multi_modal_projector.*``), and the Trainer's resume
    loads them back with ``strict=False``, so nothing is loaded and the run silently restarts from
    its starting weights. Here the keys are mapped with the same reversal ``save_pretrained`` used
    and loaded strictly."""
    from safetensors.torch import load_file
    from transformers.core_model_loading import revert_weight_conversion

    own = model.state_dict()
    saved = revert_weight_conversion(model, dict(own))
    by_ptr = {t.data_ptr(): k for k, t in own.items()}
    names = {k: by_ptr.get(t.data_ptr(), k) for k, t in saved.items()}
    state = load_file(str(Path(checkpoint) / "model.safetensors"), device="cpu")
    model.load_state_dict({names.get(k, k): v for k, v in state.items()}, strict=True)
