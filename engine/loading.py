"""Load a model preset (or a checkpoint directory) in process: native InternVL class, optional 4-bit.

    from engine.loading import load_model
    lm = load_model("tiny-random")                 # builds it on first use, no download
    lm = load_model("r1v2-38b-nf4")                # downloads + converts once, then NF4 on the GPU
    lm = load_model("/path/to/checkpoint", quantization="nf4")

A checkpoint in the original InternVL-chat layout is converted once to the native layout
(``engine.convert``) and cached under ``<R1V_DATA_DIR>/models``; no remote code runs
(``trust_remote_code=False``). A converted ``ps_version: v1`` checkpoint gets the v1 pixel shuffle.

4-bit (``quantization="nf4"``): bitsandbytes NF4 with double quantization and bf16 compute. The
vision tower, the MLP adapter and ``lm_head`` stay in full precision. ``llm_int8_skip_modules``
replaces bitsandbytes' default skip list and must name the native module prefixes; the short names
(``vision_tower``) silently quantize them anyway (FACTS.md, seen on this machine).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from engine.convert import apply_ps_version
from engine.presets import PRESETS, Preset, get_preset
from tutor.errors import EngineError, InputError
from tutor.settings import data_dir

log = logging.getLogger(__name__)

SKIP_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


@dataclass
class LoadedModel:
    model: object  # InternVLForConditionalGeneration
    processor: object  # InternVLProcessor
    name: str
    path: Path
    quantization: str | None
    max_tiles: int
    budget: int = 4096  # new tokens per candidate when a request names none (the preset's max_new_tokens)
    context: int = 0  # positions the LLM can use (after any YaRN scaling, engine.context); 0: not known

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self):
        return self.model.device


def quantization_config(kind: str | None):
    """The bitsandbytes config for ``kind`` ("nf4", "int8" or None)."""
    if kind is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            llm_int8_skip_modules=SKIP_MODULES,
        )
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP_MODULES)
    raise InputError(
        "unknown_quantization",
        f"Unknown quantization '{kind}'. Use nf4 or int8.",
        f"未知的量化方式“{kind}”，请使用 nf4 或 int8。",
    )


def _hub_checkpoint(preset: Preset) -> Path:
    """Download (once) and, for the original layout, convert (once) a hub preset; the doctor's checks
    on the repository's small files run before any weight is downloaded."""
    from engine.convert import convert_to_native

    native = data_dir() / "models" / (preset.repo_id.replace("/", "--") + "-native")
    if (native / "config.json").exists():
        return native
    from engine.doctor import preflight
    from engine.hub import download

    preflight(preset.repo_id, preset=preset.name)  # the small files first: refuse before 72 GB move

    src = download(preset.repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"],
                   what=("the model", "模型"),
                   local_hint=("convert a local copy with `python -m engine convert SRC DST` and pass --model DST",
                               "用 `python -m engine convert SRC DST` 转换本地副本后用 --model DST 指定"))
    if preset.layout == "internvl_chat":
        return convert_to_native(src, native)
    return src


def _prequantized(path: Path) -> bool:
    from engine.quantize import is_prequantized

    return is_prequantized(path)


def resolve(model: str | Path) -> tuple[Path, Preset | None]:
    """A preset name or a checkpoint directory -> (native checkpoint directory, preset or None)."""
    from engine.convert import convert_to_native, is_original_layout

    if isinstance(model, str) and model in PRESETS:
        preset = PRESETS[model]
        if preset.served_only:
            raise InputError(
                "served_only_preset",
                f"The preset {preset.name} runs only in a serving engine. Start one with "
                f"`python -m engine serve --model {preset.name}` and use --server URL.",
                f"预设 {preset.name} 只能在推理服务中运行。请用 `python -m engine serve --model {preset.name}` "
                "启动服务，再用 --server URL 连接。",
            )
        if preset.source == "tiny":
            from engine.tiny import tiny_path

            return tiny_path(preset.seed), preset
        if preset.source == "local":
            return Path(__file__).resolve().parent.parent / preset.repo_id, preset
        return _hub_checkpoint(preset), preset
    path = Path(model).expanduser()
    if not path.is_dir():
        get_preset(str(model))  # raises the "unknown preset, valid ones are ..." error
    if is_original_layout(path):
        native = data_dir() / "models" / (path.resolve().name + "-native")
        if not (native / "config.json").exists():
            convert_to_native(path, native)
        return native, None
    return path, None


