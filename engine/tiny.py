"""The ``tiny-random`` model: a miniature R1V2 built locally, with no download.

Same architecture family and chat format as Skywork-R1V2-38B, scaled down to run in milliseconds on
a CPU: a native transformers InternVL (``InternVLForConditionalGeneration``) with a small
InternViT-style vision tower (RMSNorm, qk-norm, layer scale, 448 px tiles of 14 px patches), the MLP
adapter with pixel shuffle (256 tokens per tile), and a small Qwen2 language model; its tokenizer is
a byte-level BPE trained here with ``tokenizers`` on a small bilingual corpus, carrying the R1V2
special tokens (ChatML ``<|im_start|>``/``<|im_end|>``, ``<img>``, ``<IMG_CONTEXT>``, ``</img>``,
``<think>``/``</think>``). Weights are random: tests and UI development use it for the *model path*
(loading, tiling, batching, streaming, quantization), never for answer quality.

Built once and cached under ``<R1V_DATA_DIR>/models/tiny-random-s<seed>-v<version>``; the build is
deterministic from the seed. Run ``python -m engine build-tiny`` to build it ahead of time.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from tutor.settings import data_dir

log = logging.getLogger(__name__)

BUILD_VERSION = 4  # bump when the recipe below changes, so stale caches are not reused

# R1V2's chat vocabulary (FACTS.md: ChatML turns, <image> expands to <img><IMG_CONTEXT>...</img>).
# InternVL's pixel normalization (FACTS.md): ImageNet mean/std after rescaling to [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
# <think>/</think> are added but not "special" (build_tokenizer clears the flag the BPE trainer sets):
# decoding with skip_special_tokens keeps them, as in QwQ.
THINK_TOKENS = ["<think>", "</think>"]

# A Jinja chat template equivalent to engine.chat.render_prompt, saved with the tokenizer so that
# `transformers serve` and other tools render the same prompt (one <IMG_CONTEXT> per image; the
# processor expands it). The assistant turn is pre-filled with "<think>\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def _corpus() -> list[str]:
    """A small, fixed bilingual corpus: enough for a BPE that splits math text sensibly."""
    en = [
        "Solve for x. The answer is \\boxed{3}. Let the function f(x) = x^2 + 2x + 1.",
        "A ball is thrown upward with speed 10 m/s. Find the maximum height. g = 10 m/s^2.",
        "Which of the following is correct? A. B. C. D. Therefore the answer is C.",
        "In triangle ABC, angle A = 60 degrees, AB = 2, AC = 3. Find BC.",
        "The reaction 2H2 + O2 -> 2H2O releases energy. Calculate the moles of water.",
        "Cells divide by mitosis and meiosis; DNA replication is semi-conservative.",
        "First, we compute the derivative. Then we check the boundary. So the minimum is 2.",
        "Wait, let me re-check the calculation. Hmm, that gives 5/2 instead.",
        "sequence sum probability vector matrix integral limit sin cos tan log ln sqrt frac",
    ]
    zh = [
        "解：设 x 为未知数，由题意得 2x + 3 = 7，所以 x = 2。答案是 \\boxed{2}。",
        "下列说法正确的是（　）A．B．C．D．故选C。",
        "已知函数 f(x) = ln x - ax，求 f(x) 的单调区间。",
        "一个小球从高处自由下落，重力加速度 g 取 10 m/s²，求落地速度。",
        "在化学反应中，氧化剂得到电子，还原剂失去电子。",
        "细胞膜的主要成分是脂质和蛋白质，具有选择透过性。",
        "请用中文回答，并把最终答案写在 \\boxed{} 中。首先，我们分析题目。",
        "三角形 数列 概率 向量 导数 积分 速度 加速度 电场 磁场 化学 生物 基因 蛋白质",
    ]
    latex = ["\\frac{1}{2} \\sqrt{3} \\pi \\alpha \\beta \\theta \\le \\ge \\in \\infty \\cdot \\times"]
    return (en + zh + latex) * 20


IMAGE_TOKEN_ATTRS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


def build_tokenizer(vocab_size: int = 1200, *, special_tokens: list[str] | None = None,
                    extra_special_tokens: dict[str, str] | None = None, chat_template: str = CHAT_TEMPLATE,
                    corpus: list[str] | None = None):
    """Train a byte-level BPE with the R1V2 special tokens; return a PreTrainedTokenizerFast.

    The keyword arguments let other tiny models (the reward model's Qwen2.5-VL vocabulary, the mini
    model's own corpus) share this recipe.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=(special_tokens or SPECIAL_TOKENS) + THINK_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or _corpus(), trainer=trainer)
    # The trainer registers its tokens as special; <think>/</think> must not be (vLLM and
    # skip_special_tokens would drop them and the reply could not be split). Same ids, flag cleared.
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=extra_special_tokens or IMAGE_TOKEN_ATTRS,
    )
    fast.chat_template = chat_template
    return fast


