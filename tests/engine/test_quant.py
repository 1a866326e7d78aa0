"""tiny-random in bitsandbytes NF4 on the CPU: it generates, and the skipped modules stay full precision."""

import torch
from PIL import Image


def test_nf4_loads_generates_and_keeps_skipped_modules(tiny_dir):
    import bitsandbytes as bnb

    from engine.loading import load_model

    lm = load_model("tiny-random", quantization="nf4", device="cpu")
    model = lm.model
    four_bit = {n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    # every linear layer of the language model is 4-bit ...
    lm_linears = {n for n, m in model.named_modules() if n.startswith("model.language_model.") and isinstance(m, torch.nn.Linear)}
    assert lm_linears and lm_linears <= four_bit
    qs = model.model.language_model.layers[0].self_attn.q_proj.weight
    assert qs.quant_state.quant_type == "nf4" and qs.quant_state.nested  # double quantization
    # ... and the vision tower, adapter and lm_head are not.
    for prefix in ("model.vision_tower", "model.multi_modal_projector", "lm_head"):
        assert not any(n.startswith(prefix) for n in four_bit), prefix
    assert model.lm_head.weight.dtype == torch.float32
    assert model.model.multi_modal_projector.linear_1.weight.dtype == torch.float32
    assert model.model.vision_tower.encoder.layer[0].attention.q_proj.weight.dtype == torch.float32

    text = "<|im_start|>user\n<IMG_CONTEXT>\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n"
    inputs = lm.processor(text=text, images=[Image.new("RGB", (448, 448), "white")], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=True)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 8


def test_served_only_preset_is_refused_in_process():
    import pytest

    from engine.loading import load_model
    from tutor.errors import InputError

    with pytest.raises(InputError) as e:
        load_model("r1v2-38b-awq")
    assert e.value.code == "served_only_preset" and "--server" in e.value.message("en")