def load_model(
    model: str | Path = "tiny-random",
    *,
    quantization: str | None = "preset",
    device: str = "auto",
    dtype: str = "auto",
    max_new_tokens: int | None = None,
) -> LoadedModel:
    """Load a preset or checkpoint into ``InternVLForConditionalGeneration`` with its processor.

    ``quantization="preset"`` takes the preset's own setting; ``None`` forces full precision.
    ``device="auto"`` uses CUDA when available (sharded over GPUs with ``device_map="auto"``).
    ``dtype="auto"``: bf16 on GPU, float32 on CPU.
    ``max_new_tokens``: the thinking budget to plan the context for (default: the preset's
    ``max_new_tokens``); when it and the prompt exceed the LLM's ``max_position_embeddings``, YaRN RoPE
    scaling is set on the config before the weights load (``engine.context``). A directory loaded with
    no budget keeps its config as it is.
    """
    import torch
    from transformers import AutoConfig, AutoProcessor, InternVLForConditionalGeneration

    from engine.context import apply_to_config, plan_context, prompt_reserve

    path, preset = resolve(model)
    if quantization == "preset":
        quantization = preset.quantization if preset else None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    kwargs = {"dtype": torch_dtype}
    qc = quantization_config(quantization)
    if qc is not None:
        kwargs["quantization_config"] = qc
        kwargs["device_map"] = "auto" if device.startswith("cuda") else "cpu"
    elif device.startswith("cuda"):
        kwargs["device_map"] = "auto"
    elif _prequantized(path):  # bitsandbytes would pick the CUDA device itself (engine.quantize, webui.space)
        kwargs["device_map"] = "cpu"
    config = AutoConfig.from_pretrained(path)
    max_tiles = preset.max_tiles if preset else None
    budget = max_new_tokens or (preset.max_new_tokens if preset else None)
    text = config.text_config.to_dict()
    if budget:
        reserve = prompt_reserve(getattr(config, "image_seq_length", 256), max_tiles or 12)
        ctx = plan_context(text, budget, reserve)
        if ctx.rope_scaling:
            log.info("budget %d + prompt %d > max_position_embeddings %d: YaRN %s (%d positions)", budget, reserve,
                     ctx.max_position_embeddings, ctx.rope_scaling, ctx.context)
        apply_to_config(config, ctx)
        context = ctx.context
    else:
        context = int(text.get("max_position_embeddings") or 0)
    kwargs["config"] = config
    log.info("loading %s from %s (%s, %s, %s)", model, path, device, torch_dtype, quantization or "full precision")
    try:
        net = InternVLForConditionalGeneration.from_pretrained(path, **kwargs).eval()
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except torch.OutOfMemoryError as e:
        raise EngineError(
            "out_of_memory",
            "Not enough GPU memory for this model. Try the 4-bit preset (r1v2-38b-nf4) or a server.",
            "显存不足，无法加载该模型。请尝试 4 位量化预设（r1v2-38b-nf4）或使用服务器。",
            detail=repr(e),
        ) from e
    if device == "cpu" and qc is None:
        net.to("cpu")
    apply_ps_version(net)  # a converted ps_version v1 checkpoint gets InternVL's v1 pixel shuffle
    name = preset.name if preset else str(model)
    max_tiles = max_tiles or int(getattr(processor.image_processor, "max_patches", 12))
    return LoadedModel(net, processor, name, path, quantization, max_tiles, budget=budget or 4096, context=context)
