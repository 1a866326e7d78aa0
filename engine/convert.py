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

Vision flags (``qkv_bias``, ``qk_normalization``, ``norm_type``) are read from the tensors present,
not from the config (whose absent keys the InternVL config class defaults to ``qkv_bias=False,
qk_normalization=True``). Pixel shuffle: ``ps_version`` ``v2`` is the native class's; ``v1`` (the config
class default) lacks its final permute, so the converted config records ``ps_version: "v1"`` and
``engine.loading`` puts the v1 shuffle on the loaded model (``apply_ps_version``). Before writing, the
converter runs ``engine.checkpoint_checks.refusals`` (every weight name mapped, nothing the native class
would miss, known ``ps_version``, usable geometry) and refuses a checkpoint that would load wrong; after
writing, it compares the written names and shapes with the native class's and raises on any difference.
Tokenizers and configs load with ``trust_remote_code=False``: a local copy's ``.py`` files never run.
Not verified against the real R1V2 files (no hub access here): the config field names follow the
InternVL-chat / Skywork configuration classes; tests round-trip a tiny checkpoint written in that
layout and compare logits.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from engine.tiny import IMAGE_TOKEN_ATTRS as IMAGE_TOKENS  # the tokenizer attributes InternVLProcessor reads
from tutor.errors import EngineError, InputError

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


PS_VERSIONS = ("v1", "v2")
PS_DEFAULT = "v1"  # InternVL's / Skywork's config class default when the key is absent
# InternVisionConfig's defaults for absent keys (the remote code and vLLM/SGLang build from these).
VISION_DEFAULTS = {"qkv_bias": False, "qk_normalization": True, "norm_type": "rms_norm"}


def vision_flags(names) -> dict:
    """``qkv_bias``, ``qk_normalization`` and ``norm_type`` as the original-layout weight names imply them
    (None where no vision layer is present to tell)."""
    names = list(names)
    layers = [n for n in names if n.startswith("vision_model.encoder.layers.")]
    if not layers:
        return {k: None for k in VISION_DEFAULTS}
    has = lambda suffix: any(n.endswith(suffix) for n in layers)  # noqa: E731
    return {
        "qkv_bias": has(".attn.qkv.bias"),
        "qk_normalization": has(".attn.q_norm.weight"),
        "norm_type": "layer_norm" if has(".norm1.bias") else "rms_norm",
    }


def declared_vision_flags(orig: dict) -> dict:
    """The flags the config states, or the config class default where a key is absent."""
    v = orig.get("vision_config") or {}
    return {k: v.get(k, default) for k, default in VISION_DEFAULTS.items()}


def check_ps_version(orig: dict) -> str:
    ps = orig.get("ps_version", PS_DEFAULT)
    if ps not in PS_VERSIONS:
        raise InputError(
            "unsupported_checkpoint",
            f"This checkpoint uses pixel-shuffle version {ps!r}; only v1 and v2 are known.",
            f"该模型使用未知的像素重排版本 {ps!r}，只支持 v1 和 v2。",
            detail=f"ps_version={ps!r}",
        )
    return ps


