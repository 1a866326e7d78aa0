"""Write a pre-quantized checkpoint once: a preset (or directory) in bitsandbytes NF4, saved with its processor.

    python -m engine quantize r1v2-38b-nf4 /data/r1v2-38b-nf4-prequantized     # on a machine with a GPU
    python -m engine quantize tiny-random /tmp/tiny-nf4                         # the CPU build (bitsandbytes >= 0.46)

    from engine.quantize import write_prequantized, is_prequantized
    write_prequantized("r1v2-38b-nf4", dst)
    load_model(dst, device="cpu")        # loads the packed weights as they are: no quantization runs

Why: on a ZeroGPU Space (``webui.space``) the app loads the model in a main process that has no GPU.
bitsandbytes quantizes a weight when it first moves to a CUDA device, so quantizing there is what
fails; a checkpoint that is already quantized holds packed ``uint8`` weights and their quant states,
and loading it moves tensors only. ``save_pretrained`` writes the bitsandbytes ``quantization_config``
into ``config.json`` (with the skip list of ``engine.loading``: vision tower, projector and lm_head stay
in bf16), and ``from_pretrained`` reads it back. The thinking budget's YaRN (``engine.context``) is
written into the config too, so the checkpoint loads with the context it was planned for.
Tests: ``tests/test_space.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tutor.errors import InputError

log = logging.getLogger(__name__)


def is_prequantized(path: str | Path) -> bool:
    """Whether the checkpoint directory's config.json declares a bitsandbytes quantization."""
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    qc = cfg.get("quantization_config") or {}
    return qc.get("quant_method") == "bitsandbytes"


def write_prequantized(model: str | Path, dst: str | Path, *, quantization: str = "nf4",
                       device: str = "auto") -> Path:
    """Load ``model`` (a preset or directory) quantized with ``quantization`` and save it to ``dst``."""
    from engine.loading import load_model

    dst = Path(dst).expanduser()
    if dst.exists() and any(dst.iterdir()):
        raise InputError("destination_not_empty", f"{dst} is not empty; choose a new directory.",
                         f"{dst} 不是空目录，请换一个新目录。")
    lm = load_model(model, quantization=quantization, device=device)
    dst.mkdir(parents=True, exist_ok=True)
    lm.model.save_pretrained(dst)
    lm.processor.save_pretrained(dst)
    if not is_prequantized(dst):  # pragma: no cover - transformers did not write the bitsandbytes config
        raise InputError("not_quantized", f"{dst} was written without a bitsandbytes quantization_config.",
                         f"{dst} 写出时缺少 bitsandbytes 的 quantization_config。")
    log.info("wrote the %s checkpoint of %s to %s", quantization, model, dst)
    return dst
