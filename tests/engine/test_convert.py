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


def test_unknown_ps_version_is_refused_and_v1_accepted():
    from engine.convert import config_to_native
    from tutor.errors import InputError

    with pytest.raises(InputError) as e:
        config_to_native({"ps_version": "v3", "vision_config": {}, "llm_config": {}}, 5)
    assert e.value.code == "unsupported_checkpoint" and "v3" in e.value.message("en") and e.value.message("zh")
    v = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    llm = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 100}
    assert config_to_native({"ps_version": "v1", "vision_config": v, "llm_config": llm}, 5).ps_version == "v1"
    assert config_to_native({"vision_config": v, "llm_config": llm}, 5).ps_version == "v1"  # the class default


def _original(tmp_path, name="original", **kw):
    """The tiny model (native, random) and its original-layout copy, whose tokenizer config names no
    image tokens (like the published checkpoints)."""
    from engine.convert import convert_to_original
    from engine.tiny import build_tiny

    native_dir = build_tiny(tmp_path / f"{name}-native", seed=3, **kw)
    orig_dir = convert_to_original(native_dir, tmp_path / name)
    tcfg_path = orig_dir / "tokenizer_config.json"
    tcfg = json.loads(tcfg_path.read_text())
    tcfg.pop("extra_special_tokens", None)
    tcfg_path.write_text(json.dumps(tcfg))
    return native_dir, orig_dir


def _edit_config(path, edit):
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))


SMALL_300M = {"vision_norm": "layer_norm", "qk_norm": False, "qkv_bias": True}


@pytest.mark.parametrize("vision", ["internvit-6b", "internvit-300m"])
def test_absent_vision_flags_are_read_from_the_tensors(tmp_path, vision):
    """Finding 1: a vision_config without qkv_bias / qk_normalization / norm_type converts by the tensors
    present; the result has exactly the original's logits (no random bias, no dropped q/k norm)."""
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    from engine.convert import convert_to_native

    native_dir, orig_dir = _original(tmp_path, **({} if vision == "internvit-6b" else SMALL_300M))

    def drop(cfg):
        for k in ("qkv_bias", "qk_normalization", "norm_type"):
            cfg["vision_config"].pop(k)
    _edit_config(orig_dir, drop)
    back = convert_to_native(orig_dir, tmp_path / "back")
    saved = json.loads((back / "config.json").read_text())["vision_config"]
    assert saved["use_qk_norm"] is (vision == "internvit-6b") and saved["attention_bias"] is (vision != "internvit-6b")
    ref = InternVLForConditionalGeneration.from_pretrained(native_dir).eval()
    got = InternVLForConditionalGeneration.from_pretrained(back).eval()
    inputs = _inputs(AutoProcessor.from_pretrained(back))
    with torch.no_grad():
        assert torch.equal(ref(**inputs).logits, got(**inputs).logits)


def test_written_weights_are_checked_against_the_native_class(tiny_dir):
    """After writing, a name the native class lacks or misses is an error naming it (never only a warning)."""
    from safetensors import safe_open
    from transformers import AutoConfig

    from engine.convert import _native_in_memory_name, verify_written
    from tutor.errors import EngineError

    with safe_open(tiny_dir / "model.safetensors", "pt") as f:
        shapes = {_native_in_memory_name(k): tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    config = AutoConfig.from_pretrained(tiny_dir)
    verify_written(shapes, config)  # the tiny model itself is complete
    gone = "model.vision_tower.encoder.layer.0.attention.q_norm.weight"
    with pytest.raises(EngineError) as e:
        verify_written({k: v for k, v in shapes.items() if k != gone} | {"model.extra.weight": (1,)}, config)
    assert gone in e.value.message("en") and "model.extra.weight" in e.value.message("en")
    assert e.value.message("zh") != e.value.message("en")


def test_conversion_refuses_an_unmapped_key(tmp_path):
    from safetensors.torch import load_file, save_file

    from engine.convert import convert_to_native
    from tutor.errors import InputError

    _, orig_dir = _original(tmp_path)
    sd = load_file(orig_dir / "model.safetensors")
    sd["vision_model.encoder.layers.0.attn.extra_gate"] = torch.zeros(2)
    save_file(sd, orig_dir / "model.safetensors")
    index_path = orig_dir / "model.safetensors.index.json"
    if index_path.exists():  # the index, as the published checkpoints have, names it too
        index = json.loads(index_path.read_text())
        index["weight_map"]["vision_model.encoder.layers.0.attn.extra_gate"] = "model.safetensors"
        index_path.write_text(json.dumps(index))
    with pytest.raises(InputError) as e:
        convert_to_native(orig_dir, tmp_path / "back")
    assert e.value.code == "checkpoint_would_load_wrong"
    assert "vision_model.encoder.layers.0.attn.extra_gate" in e.value.message("en") and e.value.message("zh")
    assert not (tmp_path / "back" / "config.json").exists()  # nothing a later load would take as converted


def reference_pixel_shuffle(x, scale_factor, ps_version):
    """InternVL's pixel shuffle written from its description: fold pairs of columns into channels, swap
    the two spatial axes, fold pairs of rows into channels; v2 then swaps the axes back, v1 does not."""
    n, w, h, c = x.shape
    x = x.reshape(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.transpose(1, 2)
    x = x.reshape(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    return x if ps_version == "v1" else x.transpose(1, 2).contiguous()


def test_pixel_shuffle_v1_and_v2_match_the_reference():
    from transformers.models.internvl.modeling_internvl import InternVLModel

    from engine.convert import pixel_shuffle_v1

    x = torch.randn(2, 8, 8, 6)
    v1, v2 = pixel_shuffle_v1(x, 0.5), InternVLModel.pixel_shuffle(None, x, 0.5)
    assert torch.equal(v1, reference_pixel_shuffle(x, 0.5, "v1"))
    assert torch.equal(v2, reference_pixel_shuffle(x, 0.5, "v2"))
    assert not torch.equal(v1, v2)


@pytest.mark.parametrize("ps", ["v1", "v2"])
def test_ps_version_checkpoint_loads_with_its_own_pixel_shuffle(tmp_path, ps):
    """Finding 2: a ps_version v1 checkpoint converts, and the loaded model's image features are the
    vision tower's output through the reference shuffle of that version, then the projector."""
    from engine.convert import convert_to_native
    from engine.loading import load_model

    _, orig_dir = _original(tmp_path)
    _edit_config(orig_dir, lambda cfg: cfg.update(ps_version=ps))
    lm = load_model(str(convert_to_native(orig_dir, tmp_path / "back")), quantization=None, device="cpu")
    inputs = _inputs(lm.processor)
    inner = lm.model.model
    with torch.no_grad():
        got = inner.get_image_features(pixel_values=inputs["pixel_values"], vision_feature_layer=-1,
                                       vision_feature_select_strategy="default")
        got = getattr(got, "pooler_output", got)
        feats = inner.vision_tower(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 1:]
        side = int(feats.shape[1] ** 0.5)
        feats = reference_pixel_shuffle(feats.reshape(feats.shape[0], side, side, -1), 0.5, ps)
        want = inner.multi_modal_projector(feats.reshape(feats.shape[0], -1, feats.shape[-1]))
    got = got if isinstance(got, torch.Tensor) else torch.stack(list(got))
    assert torch.allclose(got.reshape(want.shape), want, atol=1e-6)


def _remote_code_checkpoint(tmp_path, where):
    """The original tiny copy whose tokenizer (or config) names its own code in auto_map, as the published
    checkpoints' config.json does (their config class is remote code)."""
    _, orig_dir = _original(tmp_path)
    marker = tmp_path / "remote-code-ran"
    if where == "tokenizer":
        (orig_dir / "tokenization_evil.py").write_text(
            f"open({str(marker)!r}, 'w').write('ran')\n"
            "from transformers import PreTrainedTokenizerFast\n"
            "class EvilTokenizer(PreTrainedTokenizerFast):\n    pass\n")
        tcfg = json.loads((orig_dir / "tokenizer_config.json").read_text())
        tcfg.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]})
        (orig_dir / "tokenizer_config.json").write_text(json.dumps(tcfg))
    else:
        (orig_dir / "configuration_evil.py").write_text(
            f"open({str(marker)!r}, 'w').write('ran')\n"
            "from transformers import PretrainedConfig\n"
            "class EvilConfig(PretrainedConfig):\n    model_type = 'internvl_chat'\n")
        _edit_config(orig_dir, lambda c: c.update(auto_map={"AutoConfig": "configuration_evil.EvilConfig"}))
    return orig_dir, marker