def config_to_native(orig: dict, image_token_id: int, weight_names=None):
    """An InternVL-chat config dict (``vision_config`` + ``llm_config``) to a native ``InternVLConfig``.

    ``weight_names``: the checkpoint's weight names; the vision flags are then read from them (the
    config's, or the class defaults, only where no vision layer is listed)."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    ps = check_ps_version(orig)
    flags = declared_vision_flags(orig)
    if weight_names is not None:
        flags.update({k: val for k, val in vision_flags(weight_names).items() if val is not None})
    v = orig["vision_config"]
    image_size = orig.get("force_image_size") or v.get("image_size", 448)
    vision = InternVLVisionConfig(
        hidden_size=v["hidden_size"],
        num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"],
        intermediate_size=v["intermediate_size"],
        hidden_act=v.get("hidden_act", "gelu"),
        use_qk_norm=bool(flags["qk_normalization"]),
        attention_bias=bool(flags["qkv_bias"]),
        norm_type=flags["norm_type"],
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
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=int((image_size // vision.patch_size[0]) ** 2 * orig.get("downsample_ratio", 0.5) ** 2),
        downsample_ratio=orig.get("downsample_ratio", 0.5),
        vision_feature_layer=orig.get("select_layer", -1),
        vision_feature_select_strategy="default",  # InternVL-chat drops the CLS token
        tie_word_embeddings=bool(orig["llm_config"].get("tie_word_embeddings", False)),
    )
    config.ps_version = ps  # saved in config.json; engine.loading applies v1 (apply_ps_version)
    return config


def pixel_shuffle_v1(vision_features, scale_factor: float = 0.5):
    """InternVL's pixel shuffle with ``ps_version='v1'``: the v2 shuffle without its final permute,
    i.e. the v2 result with its two spatial axes swapped back."""
    from transformers.models.internvl.modeling_internvl import InternVLModel

    return InternVLModel.pixel_shuffle(None, vision_features, scale_factor).permute(0, 2, 1, 3).contiguous()


def apply_ps_version(model) -> None:
    """Give a loaded native InternVL model the pixel shuffle its config names (``ps_version``; v2 is the
    class's own). Anything but v1/v2 is refused."""
    import types

    ps = getattr(model.config, "ps_version", "v2")
    if check_ps_version({"ps_version": ps}) == "v1":
        inner = model.model if hasattr(model, "model") else model
        inner.pixel_shuffle = types.MethodType(lambda self, x, scale_factor=0.5: pixel_shuffle_v1(x, scale_factor),
                                               inner)


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
        "ps_version": getattr(cfg, "ps_version", "v2"),
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


def _write_shards(src: Path, dst: Path, convert) -> dict[str, tuple]:
    """Convert shard by shard (one shard in memory at a time) and write an index; return the written
    names and shapes."""
    from safetensors.torch import load_file, save_file

    weight_map, shapes, total = {}, {}, 0
    shards = _shards(src)
    for i, shard in enumerate(shards):
        out = convert(load_file(shard))
        name = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(out, dst / name, metadata={"format": "pt"})
        for k, t in out.items():
            weight_map[k] = name
            shapes[k] = tuple(t.shape)
            total += t.numel() * t.element_size()
        log.info("converted %s -> %s (%d tensors)", shard.name, name, len(out))
    (dst / "model.safetensors.index.json").write_text(  # like the published checkpoints: always an index
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    return shapes


def load_tokenizer(path: str | Path, **kwargs):
    """The checkpoint's tokenizer, never its remote code (``trust_remote_code=False``: no prompt, no
    ``.py`` run); a tokenizer that needs its own code is a clear InputError."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its "model of type internvl_chat" warning: config.json is read as plain
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False, **kwargs)
    except (ValueError, OSError, TypeError) as e:
        cfg = Path(path) / "tokenizer_config.json"
        remote = cfg.is_file() and "auto_map" in cfg.read_text(errors="replace")
        if remote:
            raise InputError(
                "tokenizer_needs_remote_code",
                f"The tokenizer in {path} needs its own Python code (auto_map), which this project never runs.",
                f"{path} 中的分词器需要运行其自带的 Python 代码（auto_map），本项目从不运行远程代码。",
                detail=repr(e),
            ) from e
        raise InputError("tokenizer_load_failed", f"Could not load the tokenizer in {path}.",
                         f"无法加载 {path} 中的分词器。", detail=repr(e)) from e
    finally:
        hf_logging.set_verbosity(level)


def refuse(rows, src, action: str = "convert") -> None:
    """Raise an InputError naming every failed row after which the checkpoint would load wrong."""
    from engine.checkpoint_checks import refusals

    bad = refusals(rows)
    if bad:
        text = "; ".join(f"{r.check}: {r.detail}" for r in bad)
        raise InputError(
            "checkpoint_would_load_wrong",
            f"Refusing to {action} {src}: it would load wrong. {text}. Run `python -m engine doctor {src}` for all "
            "checks.",
            f"拒绝{'下载' if action == 'download' else '转换'} {src}：它会加载错误。{text}。运行 "
            f"`python -m engine doctor {src}` 查看全部检查。",
            detail=text,
        )


def verify_written(shapes: dict, config) -> None:
    """Raise when the written names/shapes differ from what the native class for ``config`` expects."""
    from engine.checkpoint_checks import _names, compare_native, native_expected

    shapes = {_native_in_memory_name(k): v for k, v in shapes.items()}  # on-disk names of saved native models
    missing, unexpected, wrong = compare_native(shapes, native_expected(config))
    if missing or unexpected or wrong:
        text = "; ".join(f"{what}: {_names(xs)}" for what, xs in
                         (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if xs)
        raise EngineError(
            "conversion_mismatch",
            f"The converted weights do not match the native InternVL class ({text}); nothing usable was written.",
            f"转换后的权重与原生 InternVL 类不一致（{text}），未写出可用的模型。",
            detail=text,
        )


def convert_to_native(src: str | Path, dst: str | Path, *, max_tiles: int = 12) -> Path:
    """Write a native transformers InternVL checkpoint (weights, config, processor) from an original one.

    The checks of ``engine.checkpoint_checks`` run first (on the index or the safetensors headers);
    config.json, the cache's marker, is written last, after the written weights were verified."""
    from engine.checkpoint_checks import architecture_rows, geometry_rows, weight_rows, weight_shapes
    from engine.tiny import build_processor, generation_config

    src, dst = Path(src), Path(dst)
    if not is_original_layout(src):
        raise InputError(
            "not_original_layout",
            f"{src} is not an InternVL-chat checkpoint (no llm_config in config.json).",
            f"{src} 不是 InternVL-chat 格式的模型（config.json 中没有 llm_config）。",
        )
    orig = json.loads((src / "config.json").read_text())
    shapes, source = weight_shapes(src)
    refuse(architecture_rows(orig) + geometry_rows(orig, preset_tiles=max_tiles)
            + weight_rows(orig, shapes, source), src)
    tokenizer = load_tokenizer(src, extra_special_tokens=IMAGE_TOKENS)
    missing = [t for t in IMAGE_TOKENS.values() if t != "<video>" and t not in tokenizer.get_vocab()]
    if missing:
        raise InputError(
            "tokenizer_missing_tokens",
            f"The checkpoint's tokenizer lacks the image tokens {missing}.",
            f"模型的分词器缺少图像标记 {missing}。",
        )
    config = config_to_native(orig, tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"), weight_names=shapes)
    dst.mkdir(parents=True, exist_ok=True)
    verify_written(_write_shards(src, dst, state_dict_to_native), config)
    generation_config(tokenizer).save_pretrained(dst)
    build_processor(
        tokenizer,
        image_size=config.vision_config.image_size[0],
        max_tiles=orig.get("max_dynamic_patch", max_tiles),
        image_seq_length=config.image_seq_length,
    ).save_pretrained(dst)
    config.save_pretrained(dst)
    return dst


def convert_to_original(src: str | Path, dst: str | Path, *, architecture: str = "InternVLChatModel") -> Path:
    """Write an InternVL-chat layout checkpoint from a native one (what vLLM's R1V loader reads);
    ``architecture``: ``InternVLChatModel`` (SGLang, vLLM) or ``SkyworkR1VChatModel`` (vLLM's R1V class)."""
    from transformers import AutoConfig

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    cfg = AutoConfig.from_pretrained(src, trust_remote_code=False)
    original = config_to_original(cfg, architecture=architecture)
    original.update(loadable_config_fields(cfg))
    (dst / "config.json").write_text(json.dumps(original, indent=2))
    write_loadable_extras(src, dst)
    _write_shards(src, dst, state_dict_to_original)
    tokenizer = load_tokenizer(src)
    tokenizer.save_pretrained(dst)
    write_processor_files(cfg, tokenizer, dst)
    return dst


# What a saved processor writes besides its tokenizer's files (those the tokenizer save already wrote).
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json")


def write_processor_files(cfg, tokenizer, dst: str | Path, *, max_tiles: int = 12) -> list[str]:
    """Write the image processor's config files for an original-layout checkpoint at ``dst``.

    The tokenizer config keeps ``processor_class`` (the native ``InternVLProcessor``), so
    ``AutoProcessor.from_pretrained(dst)``, which SGLang calls to get the tokenizer its InternVL
    processor uses, builds that class and needs its image and video processor configs; without them it
    fails (``OSError: Can't load image processor``) and so does ``launch_server`` (issue 19, point 1).
    The tiling written is the one ``config_to_original`` records (``max_dynamic_patch``). Returns the
    names written."""
    import tempfile

    from engine.tiny import build_processor

    dst = Path(dst)
    processor = build_processor(tokenizer, image_size=cfg.vision_config.image_size[0], max_tiles=max_tiles,
                                image_seq_length=cfg.image_seq_length)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        processor.save_pretrained(tmp)  # processor_config.json, the sub-processors nested (transformers 5)
        processor.image_processor.save_pretrained(tmp)  # preprocessor_config.json, for AutoImageProcessor
        for name in PROCESSOR_FILES:
            if (Path(tmp) / name).is_file():
                shutil.copyfile(Path(tmp) / name, dst / name)
                written.append(name)
    return written


CONFIG_MODULE = "configuration_skywork_chat"  # engine/skywork_config.py, copied into the checkpoint


def loadable_config_fields(cfg) -> dict:
    """The config.json keys that let transformers and vLLM load an ``internvl_chat`` config (issue 19
    point 5): ``auto_map`` to the config module written beside it, and the weights' dtype."""
    dtype = getattr(cfg, "dtype", None) or getattr(cfg.text_config, "dtype", None) or "float32"
    dtype = str(dtype).removeprefix("torch.")
    return {"auto_map": {"AutoConfig": f"{CONFIG_MODULE}.SkyworkChatConfig"}, "dtype": dtype, "torch_dtype": dtype}


def write_loadable_extras(src: Path, dst: Path) -> None:
    """Beside config.json: the config module ``auto_map`` names, and ``generation_config.json`` (the
    source's, else R1V2's published sampling with the ChatML EOS ids)."""
    shutil.copyfile(Path(__file__).with_name("skywork_config.py"), dst / f"{CONFIG_MODULE}.py")
    if (src / "generation_config.json").is_file():
        shutil.copyfile(src / "generation_config.json", dst / "generation_config.json")
    else:
        from engine.tiny import generation_config

        generation_config(load_tokenizer(src)).save_pretrained(dst)


def tiny_original_path(seed: int = 0) -> Path:
    """The project's tiny model in the original InternVL-chat layout (what the hub checkpoints look like),
    cached beside the native one; its tokenizer config, like the published ones, names no image tokens."""
    from engine.tiny import BUILD_VERSION, cached_build, tiny_path

    def build(out: Path) -> None:
        convert_to_original(tiny_path(seed), out)
        tcfg = out / "tokenizer_config.json"
        data = json.loads(tcfg.read_text())
        for key in ("extra_special_tokens", *IMAGE_TOKENS):
            data.pop(key, None)
        tcfg.write_text(json.dumps(data, indent=2))

    # "-p": with the processor files (write_processor_files); a cache from before them is not reused
    return cached_build(f"tiny-random-s{seed}-v{BUILD_VERSION}-original-p", "config.json", build)
