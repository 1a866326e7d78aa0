"""The GPU planner: memory and the bandwidth-bound decode rate of a preset on a given GPU.

    python -m engine plan --model r1v2-38b-nf4 --n 8 --max-tokens 16384 --gpu L4
    python -m engine plan --model r1v2-38b --gpu H100 --tp 2 --json

Arithmetic, not measurement (FACTS.md: "Memory for a local 4-bit run"):

- parameters from the shapes (InternViT-6B: 45 layers of 4 h^2 attention + 2 h f MLP; QwQ-32B:
  64 layers of q, k, v, o with 8 KV heads + a 3-matrix SwiGLU MLP; 152k-token embeddings and an
  untied lm_head; the MLP adapter LayerNorm(4 h_v) -> Linear -> GELU -> Linear);
- bytes per parameter: bf16 2; NF4 4 bits + double-quantised block scales (0.127 bits, the QLoRA
  paper's figure) on the LLM's linear layers only, everything else bf16; AWQ 4 bits + fp16 scale and
  zero per group of 128 (0.25 bits) on the LLM's linear layers;
- KV cache per token = 2 (K and V) x layers x KV heads x head dim x 2 bytes = 256 KiB for QwQ-32B;
  n sequences of (prompt + max new tokens) each, split over the tensor-parallel GPUs;
- activations: the prefill's largest transient (prompt tokens x MLP width x 3 bf16 tensors, and the
  vision tower's tiles x 1025 tokens x its MLP width x 3) plus a fixed 1.5 GiB of CUDA context and
  allocator slack per GPU;
- decode speed limit: each step reads every LLM weight once and each sequence's KV cache, so
  steps/s <= bandwidth / (LLM weight bytes / tp + KV bytes read / tp); tokens/s = n x steps/s.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

GiB = 1024**3


@dataclass(frozen=True)
class Shape:
    vit_hidden: int
    vit_layers: int
    vit_intermediate: int
    vit_patches: int  # tokens per 448 px tile, CLS included (32 x 32 + 1)
    llm_hidden: int
    llm_layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False
    image_tokens_per_tile: int = 256

    @property
    def head_dim(self) -> int:
        return self.llm_hidden // self.heads


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float
    bandwidth_gbs: float  # GB/s (10^9 bytes), the vendor's peak


# Vendor datasheet figures (peak memory bandwidth).
GPUS: dict[str, GPU] = {
    "T4": GPU("T4", 16, 320),
    "L4": GPU("L4", 24, 300),
    "A10G": GPU("A10G", 24, 600),
    "RTX4090": GPU("RTX4090", 24, 1008),
    "L40S": GPU("L40S", 48, 864),
    "A100-40G": GPU("A100-40G", 40, 1555),
    "A100-80G": GPU("A100-80G", 80, 2039),
    "H100": GPU("H100", 80, 3350),
    "H200": GPU("H200", 141, 4800),
}

R1V2_38B = Shape(vit_hidden=3200, vit_layers=45, vit_intermediate=12800, vit_patches=1025,
                 llm_hidden=5120, llm_layers=64, heads=40, kv_heads=8, intermediate=27648, vocab=152064)

# preset -> (shape, default quantization)
PLAN_PRESETS: dict[str, tuple[Shape, str]] = {
    "r1v2-38b": (R1V2_38B, "bf16"),
    "r1v2-38b-nf4": (R1V2_38B, "nf4"),
    "r1v2-38b-awq": (R1V2_38B, "awq"),
}

BITS_OVERHEAD = {"bf16": None, "nf4": 4 + 0.127, "awq": 4 + 32 / 128}
CONTEXT_OVERHEAD_GIB = 1.5


def shape_from_config(cfg) -> Shape:
    """The planner's shape for a native ``InternVLConfig`` (e.g. tiny-random's)."""
    v, t = cfg.vision_config, cfg.text_config
    patches = (v.image_size[0] // v.patch_size[0]) ** 2 + 1
    return Shape(v.hidden_size, v.num_hidden_layers, v.intermediate_size, patches, t.hidden_size,
                 t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads, t.intermediate_size,
                 t.vocab_size, bool(cfg.tie_word_embeddings), cfg.image_seq_length)


def params(s: Shape) -> dict[str, int]:
    """Parameter counts by part (weights only; norms and biases included where the model has them)."""
    h, f = s.vit_hidden, s.vit_intermediate
    vit_layer = 4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h  # qkv+proj (+bias), fc1/fc2 (+bias), norms, ls
    vit = s.vit_layers * vit_layer + 3 * 14 * 14 * h + h + s.vit_patches * h + h  # + patch conv, cls, pos
    d_in = h * 4  # pixel shuffle 0.5 stacks 4 patches
    adapter = 2 * d_in + d_in * s.llm_hidden + s.llm_hidden + s.llm_hidden * s.llm_hidden + s.llm_hidden
    H, kv = s.llm_hidden, s.kv_heads * s.head_dim
    attn = H * H + 2 * H * kv + H * H + H + 2 * kv  # q, k, v (with bias), o
    mlp = 3 * H * s.intermediate
    llm_linear = s.llm_layers * (attn + mlp)
    llm_other = s.llm_layers * 2 * H + H  # RMSNorm weights
    embed = s.vocab * H
    head = 0 if s.tied else s.vocab * H
    return {"vision": vit, "adapter": adapter, "llm_linear": llm_linear, "llm_other": llm_other,
            "embed": embed, "lm_head": head}


def weight_bytes(s: Shape, quant: str) -> dict[str, float]:
    """Bytes of weights by part: quantised LLM linears, everything else in bf16."""
    if quant not in BITS_OVERHEAD:
        raise ValueError(f"unknown quantization {quant!r}; use one of {sorted(BITS_OVERHEAD)}")
    p = params(s)
    bits = BITS_OVERHEAD[quant]
    out = {k: v * 2.0 for k, v in p.items()}
    if bits is not None:
        out["llm_linear"] = p["llm_linear"] * bits / 8
    return out


def kv_bytes_per_token(s: Shape) -> int:
    return 2 * s.llm_layers * s.kv_heads * s.head_dim * 2


@dataclass
class Plan:
    preset: str
    quant: str
    gpu: str
    tp: int
    n: int
    prompt_tokens: int
    max_new_tokens: int
    params_b: float
    weights_gib: float
    weights_gib_per_gpu: float
    kv_gib_per_gpu: float
    activations_gib: float
    total_gib_per_gpu: float
    gpu_gib: float
    fits: bool
    max_n_that_fits: int
    decode_tokens_per_s_limit: float  # all n sequences together, at the end of the context
    decode_tokens_per_s_per_seq: float

    def to_json(self) -> dict:
        return asdict(self)


def plan(preset: str, *, gpu: str, n: int = 1, max_new_tokens: int = 16384, prompt_tokens: int = 4096,
         tp: int = 1, quant: str | None = None, shape: Shape | None = None, tiles: int = 13) -> Plan:
    """Memory per GPU and the bandwidth-bound decode rate for ``n`` sequences (see module docstring)."""
    if shape is None:
        if preset not in PLAN_PRESETS:
            raise ValueError(f"no planner shape for {preset!r}; known: {', '.join(sorted(PLAN_PRESETS))}")
        shape, default_quant = PLAN_PRESETS[preset]
    else:
        default_quant = "bf16"
    quant = quant or default_quant
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; known: {', '.join(GPUS)}")
    if tp < 1 or shape.kv_heads % tp:
        raise ValueError(f"tensor-parallel size {tp} does not divide the {shape.kv_heads} KV heads")
    g = GPUS[gpu]
    wb = weight_bytes(shape, quant)
    weights = sum(wb.values())
    per_gpu = weights / tp
    ctx = prompt_tokens + max_new_tokens
    kv_tok = kv_bytes_per_token(shape)
    kv = n * ctx * kv_tok / tp
    act = max(prompt_tokens * shape.intermediate * 2 * 3 / tp,
              tiles * shape.vit_patches * shape.vit_intermediate * 2 * 3)
    act += CONTEXT_OVERHEAD_GIB * GiB
    total = per_gpu + kv + act
    free_for_kv = g.memory_gib * GiB - per_gpu - act
    max_n = max(0, int(free_for_kv // (ctx * kv_tok / tp)))
    llm_read = (wb["llm_linear"] + wb["llm_other"] + wb["lm_head"]) / tp  # read every decode step
    step_bytes = llm_read + kv  # worst case: every sequence at full context
    steps = g.bandwidth_gbs * 1e9 / step_bytes
    return Plan(preset, quant, gpu, tp, n, prompt_tokens, max_new_tokens,
                round(sum(params(shape).values()) / 1e9, 3), round(weights / GiB, 2), round(per_gpu / GiB, 2),
                round(kv / GiB, 2), round(act / GiB, 2), round(total / GiB, 2), g.memory_gib,
                total <= g.memory_gib * GiB, max_n, round(n * steps, 1), round(steps, 2))


def format_plan(p: Plan) -> str:
    rows = [
        ("model", f"{p.preset} ({p.quant}, {p.params_b} B parameters)"),
        ("GPU", f"{p.tp} x {p.gpu} ({p.gpu_gib:g} GiB each)"),
        ("weights", f"{p.weights_gib} GiB total, {p.weights_gib_per_gpu} GiB per GPU"),
        ("KV cache", f"{p.kv_gib_per_gpu} GiB per GPU for n={p.n} x {p.prompt_tokens + p.max_new_tokens} tokens"),
        ("activations", f"{p.activations_gib} GiB (prefill peak + CUDA context)"),
        ("total", f"{p.total_gib_per_gpu} GiB per GPU -> {'fits' if p.fits else 'DOES NOT FIT'}"),
        ("largest n", f"{p.max_n_that_fits} sequences at full context"),
        ("decode limit", f"{p.decode_tokens_per_s_limit} tokens/s for all {p.n} "
                         f"({p.decode_tokens_per_s_per_seq} per sequence), memory-bandwidth bound"),
    ]
    return "\n".join(f"{k:13s} {v}" for k, v in rows)


def add_arguments(p) -> None:
    p.add_argument("--model", default="r1v2-38b-nf4", help=f"one of {', '.join(PLAN_PRESETS)}")
    p.add_argument("--gpu", default="H100", help=f"one of {', '.join(GPUS)}")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--max-tokens", type=int, default=16384, help="new tokens per sequence")
    p.add_argument("--prompt-tokens", type=int, default=4096, help="prompt incl. image tokens (13 tiles = 3328)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel GPUs")
    p.add_argument("--quant", default=None, choices=sorted(BITS_OVERHEAD), help="default: the preset's")
    p.add_argument("--json", action="store_true")


def run(args) -> int:
    from tutor.errors import InputError

    try:
        result = plan(args.model, gpu=args.gpu, n=args.n, max_new_tokens=args.max_tokens,
                      prompt_tokens=args.prompt_tokens, tp=args.tp, quant=args.quant)
    except ValueError as e:
        raise InputError("bad_plan", str(e), str(e)) from e
    print(json.dumps(result.to_json(), indent=2) if args.json else format_plan(result))
    return 0
