"""GPU check: decode speed of a random model of the exact R1V2-38B shape, against the planner's limit.

    python bench/gpu_check.py                 # on a lent GPU (H100/H200 class: ~77 GB of bf16 weights)
    python bench/gpu_check.py --tiny          # the same code path on a tiny shape, on any machine
    python bench/gpu_check.py --serve         # then the launchers' smoke run (bench/serve_smoke.py)
    python bench/gpu_check.py --serve-only    # only that: SGLang and vLLM on the tiny checkpoint, n=4 each

No download: the native ``InternVLForConditionalGeneration`` is built from the R1V2-38B shape
(InternViT-6B + MLP adapter + QwQ-32B) directly on the GPU in bf16 with random weights. Decode
speed does not depend on the weights' values, only on their bytes. For n = 1 and 8 it times a
text-only generate of ``--new`` tokens after a ``--prompt``-token prompt (greedy, EOS disabled),
subtracts the time of a 1-token generate (the prefill), and divides. Then, if bitsandbytes is
present, it swaps the LLM's linear layers for NF4 ``Linear4bit`` in place (vision tower, adapter and
lm_head stay bf16, as the ``r1v2-38b-nf4`` preset does) and measures again. The last thing printed
is a short table: measured tokens/s, the planner's memory-bandwidth limit for the same setting
(``engine.plan``), and their ratio. Writes ``bench/results/gpu_check.json``. Budget: under 8 minutes
on an H100/H200 (building the model takes well under a minute; each measurement a few seconds).

``--serve`` / ``--serve-only``: ``bench/serve_smoke.py`` starts ``python -m engine serve`` with SGLang and
with vLLM on the tiny checkpoint and solves one image with n=4 through ``HttpEngine`` on each; an engine
that is not installed, or a machine without a GPU, is reported as SKIPPED with the reason. Its options
(``--engines``, ``--sglang-python``, ``--vllm-bin``, ...) are accepted here too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_smoke  # noqa: E402  (bench/serve_smoke.py, beside this file)


def build_config(tiny: bool):
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    from engine.plan import R1V2_38B, Shape

    s = Shape(64, 2, 128, 1025, 128, 2, 4, 2, 256, 1000) if tiny else R1V2_38B
    vision = InternVLVisionConfig(hidden_size=s.vit_hidden, num_hidden_layers=s.vit_layers,
                                  num_attention_heads=25 if not tiny else 2, intermediate_size=s.vit_intermediate,
                                  use_qk_norm=True, norm_type="rms_norm", attention_bias=False,
                                  image_size=448, patch_size=14, use_mean_pooling=True)
    text = Qwen2Config(vocab_size=s.vocab, hidden_size=s.llm_hidden, intermediate_size=s.intermediate,
                       num_hidden_layers=s.llm_layers, num_attention_heads=s.heads,
                       num_key_value_heads=s.kv_heads, max_position_embeddings=32768, tie_word_embeddings=False)
    cfg = InternVLConfig(vision_config=vision, text_config=text, image_token_id=s.vocab - 1,
                         image_seq_length=256, downsample_ratio=0.5, tie_word_embeddings=False)
    return cfg, s


def to_nf4(model) -> int:
    """Replace the LLM's nn.Linear layers by bitsandbytes NF4 (double quant, bf16 compute), in place."""
    import bitsandbytes as bnb
    import torch

    swapped = 0
    for module in list(model.model.language_model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=torch.bfloat16, compress_statistics=True, quant_type="nf4",
                                  device="meta")
            q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, compress_statistics=True,
                                         quant_type="nf4")
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            q = q.to(child.weight.device)  # quantises here
            setattr(module, child_name, q)
            swapped += 1
    return swapped


def decode_rate(model, prompt: int, new: int, n: int, vocab: int, device) -> float:
    import torch

    ids = torch.randint(0, vocab - 2, (n, prompt), device=device)
    kw = dict(do_sample=False, eos_token_id=None, pad_token_id=0)

    def timed(tokens: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                 min_new_tokens=tokens, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        assert out.shape[1] == prompt + tokens
        return time.perf_counter() - t

    timed(2)  # warm-up
    first = timed(1)
    full = timed(new)
    return n * (new - 1) / max(full - first, 1e-9)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="a tiny shape, to check the script on a CPU")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--new", type=int, default=128)
    p.add_argument("--ns", default="1,8")
    p.add_argument("--gpu-name", default=None, help="planner GPU name (default: guessed from the device)")
    p.add_argument("--out", default="bench/results/gpu_check.json")
    p.add_argument("--serve", action="store_true", help="then the launchers' smoke run (bench/serve_smoke.py)")
    p.add_argument("--serve-only", action="store_true", help="only the launchers' smoke run")
    serve_smoke.add_arguments(p)
    args = p.parse_args(argv)
    if args.serve_only:
        return serve_smoke.run(args)

    import torch
    from transformers import InternVLForConditionalGeneration

    from engine.plan import GPUS, plan

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    gpu = args.gpu_name or next((g for g in GPUS if g.split("-")[0].lower() in dev_name.lower()), None)
    cfg, shape = build_config(args.tiny)
    t = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)
    with device:
        model = InternVLForConditionalGeneration(cfg).eval()
    torch.set_default_dtype(torch.float32)
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters on {dev_name} "
          f"in {time.perf_counter() - t:.0f} s", flush=True)

    rows = []
    quants = ["bf16"]
    try:
        import bitsandbytes  # noqa: F401

        quants.append("nf4")
    except ImportError:
        print("bitsandbytes not installed: NF4 skipped")
    for quant in quants:
        if quant == "nf4":
            t = time.perf_counter()
            print(f"swapped {to_nf4(model)} linear layers to NF4 in {time.perf_counter() - t:.0f} s", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        for n in [int(x) for x in args.ns.split(",")]:
            rate = decode_rate(model, args.prompt, args.new, n, shape.vocab, device)
            limit = None
            if gpu and not args.tiny:
                limit = plan(f"r1v2-38b{'-nf4' if quant == 'nf4' else ''}", gpu=gpu, n=n,
                             max_new_tokens=args.new, prompt_tokens=args.prompt).decode_tokens_per_s_limit
            rows.append({"quant": quant, "n": n, "tokens_per_s": round(rate, 1), "limit": limit,
                         "ratio": round(rate / limit, 3) if limit else None})
            print(f"{quant} n={n}: {rate:.1f} tokens/s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": dev_name, "planner_gpu": gpu, "tiny": args.tiny, "prompt": args.prompt,
                               "new": args.new, "rows": rows}, indent=2))
    print(f"\n{'quant':6s} {'n':>3s} {'tokens/s':>10s} {'limit':>10s} {'ratio':>7s}   ({dev_name})")
    for r in rows:
        print(f"{r['quant']:6s} {r['n']:3d} {r['tokens_per_s']:10.1f} {str(r['limit']):>10s} {str(r['ratio']):>7s}")
    if args.serve:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the servers need the GPU's memory
        print()
        return serve_smoke.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
