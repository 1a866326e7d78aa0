"""Memory per GPU of a GRPO run, from its config and what ``training.grpo`` allocates.

    python -m training plan --config training/recipes/full/r1v2-38b-grpo.yaml
    python -m training plan --config training/recipes/full/r1v2-38b-grpo.yaml gpus=16 gpu=H100

Arithmetic from the recipe, not a measurement (no GPU here). Shapes: ``engine.plan`` (the policy's
checkpoint config when it exists, else R1V2-38B's; the reward model's config when it exists, else
an 8B InternVL, ``REWARD_8B``). Lines, per GPU, with ``P`` the policy's parameters and ``T`` the
trainable ones (``trainable`` parts):

- frozen policy weights, bf16, sharded over the processes (FSDP2 / ZeRO-3): ``2 P / gpus``, plus
  one gathered LLM layer;
- trainable: bf16 weight + bf16 grad + fp32 master, Adam m and v = 16 B x T, sharded likewise;
- activations: the micro-batch's ``micro_batch`` sequences of ``max_length`` tokens, gradient
  checkpointing keeps one hidden state per layer boundary (layers x tokens x hidden x 2 B) plus one
  layer's recompute (tokens x intermediate x 3 x 2 B);
- log-probs: completion tokens only (TRL's ``logits_to_keep``): micro_batch x max_new_tokens x
  vocab x (2 B bf16 logits + 4 B fp32 log-softmax) in the forward, the same again for its backward;
- reward model: bf16 on every process (``training.rewards.RewardModelScore``), whole, no grad;
- vLLM (colocate): its bf16 copy of the policy split over ``vllm_tensor_parallel_size``, and the KV
  cache it may take: ``vllm_gpu_memory`` x GPU memory minus its weights; what all the step's
  sequences need in KV is shown beside it (with ``vllm_sleep`` both leave the GPU during the update);
- 1.5 GiB CUDA context and allocator slack.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.plan import (
    CONTEXT_OVERHEAD_GIB,
    GPUS,
    R1V2_38B,
    GiB,
    Shape,
    kv_bytes_per_token,
    params,
    shape_from_config,
)

REWARD_8B = Shape(vit_hidden=1024, vit_layers=24, vit_intermediate=4096, vit_patches=1025, llm_hidden=4096,
                  llm_layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=151674)


def _shape(path: str, default: Shape) -> tuple[Shape, str]:
    cfg_file = Path(path) / "config.json"
    if path and cfg_file.is_file():
        from transformers import AutoConfig

        return shape_from_config(AutoConfig.from_pretrained(path)), str(cfg_file)
    return default, "default shape (checkpoint not here)"


def _trainable(p: dict[str, int], parts: list[str]) -> int:
    part_of = {"vision": ("vision",), "adapter": ("adapter",), "llm": ("llm", "embeddings", "lm_head"),
               "all": tuple(p)}
    keys = {k for name in parts for k in part_of.get(name, ()) if k in p}
    return sum(p[k] for k in keys)


def grpo_memory(cfg, *, gpus: int = 8, gpu: str = "H200") -> list[tuple[str, float, str]]:
    """(line, GiB per GPU, how) for a GRPO config."""
    s, src = _shape(cfg.model, R1V2_38B)
    p = params(s)
    total = sum(p.values())
    train = _trainable(p, cfg.trainable)
    micro = cfg.micro_batch or cfg.batch_size * cfg.num_generations
    tokens = micro * cfg.max_length
    rows = [
        ("frozen policy weights (bf16, sharded)", 2 * (total - train) / gpus / GiB,
         f"2 B x {total / 1e9:.2f} B params / {gpus} GPUs ({src})"),
        ("one gathered LLM layer", 2 * (total - p.get("vision", 0)) / s.llm_layers / GiB, "FSDP/ZeRO-3 all-gather"),
        ("trainable: weight, grad, fp32 master + Adam", 16 * train / gpus / GiB,
         f"16 B x {train / 1e6:.0f} M trainable / {gpus}"),
        ("activations (checkpointed)", (s.llm_layers * tokens * s.llm_hidden * 2
                                        + tokens * s.intermediate * 3 * 2) / GiB,
         f"micro_batch {micro} x max_length {cfg.max_length}"),
        ("completion log-probs (fwd + bwd)", 2 * micro * cfg.max_new_tokens * s.vocab * 6 / GiB,
         f"{micro} x {cfg.max_new_tokens} completion tokens x {s.vocab} vocab x 6 B, x2"),
    ]
    if cfg.reward_model and cfg.reward_model_weight:
        rs, rsrc = _shape(cfg.reward_model, REWARD_8B)
        rows.append(("reward model (bf16, whole, each GPU)", 2 * sum(params(rs).values()) / GiB, rsrc))
    if cfg.rollout == "vllm":
        g = GPUS[gpu]
        tp = cfg.vllm_tensor_parallel_size
        w = 2 * total / tp / GiB
        budget = cfg.vllm_gpu_memory * g.memory_gib
        rows.append(("vLLM weights (bf16 / TP)", w, f"tp {tp}"))
        rows.append(("vLLM KV cache (what it may take)", max(budget - w, 0.0),
                     f"gpu_memory_utilization {cfg.vllm_gpu_memory} x {g.memory_gib} GiB - weights"))
        need = cfg.batch_size * cfg.num_generations * cfg.max_length * kv_bytes_per_token(s) / GiB
        rows.append(("  (KV the step's sequences would need, per GPU)", need,
                     f"{cfg.batch_size * cfg.num_generations} seqs x {cfg.max_length} tokens a process; "
                     "more than the cache means vLLM queues them"))
    rows.append(("CUDA context + slack", CONTEXT_OVERHEAD_GIB, ""))
    return rows


def format_table(rows, *, gpus: int, gpu: str) -> str:
    out = [f"GRPO memory per GPU ({gpus} x {gpu}, {GPUS[gpu].memory_gib:.0f} GiB):"]
    peak = 0.0
    for name, gib, how in rows:
        out.append(f"  {name:<48} {gib:8.1f} GiB   {how}")
        if not name.startswith("  "):
            peak += gib
    out.append(f"  {'total':<48} {peak:8.1f} GiB   {'fits' if peak <= GPUS[gpu].memory_gib else 'DOES NOT FIT'}")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    import argparse

    from training.config import load_config

    ap = argparse.ArgumentParser(prog="python -m training plan", description="GRPO memory per GPU from a recipe.")
    ap.add_argument("--config", required=True)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("rest", nargs="*", help="gpus=N gpu=NAME, then key=value overrides of the recipe")
    a = ap.parse_args(argv)
    opts = {k: v for k, _, v in (x.partition("=") for x in a.rest) if k in ("gpus", "gpu")}
    cfg = load_config("grpo", a.config, [x for x in a.rest if x.partition("=")[0] not in ("gpus", "gpu")])
    gpus, gpu = int(opts.get("gpus", 8)), opts.get("gpu", "H200")
    rows = grpo_memory(cfg, gpus=gpus, gpu=gpu)
    print(json.dumps([{"line": n, "gib": round(g, 2), "how": h} for n, g, h in rows], indent=2) if a.json
          else format_table(rows, gpus=gpus, gpu=gpu))
    return 0
