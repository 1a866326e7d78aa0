"""The original InternVL-chat layout loads into the native class with identical logits."""

import json

import pytest
import torch
from PIL import Image


def _inputs(processor, n_images=1):
    images = [Image.new("RGB", (640, 400), (30 + 60 * i, 120, 200)) for i in range(n_images)]
    text = "<|im_start|>user\n" + "<IMG_CONTEXT>\n" * n_images + "What is shown?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    return processor(text=text, images=images, return_tensors="pt", max_patches=4)


@pytest.mark.parametrize("vision", ["internvit-6b", "internvit-300m"])
def test_original_layout_loads_with_identical_logits(tmp_path, vision):
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    from engine.convert import convert_to_native, convert_to_original, is_original_layout
    from engine.tiny import build_tiny

    kw = {} if vision == "internvit-6b" else {"vision_norm": "layer_norm", "qk_norm": False, "qkv_bias": True}
    native_dir = build_tiny(tmp_path / "native", seed=3, **kw)
    orig_dir = convert_to_original(native_dir, tmp_path / "original")

    # The written checkpoint really is in the original layout: names and config fields as InternVL-chat uses them.
    from safetensors.torch import load_file

    keys = set(load_file(orig_dir / "model.safetensors"))
    assert "vision_model.encoder.layers.0.attn.qkv.weight" in keys
    assert "vision_model.embeddings.class_embedding" in keys and "mlp1.1.weight" in keys and "mlp1.3.bias" in keys
    assert "language_model.model.embed_tokens.weight" in keys and "language_model.lm_head.weight" in keys
    assert not any(k.startswith("model.") for k in keys)
    cfg = json.loads((orig_dir / "config.json").read_text())
    assert {"vision_config", "llm_config", "ps_version", "select_layer", "downsample_ratio"} <= set(cfg)
    assert cfg["vision_config"]["qk_normalization"] is (vision == "internvit-6b")
    assert is_original_layout(orig_dir) and not is_original_layout(native_dir)
    # Like the published checkpoints, the original tokenizer config knows nothing of image-token attributes.
    tcfg_path = orig_dir / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text())
    tcfg.pop("extra_special_tokens", None)
    tcfg_path.write_text(json.dumps(tcfg))

    back_dir = convert_to_native(orig_dir, tmp_path / "back")
    ref = InternVLForConditionalGeneration.from_pretrained(native_dir).eval()
    got = InternVLForConditionalGeneration.from_pretrained(back_dir).eval()
    processor = AutoProcessor.from_pretrained(back_dir)
    inputs = _inputs(processor, n_images=2)
    with torch.no_grad():
        a = ref(**inputs).logits
        b = got(**inputs).logits
    assert a.shape == b.shape
    assert torch.equal(a, b)


def test_image_changes_logits(tiny_loaded):
    """The converted/native path really uses the image (guards against a silently dropped vision tower)."""
    proc, model = tiny_loaded.processor, tiny_loaded.model
    text = "<|im_start|>user\n<IMG_CONTEXT>\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n"
    a = proc(text=text, images=[Image.new("RGB", (448, 448), "white")], return_tensors="pt")
    b = proc(text=text, images=[Image.effect_noise((448, 448), 80).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        la, lb = model(**a).logits[0, -1], model(**b).logits[0, -1]
    assert not torch.allclose(la, lb)


def test_ps_v1_is_refused():
    from engine.convert import config_to_native
    from tutor.errors import InputError

    with pytest.raises(InputError) as e:
        config_to_native({"ps_version": "v1", "vision_config": {}, "llm_config": {}}, 5)
    assert e.value.code == "unsupported_checkpoint" and e.value.message("zh")


def test_processor_normalises_as_internvl(tmp_path):
    """InternViT was trained on ImageNet mean/std; the image processor class defaults to CLIP's. Every
    processor the project writes (tiny, converted, assembled) must carry InternVL's, and a white pixel
    must come out as (1 - mean) / std."""
    import numpy as np

    from engine.tiny import IMAGENET_MEAN, IMAGENET_STD, build_processor, build_tokenizer

    proc = build_processor(build_tokenizer(), image_size=56, max_tiles=1)
    proc.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())["image_processor"]
    assert saved["image_mean"] == list(IMAGENET_MEAN) and saved["image_std"] == list(IMAGENET_STD)
    px = proc.image_processor(images=[Image.new("RGB", (56, 56), (255, 255, 255))], return_tensors="pt")
    want = (1.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(px["pixel_values"][0, :, 0, 0].numpy(), want, rtol=1e-5)
