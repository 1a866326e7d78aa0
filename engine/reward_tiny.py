"""The ``tiny-reward`` model: a miniature Skywork-VL-Reward built locally, with no download.

Skywork-VL-Reward-7B is Qwen2.5-VL-7B-Instruct with a scalar value head (FACTS.md, "Reward model").
This module writes a checkpoint in the same layout, scaled down to run in milliseconds on a CPU:

- ``config.json`` + ``model.safetensors``: a native ``Qwen2_5_VLForConditionalGeneration`` (window
  attention vision tower with 14 px patches and 2x2 patch merging, M-RoPE Qwen2 language model);
- ``value_head.safetensors``: the head on its own, keys ``v_head.summary.weight`` (shape
  ``[1, hidden]``) and ``v_head.summary.bias`` (``[1]``), as the real checkpoint ships it;
- tokenizer, chat template and processor files (``Qwen2_5_VLProcessor`` with a
  ``Qwen2VLImageProcessor``): a byte-level BPE trained here with ``tokenizers`` carrying the Qwen
  special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>``,
  ``<|vision_end|>``, ``<|video_pad|>``), and a ChatML template with Qwen's default system turn in
  which each image part becomes ``<|vision_start|><|image_pad|><|vision_end|>``.

Weights are random: scores mean nothing. Tests and benchmarks use it for the *scoring path*
(loading the head from its file, batching, padding, the shared image). Built once and cached under
``<R1V_DATA_DIR>/models/tiny-reward-s<seed>-v<version>``; ``tiny_reward_path()`` builds on first use.

    from engine.reward_tiny import tiny_reward_path, build_tiny_reward
    path = tiny_reward_path()           # cached, deterministic from the seed
    build_tiny_reward("/tmp/rm", seed=3)
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

BUILD_VERSION = 1
HEAD_FILE = "value_head.safetensors"
HEAD_WEIGHT = "v_head.summary.weight"
HEAD_BIAS = "v_head.summary.bias"

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]

# Qwen2.5-VL's chat layout, written here: a default system turn when none is given, ChatML turns,
# one <|vision_start|><|image_pad|><|vision_end|> per image part (the processor expands the pad).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(vocab_size: int = 1200):
    """A byte-level BPE with the Qwen2.5-VL special tokens, trained on engine.tiny's small corpus."""
    from engine import tiny

    return tiny.build_tokenizer(
        vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        chat_template=CHAT_TEMPLATE,
    )


def build_processor(tokenizer, *, min_pixels: int = 56 * 56, max_pixels: int = 448 * 448):
    """``Qwen2_5_VLProcessor``: images resized to a multiple of 28 px with their area in
    [min_pixels, max_pixels], 14 px patches, 2x2 merged: one token per 28x28 px."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14,
                                            merge_size=2, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


def tiny_config(tokenizer):
    """A Qwen2.5-VL config scaled down (hidden 64, 2 layers; vision hidden 32, 2 blocks)."""
    from transformers import Qwen2_5_VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        vision_config={
            "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "out_hidden_size": 64,
            "fullatt_block_indexes": [1], "tokens_per_second": 2,
        },
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
            # head_dim 16: the M-RoPE sections (temporal, height, width) add up to head_dim / 2
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": None, "eos_token_id": ids["<|im_end|>"], "pad_token_id": tokenizer.pad_token_id,
            "tie_word_embeddings": False,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def write_value_head(path: str | Path, weight, bias) -> Path:
    """Write a value head in the real checkpoint's file layout (``value_head.safetensors``)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir():
        path = path / HEAD_FILE
    save_file({HEAD_WEIGHT: weight.detach().contiguous().cpu(), HEAD_BIAS: bias.detach().contiguous().cpu()},
              str(path))
    return path


def build_tiny_reward(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny reward checkpoint (backbone, separate value head, processor) into ``out_dir``."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # spread random weights so that different responses get clearly different values
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    hidden = config.text_config.hidden_size
    weight = torch.randn(1, hidden, generator=gen) / hidden**0.5
    bias = torch.randn(1, generator=gen) * 0.1
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    write_value_head(out, weight, bias)
    return out


def tiny_reward_path(seed: int = 0) -> Path:
    """The cached tiny reward checkpoint, built on first use."""
    from engine.tiny import cached_build

    return cached_build(f"tiny-reward-s{seed}-v{BUILD_VERSION}", HEAD_FILE,
                        lambda out: build_tiny_reward(out, seed=seed))