@pytest.mark.parametrize("where", ["tokenizer", "config"])
def test_conversion_never_runs_or_prompts_for_remote_code(tmp_path, monkeypatch, where):
    """Finding 3: a local copy with .py files: no prompt (someone answering yes would run it), no code run;
    a tokenizer that needs its code is a clear error, a config naming its code is read as plain JSON."""
    from engine.convert import convert_to_native
    from tutor.errors import InputError

    orig_dir, marker = _remote_code_checkpoint(tmp_path, where)
    prompts = []
    monkeypatch.setattr("builtins.input", lambda *a: prompts.append(a) or "y")
    if where == "tokenizer":
        with pytest.raises(InputError) as e:
            convert_to_native(orig_dir, tmp_path / "back")
        assert e.value.code == "tokenizer_needs_remote_code" and e.value.message("zh")
    else:
        assert (convert_to_native(orig_dir, tmp_path / "back") / "config.json").exists()
    assert prompts == [] and not marker.exists()


def test_original_layout_carries_the_processor_config(tmp_path):
    """convert --to original writes the processor files its tokenizer config's processor_class needs:
    AutoProcessor (what SGLang calls for the tokenizer) and AutoImageProcessor load them, with the
    InternVL tiling (448 px tiles, up to 12 plus a thumbnail, ImageNet mean/std). Without them
    AutoProcessor raised "Can't load image processor" (issue 19 point 1; SGLang's own run:
    tests/test_sglang_template.py)."""
    from transformers import AutoImageProcessor, AutoProcessor

    from engine.tiny import IMAGENET_MEAN, IMAGENET_STD

    _, orig_dir = _original(tmp_path)
    assert (orig_dir / "processor_config.json").is_file() and (orig_dir / "preprocessor_config.json").is_file()
    assert json.loads((orig_dir / "tokenizer_config.json").read_text()).get("processor_class") == "InternVLProcessor"
    proc = AutoProcessor.from_pretrained(orig_dir)
    assert type(proc).__name__ == "InternVLProcessor" and proc.image_seq_length == 256
    image = AutoImageProcessor.from_pretrained(orig_dir)
    assert image.size == {"height": 448, "width": 448} and image.max_patches == 12 and image.crop_to_patches
    assert list(image.image_mean) == list(IMAGENET_MEAN) and list(image.image_std) == list(IMAGENET_STD)
    assert image(images=[Image.new("RGB", (800, 600))])["num_patches"] == [13]
    assert "<IMG_CONTEXT>" in proc.tokenizer.get_vocab()


def test_original_layout_without_the_processor_config_is_what_broke(tmp_path):
    """The failure the processor files fix, seen with transformers' own loader."""
    from transformers import AutoProcessor

    _, orig_dir = _original(tmp_path)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (orig_dir / name).unlink()
    with pytest.raises(OSError, match="image processor"):
        AutoProcessor.from_pretrained(orig_dir)
