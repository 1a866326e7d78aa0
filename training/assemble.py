"""Stage ``assemble``: vision tower + reasoning LM + a new MLP adapter -> a native InternVL checkpoint.

    python -m training assemble --config training/recipes/tiny/assemble.yaml
    python -m training assemble vision=OpenGVLab/InternViT-6B-448px-V2_5 llm=Qwen/QwQ-32B output_dir=...

R1V2's modular assembly: InternViT-6B + QwQ-32B joined by ``mlp1`` (pixel shuffle 0.5, then
LayerNorm -> Linear -> GELU -> Linear), freshly initialised from the seed. The LM's tokenizer gets
the image tokens (``<img>``, ``</img>``, ``<IMG_CONTEXT>``, ``<video>``) and the R1V2 chat template
(``engine.tiny.CHAT_TEMPLATE``: ChatML, ``<think>\\n`` pre-fill); its embeddings are resized (new rows
at the mean of the old). The result loads with ``engine.loading.load_model(dir)`` like any preset.

``vision`` may be a native ``InternVLVisionModel`` checkpoint or a standalone InternViT in the
original remote-code layout (``embeddings.*``, ``encoder.layers.*`` with fused qkv; how InternViT-6B
is published), renamed with ``engine.convert``; ``llm`` any Qwen2 causal LM. Hub ids are fetched
with ``huggingface_hub.snapshot_download``. Memory: the whole model is built on the CPU once
(38B in bf16 about 77 GB, plus the two parts while copying: plan on ~160 GB of host RAM).
With ``vision`` and ``llm`` empty, tiny parts are built first (``build_tiny_parts``), for the tests.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from engine.convert import IMAGE_TOKENS, state_dict_to_native
from training.config import AssembleConfig
from tutor.errors import InputError

log = logging.getLogger(__name__)


def _local(path_or_id: str) -> Path:
    p = Path(path_or_id).expanduser()
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                                  "*.jinja", "*.py"]))
    except Exception as e:  # offline, unknown id
        raise InputError("part_missing", f"Cannot find or download the model part '{path_or_id}'.",
                         f"找不到也无法下载模型部件“{path_or_id}”。", detail=repr(e)) from e


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise InputError("part_no_weights", f"No .safetensors weights in {path}.", f"{path} 中没有 .safetensors 权重。")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def load_vision(path: Path) -> tuple[dict, dict[str, torch.Tensor], bool]:
    """(config dict, weights with native ``model.vision_tower.*`` names, is_original_layout)."""
    cfg = json.loads((path / "config.json").read_text())
    sd = _read_safetensors(path)
    if cfg.get("model_type") == "internvl_vision":
        sd = {("model.vision_tower." + k.removeprefix("vision_tower.").removeprefix("model.vision_tower.")): v
              for k, v in sd.items()}
        return cfg, sd, False
    # original InternViT layout: rename as if it sat under ``vision_model.`` in an InternVL-chat checkpoint
    prefixed = {(k if k.startswith("vision_model.") else "vision_model." + k): v for k, v in sd.items()}
    return cfg, state_dict_to_native(prefixed), True


def extend_tokenizer(llm_path: Path):
    """The LM's tokenizer plus the image tokens (as special tokens) and the R1V2 chat template."""
    import tempfile

    from transformers import AutoTokenizer

    from engine.tiny import CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(llm_path, trust_remote_code=False)
    added = tok.add_tokens([t for t in IMAGE_TOKENS.values() if t not in tok.get_vocab()], special_tokens=True)
    with tempfile.TemporaryDirectory() as tmp:  # reload so the processor-facing attributes are set
        tok.save_pretrained(tmp)
        tok = AutoTokenizer.from_pretrained(tmp, extra_special_tokens=IMAGE_TOKENS, trust_remote_code=False)
    tok.chat_template = CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = "<|endoftext|>" if "<|endoftext|>" in tok.get_vocab() else tok.eos_token
    log.info("tokenizer: %d image tokens added (vocab %d)", added, len(tok))
    return tok


