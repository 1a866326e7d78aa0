"""The planner's arithmetic against hand computation (FACTS.md figures)."""

import pytest

from engine.plan import R1V2_38B, GiB, kv_bytes_per_token, params, plan, shape_from_config, weight_bytes


def test_kv_cache_per_token_is_256_kib_for_qwq32b():
    # 64 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes
    assert kv_bytes_per_token(R1V2_38B) == 64 * 8 * 128 * 2 * 2 == 256 * 1024


def test_bf16_weights_by_hand():
    p = params(R1V2_38B)
    # QwQ-32B linears: per layer q,o 5120^2 each, k,v 5120x1024 each (+ q,k,v biases), MLP 3 x 5120 x 27648
    per_layer = 2 * 5120 * 5120 + 2 * 5120 * 1024 + 5120 + 2 * 1024 + 3 * 5120 * 27648
    assert p["llm_linear"] == 64 * per_layer
    assert p["embed"] == p["lm_head"] == 152064 * 5120
    # adapter: LayerNorm(12800) + Linear(12800->5120) + Linear(5120->5120)
    assert p["adapter"] == 2 * 12800 + 12800 * 5120 + 5120 + 5120 * 5120 + 5120
    total = sum(p.values())
    assert 38.0e9 < total < 38.6e9  # "38B"
    r = plan("r1v2-38b", gpu="H100", tp=2, n=1, max_new_tokens=1000, prompt_tokens=1000)
    assert r.weights_gib == round(total * 2 / GiB, 2)
    assert r.weights_gib_per_gpu == round(total * 2 / 2 / GiB, 2)
    # one sequence of 2000 tokens: 2000 x 256 KiB, split over 2 GPUs
    assert r.kv_gib_per_gpu == round(2000 * 256 * 1024 / 2 / GiB, 2)


def test_nf4_weights_by_hand_match_facts():
    p = params(R1V2_38B)
    w = weight_bytes(R1V2_38B, "nf4")
    assert w["llm_linear"] == pytest.approx(p["llm_linear"] * 4.127 / 8)
    assert w["vision"] == p["vision"] * 2 and w["lm_head"] == p["lm_head"] * 2
    # FACTS.md: LLM in NF4 about 17 GB, embeddings + lm_head about 3 GB, InternViT-6B about 12 GB
    assert 15e9 < w["llm_linear"] < 17.5e9
    assert 2.8e9 < w["embed"] + w["lm_head"] < 3.3e9
    assert 10.5e9 < w["vision"] < 12.5e9


def test_fit_and_bandwidth_limit():
    small = plan("r1v2-38b-nf4", gpu="L4", n=1, max_new_tokens=1024, prompt_tokens=1024)
    assert not small.fits  # 28 GiB of weights on a 24 GiB card
    big = plan("r1v2-38b-nf4", gpu="H200", n=8, max_new_tokens=16384, prompt_tokens=4096)
    assert big.fits and big.max_n_that_fits >= 8
    # decode limit: bandwidth / (LLM weights read per step + KV of all sequences)
    w = weight_bytes(R1V2_38B, "nf4")
    step = w["llm_linear"] + w["llm_other"] + w["lm_head"] + 8 * (4096 + 16384) * 256 * 1024
    assert big.decode_tokens_per_s_per_seq == pytest.approx(4800e9 / step, rel=1e-3)
    assert big.decode_tokens_per_s_limit == pytest.approx(8 * 4800e9 / step, rel=1e-3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="GPU"):
        plan("r1v2-38b", gpu="Voodoo2")
    with pytest.raises(ValueError, match="tensor-parallel"):
        plan("r1v2-38b", gpu="H100", tp=3)
    with pytest.raises(ValueError, match="shape"):
        plan("tiny-random", gpu="H100")


def test_shape_from_tiny_config():
    from engine.tiny import build_tokenizer, tiny_config

    s = shape_from_config(tiny_config(build_tokenizer()))
    # engine.tiny v4: 2 query heads of 32 over 1 KV head (vLLM's CPU attention needs a head size >= 32)
    assert (s.llm_layers, s.kv_heads, s.head_dim, s.vit_patches, s.image_tokens_per_tile) == (2, 1, 32, 1025, 256)
    assert plan("tiny-random", gpu="T4", shape=s).fits


def test_gpu_check_script_runs_on_a_tiny_shape(tmp_path):
    """bench/gpu_check.py's code path (build, decode timing, NF4 swap, table) on a tiny shape on CPU."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "gc.json"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny", "--prompt", "16", "--new", "4",
                        "--out", str(out)], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert {(row["quant"], row["n"]) for row in rows} == {("bf16", 1), ("bf16", 8), ("nf4", 1), ("nf4", 8)}
    assert all(row["tokens_per_s"] > 0 for row in rows)
    assert r.stdout.strip().splitlines()[-5].startswith("quant")  # the table comes last
