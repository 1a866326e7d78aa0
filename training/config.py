"""One config dataclass per training stage, loaded from YAML and ``key=value`` overrides.

    from training.config import load_config
    cfg = load_config("sft", "training/recipes/tiny/sft.yaml", ["max_steps=2", "trainable=[adapter]"])

Every field carries ``metadata={"help": ...}`` (``python -m training sft --help`` prints them). The
defaults run a tiny job on a CPU (the ``tiny-random`` model and a demo dataset built from the shipped
example problems); the YAML recipes under ``training/recipes/`` hold real settings. Overrides are
parsed as YAML scalars/lists (``lr=1e-5``, ``trainable=[adapter,llm]``, ``resume=auto``) and checked
against the field's type, so a typo in a key or a wrong type fails before anything is loaded.

Why our own parser rather than ``transformers.HfArgumentParser``: that one reads ``--key value``
flags, not the ``key=value`` overrides after a YAML file that the project's CLI contract names, and
it has no list-of-str-from-YAML handling for our ``trainable`` parts; the dataclasses stay the same.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tutor.errors import InputError


def _bad(code: str, en: str, zh: str, detail: str = "") -> InputError:
    return InputError(code, en, zh, detail)


@dataclass
class BaseConfig:
    """Settings every stage shares: model, data, optimisation, run bookkeeping, scale-out."""

    model: str = field(default="tiny-random", metadata={
        "help": "Policy to start from: an engine preset (tiny-random, r1v2-38b, ...) or a native checkpoint dir."})
    data: str = field(default="", metadata={
        "help": "Training JSONL (image paths relative to it). Empty: build the demo set from assets/examples."})
    output_dir: str = field(default="runs/tiny", metadata={
        "help": "Run directory: metrics.jsonl, config.yaml, checkpoints/step-N, final/."})
    seed: int = field(default=0, metadata={"help": "Seed for init, data order and sampling."})
    max_steps: int = field(default=4, metadata={"help": "Optimizer steps to run (in total, counting resumed ones)."})
    batch_size: int = field(default=2, metadata={"help": "Records per micro-batch on each process."})
    grad_accum: int = field(default=1, metadata={"help": "Micro-batches accumulated per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    lr_scheduler: str = field(default="cosine", metadata={
        "help": "Schedule after warm-up: cosine, linear or constant (transformers.get_scheduler)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 = off)."})
    max_length: int = field(default=2048, metadata={
        "help": "Most tokens per sequence, image tokens included. Responses are cut at the end to fit; "
                "a prompt that alone does not fit is refused (image tokens are never cut)."})
    max_tiles: int = field(default=1, metadata={
        "help": "Most 448px tiles per image (InternVL dynamic tiling; R1V2 uses 12, +1 thumbnail)."})
    trainable: list[str] = field(default_factory=lambda: ["adapter"], metadata={
        "help": "Parts that train; the rest is frozen. Names: vision, adapter, llm, lm_head, embeddings, "
                "value_head, all, or a parameter-name prefix. R1V2 found adapter-only best."})
    mixed_precision: str = field(default="no", metadata={"help": "accelerate mixed precision: no, bf16 or fp16."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass (needed at 38B scale)."})
    log_every: int = field(default=1, metadata={"help": "Write a metrics line every N steps."})
    save_every: int = field(default=0, metadata={"help": "Checkpoint every N steps (0 = only at the end)."})
    keep_checkpoints: int = field(default=2, metadata={"help": "Newest checkpoints to keep (0 = all)."})
    resume: str = field(default="", metadata={
        "help": "Resume from a checkpoint dir, or 'auto' for the newest under output_dir; empty = fresh run."})
    tensorboard: bool = field(default=False, metadata={
        "help": "Also log to TensorBoard under output_dir/tb (needs the tensorboard package)."})
    save_final: bool = field(default=True, metadata={
        "help": "Write output_dir/final as a loadable checkpoint (save_pretrained + processor)."})
    demo_size: int = field(default=8, metadata={"help": "Records in the demo dataset when data is empty."})


@dataclass
class SFTConfig(BaseConfig):
    """Supervised fine-tuning on conversations; adapter pre-training is SFT with trainable=[adapter]."""

    output_dir: str = field(default="runs/tiny-sft", metadata={"help": "Run directory."})


@dataclass
class MPOConfig(BaseConfig):
    """Mixed Preference Optimisation: DPO (sigmoid) + BCO with running delta + SFT on the chosen."""

    output_dir: str = field(default="runs/tiny-mpo", metadata={
        "help": "Run directory: metrics.jsonl, config.yaml, checkpoints/checkpoint-N (TRL's), final/."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate (AdamW)."})
    beta: float = field(default=0.1, metadata={"help": "Temperature of the implicit reward beta*log(pi/ref)."})
    dpo_weight: float = field(default=0.8, metadata={"help": "Weight of the DPO (sigmoid) term."})
    bco_weight: float = field(default=0.2, metadata={"help": "Weight of the BCO term (with running delta)."})
    sft_weight: float = field(default=1.0, metadata={"help": "Weight of the length-normalised NLL on the chosen."})
    ref_model: str = field(default="", metadata={
        "help": "Frozen reference policy (preset or dir). Empty: a frozen copy of the starting model."})


@dataclass
class RewardConfig(BaseConfig):
    """Multimodal reward model: VLM backbone + scalar head on the last token, Bradley-Terry loss."""

    output_dir: str = field(default="runs/tiny-reward", metadata={"help": "Run directory."})
    trainable: list[str] = field(default_factory=lambda: ["value_head", "adapter"], metadata={
        "help": "Parts that train (value_head, adapter, llm, vision, ...)."})
    use_margin: bool = field(default=False, metadata={
        "help": "Subtract each pair's 'margin' field inside the BT loss: -log s(r+ - r- - m)."})
    center_rewards_coef: float = field(default=0.0, metadata={
        "help": "Reward centering: add coef * mean((r+ + r-)^2) so scores stay near zero."})


@dataclass
class GRPOConfig(BaseConfig):
    """GRPO with the Selective Sample Buffer; rewards from tutor.answers and an optional reward model."""

    output_dir: str = field(default="runs/tiny-grpo", metadata={"help": "Run directory."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak learning rate (AdamW)."})
    batch_size: int = field(default=2, metadata={"help": "Prompts per step on each process."})
    num_generations: int = field(default=4, metadata={"help": "Samples per prompt (the group size)."})
    micro_batch: int = field(default=0, metadata={
        "help": "Completions per forward/backward on each process (0 = all batch_size * num_generations at "
                "once); must divide batch_size * num_generations. Still one optimizer step per rollout."})
    max_new_tokens: int = field(default=24, metadata={"help": "Most generated tokens per sample."})
    temperature: float = field(default=1.0, metadata={"help": "Rollout sampling temperature."})
    top_p: float = field(default=1.0, metadata={"help": "Rollout nucleus sampling."})
    epsilon: float = field(default=0.2, metadata={"help": "Lower clip: ratio >= 1 - epsilon."})
    epsilon_high: float = field(default=0.0, metadata={
        "help": "Upper clip 1 + epsilon_high (DAPO clip-higher); 0 = same as epsilon."})
    kl_beta: float = field(default=0.0, metadata={"help": "Weight of the k3 KL to the reference (0 = no ref)."})
    scale_rewards: bool = field(default=True, metadata={"help": "Divide advantages by the group's std."})
    loss_type: str = field(default="token", metadata={
        "help": "Aggregation: token (sum over all tokens / tokens, DAPO) or sequence (mean per sample, GRPO)."})
    accuracy_weight: float = field(default=1.0, metadata={"help": "Weight of tutor.answers.accuracy_reward."})
    format_weight: float = field(default=0.5, metadata={"help": "Weight of tutor.answers.format_reward."})
    reward_model: str = field(default="", metadata={
        "help": "Reward-model dir (from the reward stage: backbone + value_head.safetensors); empty = none."})
    reward_model_weight: float = field(default=0.0, metadata={"help": "Weight of the reward-model score."})
    rollout: str = field(default="hf", metadata={
        "help": "Rollout backend: hf (transformers generate) or vllm (TRL's vLLM integration, GPU only)."})
    vllm_gpu_memory: float = field(default=0.3, metadata={"help": "vLLM gpu_memory_utilization (colocated)."})
    vllm_mode: str = field(default="colocate", metadata={
        "help": "TRL's vLLM mode: colocate (an engine inside each training process) or server (trl vllm-serve)."})
    vllm_tensor_parallel_size: int = field(default=1, metadata={"help": "vLLM tensor parallel size (colocate)."})
    vllm_sleep: bool = field(default=False, metadata={
        "help": "Colocate: put the vLLM engine to sleep (weights and KV cache off the GPU) during the update."})
    vllm_server_url: str = field(default="", metadata={"help": "Server mode: the trl vllm-serve URL."})
    extra_rewards: list[str] = field(default_factory=list, metadata={
        "help": "More reward functions as module:function import paths (TRL signature), weight 1.0 each."})
    ssb: bool = field(default=True, metadata={"help": "Use the Selective Sample Buffer."})
    ssb_size: int = field(default=64, metadata={"help": "Most samples held in the buffer (oldest evicted)."})
    ssb_replay_share: float = field(default=0.5, metadata={
        "help": "Most share of a step's samples that may be replayed from the buffer."})
    ssb_max_staleness: int = field(default=8, metadata={
        "help": "Buffered samples older than this many steps are dropped."})


@dataclass
class AssembleConfig:
    """Stage ``assemble``: join a vision tower and a language model with a new MLP adapter."""

    vision: str = field(default="", metadata={
        "help": "Vision tower: local dir or hub id (native InternVLVisionModel or original InternViT). "
                "Empty: build tiny parts."})
    llm: str = field(default="", metadata={"help": "Reasoning LM (Qwen2 causal LM): local dir or hub id."})
    output_dir: str = field(default="runs/tiny-assembled", metadata={"help": "Where the checkpoint goes."})
    seed: int = field(default=0, metadata={"help": "Seed of the new adapter's initialisation."})
    downsample_ratio: float = field(default=0.5, metadata={"help": "Pixel shuffle ratio (0.5: 1024 -> 256 tokens)."})
    max_tiles: int = field(default=12, metadata={"help": "max_patches of the saved processor (R1V2: 12)."})
    dtype: str = field(default="float32", metadata={"help": "Saved dtype: float32 or bfloat16 (full size)."})


@dataclass
class EvalConfig:
    """Stage ``eval``: accuracy on a benchmark-format JSONL (``training.eval``): Pass@1 and best-of-n."""

    model: str = field(default="tiny-random", metadata={"help": "Engine preset or checkpoint dir (unused with server)."})
    server: str = field(default="", metadata={"help": "OpenAI-compatible server URL (engine.http); key in R1V_API_KEY."})
    served_model: str = field(default="", metadata={"help": "Model name on the server; empty: the server's only one."})
    data: str = field(default="assets/bench/sample.jsonl", metadata={
        "help": "Benchmark JSONL: question, images (relative to the file), options, answer, answer_type, subject."})
    out: str = field(default="runs/eval", metadata={"help": "Directory for results.md, results.json, samples.jsonl."})
    n: int = field(default=4, metadata={"help": "Candidates per problem that each rerank strategy chooses among."})
    k: int = field(default=1, metadata={"help": "Samples per problem that Pass@1 is averaged over."})
    rerank: list[str] = field(default_factory=list, metadata={
        "help": "Strategies to report (engine.rerank): first, vote, reward, reward+vote; empty: all that apply."})
    reward: str = field(default="", metadata={"help": "Reward model (preset or dir) for the reward strategies."})
    max_new_tokens: int = field(default=0, metadata={"help": "Most new tokens per sample (0: the preset's default)."})
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature (R1V2 model card)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling."})
    repetition_penalty: float = field(default=1.05, metadata={"help": "Repetition penalty."})
    seed: int = field(default=0, metadata={"help": "Seed; problem i samples with seed + i."})
    limit: int = field(default=0, metadata={"help": "Evaluate only the first N problems (0: all)."})
    max_tiles: int = field(default=0, metadata={"help": "Most 448px tiles per image (0: the preset's)."})


STAGE_CONFIGS: dict[str, type] = {
    "assemble": AssembleConfig, "sft": SFTConfig, "mpo": MPOConfig, "reward": RewardConfig, "grpo": GRPOConfig,
    "eval": EvalConfig,
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check/convert one value to the field type; raise InputError naming the key."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, args[0])
    try:
        if origin is list:
            (inner,) = typing.get_args(tp) or (str,)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise TypeError
            return [_coerce(name, v, inner) for v in value]
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise _bad("bad_config_value", f"Config key '{name}' expects {tp}, got {value!r}.",
               f"配置项“{name}”应为 {tp}，而不是 {value!r}。")


def build_config(stage: str, values: dict[str, Any]) -> BaseConfig:
    """A stage config from a dict, refusing unknown keys and wrong types."""
    if stage not in STAGE_CONFIGS:
        raise _bad("bad_stage", f"Unknown stage '{stage}'; choose one of {', '.join(STAGE_CONFIGS)}.",
                   f"未知的训练阶段“{stage}”，可选：{'、'.join(STAGE_CONFIGS)}。")
    cls = STAGE_CONFIGS[stage]
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise _bad("bad_config_key", f"Unknown config keys for {stage}: {', '.join(unknown)}.",
                   f"{stage} 阶段没有这些配置项：{'、'.join(unknown)}。")
    cfg = cls(**{k: _coerce(k, v, types_[k]) for k, v in values.items()})
    validate(cfg)
    return cfg


def validate(cfg: BaseConfig) -> None:
    """Range checks that would otherwise fail deep inside a run."""
    if not isinstance(cfg, BaseConfig):
        return
    checks = [
        (cfg.max_steps >= 1, "max_steps must be at least 1", "max_steps 至少为 1"),
        (cfg.batch_size >= 1 and cfg.grad_accum >= 1, "batch_size and grad_accum must be >= 1",
         "batch_size 和 grad_accum 至少为 1"),
        (cfg.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision must be no, bf16 or fp16",
         "mixed_precision 只能是 no、bf16 或 fp16"),
        (bool(cfg.trainable), "trainable must name at least one part", "trainable 至少要包含一个部分"),
    ]
    if isinstance(cfg, GRPOConfig):
        checks += [
            (cfg.num_generations >= 2, "num_generations must be at least 2 (advantages are within groups)",
             "num_generations 至少为 2（优势在组内计算）"),
            (cfg.loss_type in ("token", "sequence"), "loss_type must be token or sequence",
             "loss_type 只能是 token 或 sequence"),
            (0.0 <= cfg.ssb_replay_share <= 1.0, "ssb_replay_share must be in [0, 1]", "ssb_replay_share 须在 [0, 1]"),
            (cfg.rollout in ("hf", "vllm"), "rollout must be hf or vllm", "rollout 只能是 hf 或 vllm"),
            (cfg.micro_batch >= 0 and (cfg.micro_batch == 0 or
                                       (cfg.batch_size * cfg.num_generations) % cfg.micro_batch == 0),
             "micro_batch must divide batch_size * num_generations", "micro_batch 必须整除 batch_size * num_generations"),
            (cfg.vllm_mode in ("colocate", "server"), "vllm_mode must be colocate or server",
             "vllm_mode 只能是 colocate 或 server"),
        ]
    for ok, en, zh in checks:
        if not ok:
            raise _bad("bad_config_value", en + ".", zh + "。")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b=[x,y]"]`` -> ``{"a": 1, "b": ["x", "y"]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise _bad("bad_override", f"Override '{item}' is not key=value.", f"覆盖项“{item}”不是 key=value 形式。")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def load_config(stage: str, path: str | Path | None = None, overrides: list[str] | None = None) -> BaseConfig:
    """Defaults <- YAML file <- ``key=value`` overrides, as the stage's dataclass."""
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise _bad("config_missing", f"Config file not found: {p}", f"找不到配置文件：{p}")
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise _bad("bad_config_file", f"{p} must hold a mapping of keys to values.", f"{p} 必须是键值映射。")
        loaded.pop("processes", None)  # written by dump() for the record; the launcher decides it
        values.update(loaded)
    values.update(parse_overrides(overrides or []))
    return build_config(stage, values)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump(cfg: Any, path: str | Path, processes: int | None = None) -> None:
    """Write the resolved config as YAML (and JSON beside it) so a checkpoint says how it was made;
    ``processes`` (how many the run had) is written last and ignored when the file is read back."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    d = to_dict(cfg)
    if processes is not None:
        d["processes"] = processes
    p.write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True), encoding="utf-8")
    p.with_suffix(".json").write_text(json.dumps(d, indent=2, ensure_ascii=False), encoding="utf-8")


def help_text(stage: str) -> str:
    """One line per field: name, type, default, help."""
    cls = STAGE_CONFIGS[stage]
    lines = [f"{stage}: {cls.__doc__ or ''}".strip()]
    default = cls()
    for f in dataclasses.fields(cls):
        lines.append(f"  {f.name} = {getattr(default, f.name)!r}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)