def assemble(cfg: AssembleConfig) -> Path:
    """Build and save the assembled checkpoint; returns its directory."""
    from transformers import (
        AutoModelForCausalLM,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLVisionConfig,
    )

    from engine.convert import config_to_native
    from engine.tiny import build_processor, generation_config

    out = Path(cfg.output_dir)
    if not cfg.vision or not cfg.llm:
        parts = build_tiny_parts(out / "parts", seed=cfg.seed)
        vision_path, llm_path = parts["vision"], parts["llm"]
    else:
        vision_path, llm_path = _local(cfg.vision), _local(cfg.llm)
    dtype = getattr(torch, cfg.dtype)
    tok = extend_tokenizer(llm_path)
    image_token_id = tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype, trust_remote_code=False)
    llm.resize_token_embeddings(len(tok), mean_resizing=True)
    vcfg, vision_sd, original = load_vision(vision_path)
    text_cfg = llm.config
    if original:
        orig = {"ps_version": "v2", "downsample_ratio": cfg.downsample_ratio, "vision_config": vcfg,
                "llm_config": {**text_cfg.to_dict(), "architectures": None}, "force_image_size": vcfg.get("image_size")}
        config = config_to_native(orig, image_token_id)
        config.text_config = text_cfg
    else:
        vision_cfg = InternVLVisionConfig(**{k: v for k, v in vcfg.items() if k not in ("architectures", "model_type")})
        size = vision_cfg.image_size[0] if isinstance(vision_cfg.image_size, list | tuple) else vision_cfg.image_size
        patch = vision_cfg.patch_size[0] if isinstance(vision_cfg.patch_size, list | tuple) else vision_cfg.patch_size
        config = InternVLConfig(vision_config=vision_cfg, text_config=text_cfg, image_token_id=image_token_id,
                                image_seq_length=int((size // patch) ** 2 * cfg.downsample_ratio ** 2),
                                downsample_ratio=cfg.downsample_ratio, vision_feature_layer=-1,
                                vision_feature_select_strategy="default", tie_word_embeddings=False)
    config.tie_word_embeddings = bool(getattr(text_cfg, "tie_word_embeddings", False))
    torch.manual_seed(cfg.seed)  # the adapter's initialisation
    model = InternVLForConditionalGeneration(config).to(dtype)
    state = dict(vision_sd)
    state.update({"model.language_model." + k.removeprefix("model."): v for k, v in llm.state_dict().items()
                  if k.startswith("model.")})
    state["lm_head.weight"] = llm.get_output_embeddings().weight
    missing, unexpected = model.load_state_dict(state, strict=False)
    not_adapter = [k for k in missing if not k.startswith("model.multi_modal_projector.")]
    if not_adapter or unexpected:
        raise InputError("assemble_mismatch", "The vision tower or LM weights do not fit the assembled model.",
                         "视觉塔或语言模型的权重与组装后的模型不匹配。",
                         detail=f"missing={not_adapter[:8]} unexpected={list(unexpected)[:8]}")
    model.generation_config = generation_config(tok)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    image_size = config.vision_config.image_size
    build_processor(tok, image_size=image_size[0] if isinstance(image_size, list | tuple) else image_size,
                    max_tiles=cfg.max_tiles, image_seq_length=config.image_seq_length).save_pretrained(out)
    log.info("assembled %s + %s -> %s (adapter: %s)", vision_path, llm_path, out,
             [k for k in missing][:4])
    return out


# ------------------------------------------------------------------------------------ tiny parts


def build_tiny_parts(out_dir: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """A tiny InternViT in the *original* layout (as InternViT-6B is published) and a tiny Qwen2
    LM whose tokenizer has the ChatML and think tokens but no image tokens (as QwQ-32B's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        InternVLForConditionalGeneration,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from engine.convert import state_dict_to_original
    from engine.tiny import _corpus, build_tokenizer, tiny_config

    out = Path(out_dir)
    # vision: the tiny-random vision tower, renamed to the original InternViT layout
    vision_native = tiny_config(build_tokenizer()).vision_config
    torch.manual_seed(seed)
    donor = InternVLForConditionalGeneration(tiny_config(build_tokenizer()))
    vsd = {k: v for k, v in donor.state_dict().items() if k.startswith("model.vision_tower.")}
    orig = {k.removeprefix("vision_model."): v.contiguous() for k, v in state_dict_to_original(vsd).items()}
    vdir = out / "vision"
    vdir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(orig, str(vdir / "model.safetensors"))
    v = vision_native
    (vdir / "config.json").write_text(json.dumps({
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
        "hidden_size": v.hidden_size, "num_hidden_layers": v.num_hidden_layers,
        "num_attention_heads": v.num_attention_heads, "intermediate_size": v.intermediate_size,
        "qk_normalization": v.use_qk_norm, "qkv_bias": v.attention_bias, "norm_type": v.norm_type,
        "layer_norm_eps": v.layer_norm_eps, "image_size": 448, "patch_size": 14, "num_channels": 3,
        "initializer_factor": 1.0, "hidden_act": "gelu",
    }, indent=2))
    # language model with its own tokenizer (no image tokens)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
    bpe.train_from_iterator(_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=1100, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    lcfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                       tie_word_embeddings=False, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                       pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed + 1)
    lm = Qwen2ForCausalLM(lcfg)
    ldir = out / "llm"
    lm.save_pretrained(ldir)
    tok.save_pretrained(ldir)
    return {"vision": vdir, "llm": ldir}
