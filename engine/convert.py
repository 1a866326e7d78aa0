"""Convert R1V2 checkpoints between the original InternVL-chat layout and native transformers InternVL.

The published R1V2 checkpoints (``Skywork/Skywork-R1V2-38B``) use the InternVL-chat remote-code
layout: ``vision_model.*`` (InternViT with a fused ``attn.qkv``), ``mlp1.{0,1,3}`` (LayerNorm, Linear,
GELU, Linear) and ``language_model.{model,lm_head}.*`` (Qwen2), with a config of ``vision_config`` +
``llm_config``. Their remote code is reported to break under transformers 5, so we never run it:
this module rewrites the config and the weight names into the native ``InternVLForConditionalGeneration``
layout (``model.vision_tower``, ``model.multi_modal_projector``, ``model.language_model``, ``lm_head``).
``from_pretrained(key_mapping=...)`` renames keys but cannot split the fused qkv into q/k/v, so the
conversion writes a new checkpoint, one safetensors shard at a time (memory: one shard).

    python -m engine convert SRC_DIR DST_DIR                   # original -> native
    python -m engine convert SRC_DIR DST_DIR --to original     # native -> original (vLLM/SGLang serve it)

Only pixel-shuffle version ``v2`` exists natively; a ``ps_version: v1`` checkpoint is refused.
Not verified against the real R1V2 files (no hub access here): the config field names follow the
InternVL-chat / Skywork configuration classes; tests round-trip a tiny checkpoint written in that
layout and compare logits.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from engine.tiny import IMAGE_TOKEN_ATTRS as IMAGE_TOKENS  # the tokenizer attributes InternVLProcessor reads
from tutor.errors import InputError

log = logging.getLogger(__name__)


# (original regex, native template) for one-to-one renames; qkv is split separately.
_TO_NATIVE = [
    (r"^vision_model\.embeddings\.class_embedding$", "model.vision_tower.embeddings.cls_token"),
    (r"^vision_model\.embeddings\.position_embedding$", "model.vision_tower.embeddings.position_embeddings"),
    (r"^vision_model\.embeddings\.patch_embedding\.(weight|bias)$",
     r"model.vision_tower.embeddings.patch_embeddings.projection.\1"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.attn\.proj\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.attention.projection_layer.\2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.attn\.(q_norm|k_norm)\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.attention.\2.\3"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.ls1$", r"model.vision_tower.encoder.layer.\1.lambda_1"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.ls2$", r"model.vision_tower.encoder.layer.\1.lambda_2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.norm1\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.layernorm_before.\2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.norm2\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.layernorm_after.\2"),
    (r"^vision_model\.encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$",
     r"model.vision_tower.encoder.layer.\1.mlp.\2.\3"),
    (r"^mlp1\.0\.(weight|bias)$", r"model.multi_modal_projector.layer_norm.\1"),
    (r"^mlp1\.1\.(weight|bias)$", r"model.multi_modal_projector.linear_1.\1"),
    (r"^mlp1\.3\.(weight|bias)$", r"model.multi_modal_projector.linear_2.\1"),
    (r"^language_model\.model\.(.+)$", r"model.language_model.\1"),
    (r"^language_model\.lm_head\.(.+)$", r"lm_head.\1"),
]
_QKV = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")
_QKV_NATIVE = re.compile(r"^model\.vision_tower\.encoder\.layer\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$")


def _to_native_name(name: str) -> str:
    for pattern, repl in _TO_NATIVE:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    raise KeyError(f"unexpected weight in an InternVL-chat checkpoint: {name}")


# The reverse renames, written out (regexes on native names).
_TO_ORIGINAL = [
    (r"^model\.vision_tower\.embeddings\.cls_token$", "vision_model.embeddings.class_embedding"),
    (r"^model\.vision_tower\.embeddings\.position_embeddings$", "vision_model.embeddings.position_embedding"),
    (r"^model\.vision_tower\.embeddings\.patch_embeddings\.projection\.(weight|bias)$",
     r"vision_model.embeddings.patch_embedding.\1"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.attention\.projection_layer\.(weight|bias)$",
     r"vision_model.encoder.layers.\1.attn.proj.\2"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.attention\.(q_norm|k_norm)\.(weight|bias)$",
     r"vision_model.encoder.layers.\1.attn.\2.\3"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.lambda_1$", r"vision_model.encoder.layers.\1.ls1"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.lambda_2$", r"vision_model.encoder.layers.\1.ls2"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)$",
     r"vision_model.encoder.layers.\1.norm1.\2"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)$",
     r"vision_model.encoder.layers.\1.norm2.\2"),
    (r"^model\.vision_tower\.encoder\.layer\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$",
     r"vision_model.encoder.layers.\1.mlp.\2.\3"),
    (r"^model\.multi_modal_projector\.layer_norm\.(weight|bias)$", r"mlp1.0.\1"),
    (r"^model\.multi_modal_projector\.linear_1\.(weight|bias)$", r"mlp1.1.\1"),
    (r"^model\.multi_modal_projector\.linear_2\.(weight|bias)$", r"mlp1.3.\1"),
    (r"^model\.language_model\.(.+)$", r"language_model.model.\1"),
    (r"^lm_head\.(.+)$", r"language_model.lm_head.\1"),
]


def state_dict_to_native(sd: dict) -> dict:
    """Rename original InternVL-chat weights to native names; split each fused qkv into q, k, v."""
    out = {}
    for name, tensor in sd.items():
        m = _QKV.match(name)
        if m:
            layer, kind = m.groups()
            q, k, v = tensor.chunk(3, dim=0)  # qkv rows are [q; k; v] (reshape to 3 x heads x dim)
            for part, t in zip("qkv", (q, k, v), strict=True):
                out[f"model.vision_tower.encoder.layer.{layer}.attention.{part}_proj.{kind}"] = t.contiguous()
        else:
            out[_to_native_name(name)] = tensor
    return out


# transformers 5 saves the native class under its older on-disk names and renames them on load.
_NATIVE_ON_DISK = [
    (r"^language_model\.model\.", "model.language_model."),
    (r"^language_model\.lm_head\.", "lm_head."),
    (r"^vision_tower\.", "model.vision_tower."),
    (r"^multi_modal_projector\.", "model.multi_modal_projector."),
]


def _native_in_memory_name(name: str) -> str:
    for pattern, repl in _NATIVE_ON_DISK:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    return name


def state_dict_to_original(sd: dict) -> dict:
    """Native weights (in-memory or on-disk names) to original InternVL-chat names, fusing q, k, v."""
    import torch

    out, qkv = {}, {}
    for name, tensor in sd.items():
        name = _native_in_memory_name(name)
        m = _QKV_NATIVE.match(name)
        if m:
            layer, part, kind = m.groups()
            qkv.setdefault((layer, kind), {})[part] = tensor
            continue
        for pattern, repl in _TO_ORIGINAL:
            if re.match(pattern, name):
                out[re.sub(pattern, repl, name)] = tensor
                break
        else:
            raise KeyError(f"unexpected weight in a native InternVL checkpoint: {name}")
    for (layer, kind), parts in qkv.items():
        out[f"vision_model.encoder.layers.{layer}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in "qkv"], 0)
    return out


def config_to_native(orig: dict, image_token_id: int):
    """An InternVL-chat config dict (``vision_config`` + ``llm_config``) to a native ``InternVLConfig``."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    if orig.get("ps_version", "v1") != "v2":
        raise InputError(
            "unsupported_checkpoint",
            "This checkpoint uses pixel-shuffle v1, which the native InternVL class does not implement.",
            "该模型使用 v1 版像素重排，原生 InternVL 类不支持。",
            detail=f"ps_version={orig.get('ps_version')!r}",
        )
    v = orig["vision_config"]
    image_size = orig.get("force_image_size") or v.get("image_size", 448)
    vision = InternVLVisionConfig(
        hidden_size=v["hidden_size"],
        num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"],
        intermediate_size=v["intermediate_size"],
        hidden_act=v.get("hidden_act", "gelu"),
        use_qk_norm=bool(v.get("qk_normalization", False)),
        attention_bias=bool(v.get("qkv_bias", True)),
        norm_type=v.get("norm_type", "rms_norm"),
        layer_norm_eps=v.get("layer_norm_eps", 1e-6),
        image_size=image_size,
        patch_size=v.get("patch_size", 14),
        num_channels=v.get("num_channels", 3),
        layer_scale_init_value=v.get("initializer_factor", 0.1),
        use_mean_pooling=True,  # InternViT has no final norm: the native class then uses Identity
    )
    llm = {k: val for k, val in orig["llm_config"].items() if k not in ("architectures", "auto_map", "_name_or_path")}
    llm.pop("model_type", None)
    text = Qwen2Config(**llm)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=int((image_size // vision.patch_size[0]) ** 2 * orig.get("downsample_ratio", 0.5) ** 2),
        downsample_ratio=orig.get("downsample_ratio", 0.5),
        vision_feature_layer=orig.get("select_layer", -1),
        vision_feature_select_strategy="default",  # InternVL-chat drops the CLS token
        tie_word_embeddings=bool(orig["llm_config"].get("tie_word_embeddings", False)),
    )


def config_to_original(cfg, *, max_tiles: int = 12, architecture: str = "InternVLChatModel") -> dict:
    """A native ``InternVLConfig`` to the InternVL-chat config dict (the R1V2 checkpoints' layout)."""
    v = cfg.vision_config
    text = cfg.text_config.to_dict()
    for k in ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype"):
        text.pop(k, None)
    text.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    return {
        "architectures": [architecture],
        "model_type": "internvl_chat",
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": v.hidden_size,
            "num_hidden_layers": v.num_hidden_layers,
            "num_attention_heads": v.num_attention_heads,
            "intermediate_size": v.intermediate_size,
            "hidden_act": v.hidden_act,
            "qk_normalization": bool(v.use_qk_norm),
            "qkv_bias": bool(v.attention_bias),
            "norm_type": v.norm_type,
            "layer_norm_eps": v.layer_norm_eps,
            "image_size": v.image_size[0],
            "patch_size": v.patch_size[0],
            "num_channels": v.num_channels,
            "initializer_factor": v.layer_scale_init_value,
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "drop_path_rate": 0.0,
            "use_flash_attn": False,
        },
        "llm_config": text,
        "select_layer": cfg.vision_feature_layer,
        "force_image_size": v.image_size[0],
        "downsample_ratio": cfg.downsample_ratio,
        "template": "r1v-tutor-chatml",
        "dynamic_image_size": True,
        "use_thumbnail": True,
        "ps_version": "v2",
        "min_dynamic_patch": 1,
        "max_dynamic_patch": max_tiles,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "tie_word_embeddings": bool(cfg.tie_word_embeddings),
    }