def build_processor(tokenizer, *, image_size: int = 448, max_tiles: int = 12, image_seq_length: int = 256):
    """The InternVL processor: dynamic tiling (grid closest to the aspect ratio, up to ``max_tiles``
    tiles plus a thumbnail), bicubic resize, ImageNet mean/std; one <IMG_CONTEXT> per image in the
    text expands to ``image_seq_length`` x tiles context tokens between <img> and </img>."""
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    image_processor = GotOcr2ImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_to_patches=True,
        min_patches=1,
        max_patches=max_tiles,
        do_resize=True,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),  # InternVL's; the class default is CLIP's, which InternViT never saw
        image_std=list(IMAGENET_STD),
    )
    return InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=image_seq_length,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(tokenizer, *, vision_norm: str = "rms_norm", qk_norm: bool = True, qkv_bias: bool = False):
    """Config of the tiny model. The defaults mirror InternViT-6B (RMSNorm, qk-norm, no qkv bias);
    ``vision_norm="layer_norm", qk_norm=False, qkv_bias=True`` mirrors InternViT-300M."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    vision = InternVLVisionConfig(
        hidden_size=64,  # 2 heads of 32: vLLM's CPU attention needs a head size of at least 32
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        use_qk_norm=qk_norm,
        norm_type=vision_norm,
        attention_bias=qkv_bias,
        image_size=448,
        patch_size=14,
        use_mean_pooling=True,  # InternViT has no final norm
        layer_scale_init_value=1.0,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head size 32, the least vLLM's CPU attention takes (FACTS.md)
        num_key_value_heads=1,
        max_position_embeddings=32768,
        tie_word_embeddings=False,  # QwQ-32B does not tie
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=256,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def generation_config(tokenizer):
    """R1V2's published sampling defaults; EOS ids are the ChatML tokens."""
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=True,
        temperature=0.6,
        top_p=0.95,
        repetition_penalty=1.05,
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny(out_dir: str | Path, *, seed: int = 0, **config_kw) -> Path:
    """Build the tiny random model, tokenizer and processor into ``out_dir`` (a native checkpoint)."""
    import torch
    from transformers import InternVLForConditionalGeneration

    out = Path(out_dir)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, **config_kw)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    # Random init gives near-zero layer outputs; spread the weights a little so that sampled text
    # differs between candidates and images (a model-path test must see the image change the logits).
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(out)
    build_processor(tokenizer).save_pretrained(out)
    return out


def cached_build(name: str, marker: str, build) -> Path:
    """``<data>/models/<name>``, built by ``build(tmp_dir)`` on first use. The build goes to a temporary
    folder renamed into place, so concurrent users never see a half-written checkpoint; ``marker`` is
    the file whose presence means the build finished."""
    target = data_dir() / "models" / name
    if (target / marker).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    try:
        log.info("building %s into %s", name, target)
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / marker).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_path(seed: int = 0) -> Path:
    """The cached tiny checkpoint, built on first use."""
    return cached_build(f"tiny-random-s{seed}-v{BUILD_VERSION}", "config.json", lambda out: build_tiny(out, seed=seed))