def is_original_layout(path: str | Path) -> bool:
    """True when ``path`` holds an InternVL-chat (remote-code layout) checkpoint."""
    cfg = Path(path) / "config.json"
    if not cfg.exists():
        return False
    data = json.loads(cfg.read_text())
    return "llm_config" in data and data.get("model_type") != "internvl"


def _shards(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        return [path / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise InputError(
            "no_weights",
            f"No .safetensors weights found in {path}.",
            f"在 {path} 中没有找到 .safetensors 权重文件。",
        )
    return files


def _write_shards(src: Path, dst: Path, convert) -> None:
    """Convert shard by shard (one shard in memory at a time) and write an index."""
    from safetensors.torch import load_file, save_file

    weight_map, total = {}, 0
    shards = _shards(src)
    for i, shard in enumerate(shards):
        out = convert(load_file(shard))
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(out, dst / name, metadata={"format": "pt"})
        for k, t in out.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
        log.info("converted %s -> %s (%d tensors)", shard.name, name, len(out))
    if len(shards) > 1:
        (dst / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        )


def convert_to_native(src: str | Path, dst: str | Path, *, max_tiles: int = 12) -> Path:
    """Write a native transformers InternVL checkpoint (weights, config, processor) from an original one."""
    from transformers import AutoTokenizer

    from engine.tiny import build_processor, generation_config

    src, dst = Path(src), Path(dst)
    if not is_original_layout(src):
        raise InputError(
            "not_original_layout",
            f"{src} is not an InternVL-chat checkpoint (no llm_config in config.json).",
            f"{src} 不是 InternVL-chat 格式的模型（config.json 中没有 llm_config）。",
        )
    dst.mkdir(parents=True, exist_ok=True)
    orig = json.loads((src / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(src, extra_special_tokens=IMAGE_TOKENS)
    missing = [t for t in IMAGE_TOKENS.values() if t != "<video>" and t not in tokenizer.get_vocab()]
    if missing:
        raise InputError(
            "tokenizer_missing_tokens",
            f"The checkpoint's tokenizer lacks the image tokens {missing}.",
            f"模型的分词器缺少图像标记 {missing}。",
        )
    config = config_to_native(orig, tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"))
    config.save_pretrained(dst)
    generation_config(tokenizer).save_pretrained(dst)
    _write_shards(src, dst, state_dict_to_native)
    build_processor(
        tokenizer,
        image_size=config.vision_config.image_size[0],
        max_tiles=orig.get("max_dynamic_patch", max_tiles),
        image_seq_length=config.image_seq_length,
    ).save_pretrained(dst)
    return dst


def convert_to_original(src: str | Path, dst: str | Path) -> Path:
    """Write an InternVL-chat layout checkpoint from a native one (what vLLM's R1V loader reads)."""
    from transformers import AutoConfig, AutoTokenizer

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    cfg = AutoConfig.from_pretrained(src)
    (dst / "config.json").write_text(json.dumps(config_to_original(cfg), indent=2))
    _write_shards(src, dst, state_dict_to_original)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst
