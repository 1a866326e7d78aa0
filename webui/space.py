"""The app on a Hugging Face Space with ZeroGPU: import order, a pre-quantized model loaded at module
scope, and the GPU call's size and duration.

    from webui import space
    space.import_spaces()                  # first, before anything touches CUDA (no-op off ZeroGPU)
    engine = space.module_scope_engine(cfg)   # on ZeroGPU: the model loaded now, moved to "cuda"; else None
    fn = space.gpu(fn)                     # spaces.GPU(size=..., duration=...)(fn); fn itself off ZeroGPU

What ZeroGPU does (its hub docs "Spaces ZeroGPU" and the ``spaces`` package, 0.51.3 here) and what
follows for R1V2:

- The app runs in a main process with no GPU; each ``@spaces.GPU`` call runs in a GPU worker forked
  for it (or a warm one reused). ``import spaces`` must come before CUDA is initialised (it raises
  "CUDA has been initialized before importing the `spaces` package"), then emulates CUDA in the main
  process: ``.to("cuda")`` at module scope is intercepted, the weights stay in RAM, are packed to disk
  when Gradio launches and mapped onto each worker's GPU. So the model is loaded once at module
  scope; loading inside the decorated call would reload 38B on every cold worker.
- transformers' ``device_map`` loading materialises tensors on the device in its own threads, which
  the emulation does not intercept (seen here under the real ``spaces`` package with
  ``SPACES_ZERO_GPU=true``: "Low-level CUDA init (`torch._C._cuda_init`) reached"). So the model is
  loaded on the CPU and then moved with ``.to("cuda")``, the documented pattern.
- bitsandbytes quantizes a weight when it first moves to a real CUDA device; users report NF4 failing
  at module scope on ZeroGPU. So the Space loads a checkpoint quantized once beforehand
  (``python -m engine quantize r1v2-38b-nf4 DIR``, then upload it): ``R1V_PREQUANTIZED`` names its
  directory or hub repository. With ``r1v2-38b-nf4`` and no pre-quantized checkpoint the Space refuses
  to start the model, saying what to do, rather than fail later.
- ``size``: "large" is half an H200 (about 70 GB), "xlarge" the whole one (141 GB, twice the quota).
  :func:`gpu_size` adds the weights (``notes["weights_gb"]``) and the KV cache of n candidates at the
  thinking budget (256 KiB per token, FACTS.md) and picks the smaller size that holds them.
- ``duration``: 60 s by default. :func:`duration` is a callable of the call's arguments: setup plus
  ``budget / R1V_GPU_TOKENS_PER_S`` (default 20 tokens/s: a guess, not measured), at most
  ``R1V_GPU_MAX_SECONDS`` (default 300); ``R1V_GPU_SECONDS`` fixes it instead. A 64K-token budget
  does not fit any ZeroGPU call at such speeds: lower the page's thinking budget there.

Verified here (``tests/test_space.py``): with the real ``spaces`` package and the ZeroGPU variables,
the app's start imports ``spaces`` before torch initialises CUDA, loads the (pre-quantized) model at
module scope on the CPU and moves it to the emulated CUDA device without reaching CUDA, and wraps
generation in ``spaces.GPU`` with these size and duration; off ZeroGPU the decorator returns the
function itself and generation runs on the CPU. Only a deployed Space can show the rest: that packing
and the worker's mapping keep bitsandbytes' packed weights and quant states intact, the real load and
decode times of R1V2, whether the Space's torch version is supported by ZeroGPU, and the quota.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from tutor.errors import EngineError

log = logging.getLogger(__name__)

KV_BYTES_PER_TOKEN = 256 * 1024  # R1V2 in bf16: 64 layers x 8 KV heads x 128 x 2 x 2 bytes (FACTS.md)
LARGE_GB = 70  # half an H200
SETUP_S = 20  # prefill and image tiles before decoding starts (not measured)


def zerogpu_active(env: Mapping[str, str] | None = None) -> bool:
    """On a Space (``SPACE_ID``) with ZeroGPU hardware (``SPACES_ZERO_GPU``, read by ``spaces`` itself)
    and the ``spaces`` package installed."""
    env = os.environ if env is None else env
    on = str(env.get("SPACES_ZERO_GPU", "")).lower() in ("1", "t", "true")
    return bool(env.get("SPACE_ID")) and on and importlib.util.find_spec("spaces") is not None


def import_spaces() -> Any:
    """``import spaces`` when on ZeroGPU (call it before anything initialises CUDA); None elsewhere."""
    if not zerogpu_active():
        return None
    import spaces  # noqa: F401 - it patches torch's CUDA for the main process on import

    log.info("ZeroGPU: spaces imported before CUDA")
    return spaces


def gpu_size(weights_gb: float, n: int, budget: int, prompt: int = 4096) -> str:
    """"large" when the weights and n candidates' KV cache at ``budget + prompt`` tokens fit half an
    H200 (with 10% spare), else "xlarge"."""
    need_gb = weights_gb + n * (budget + prompt) * KV_BYTES_PER_TOKEN / 1e9
    return "large" if need_gb * 1.1 <= LARGE_GB else "xlarge"


def duration(budget: int, env: Mapping[str, str] | None = None) -> int:
    """Seconds to ask ZeroGPU for a call generating up to ``budget`` tokens (module docstring)."""
    env = os.environ if env is None else env
    if env.get("R1V_GPU_SECONDS"):
        return int(env["R1V_GPU_SECONDS"])
    rate = float(env.get("R1V_GPU_TOKENS_PER_S") or 20)
    cap = int(env.get("R1V_GPU_MAX_SECONDS") or 300)
    return max(30, min(cap, int(SETUP_S + budget / rate)))


def _call_budget(default: int) -> Callable[..., int]:
    """A ``duration`` callable for ``LazyEngine._stream_impl(images, question, n=..., sampling=...)``."""

    def seconds(*args: Any, **kw: Any) -> int:
        sampling = kw.get("sampling")
        return duration(getattr(sampling, "max_new_tokens", None) or default)

    return seconds


def gpu(fn: Callable, *, budget: int = 4096, weights_gb: float = 32.0, n: int = 1) -> Callable:
    """``spaces.GPU(size=..., duration=...)(fn)`` on ZeroGPU; ``fn`` unchanged elsewhere (the decorator
    is documented to be effect-free off ZeroGPU, and without ``spaces`` there is none)."""
    if importlib.util.find_spec("spaces") is None:
        return fn
    import spaces

    size = gpu_size(weights_gb, n, budget)
    log.info("spaces.GPU(size=%s, duration=callable) for generation (budget %d)", size, budget)
    return spaces.GPU(duration=_call_budget(budget), size=size)(fn)


def module_scope_engine(model: str, env: Mapping[str, str] | None = None) -> Any:
    """On ZeroGPU: the engine for ``model``, loaded now (at module scope) on the CPU and moved to the
    emulated CUDA device; the NF4 preset is read from ``R1V_PREQUANTIZED``. None off ZeroGPU."""
    env = os.environ if env is None else env
    if not zerogpu_active(env):
        return None
    from engine.core import Engine
    from engine.loading import load_model
    from engine.presets import PRESETS

    preset = PRESETS.get(model)
    source: str = model
    if preset is not None and preset.quantization:
        source = env.get("R1V_PREQUANTIZED", "")
        if not source:
            raise EngineError(
                "zerogpu_needs_prequantized",
                f"On ZeroGPU, {model} must come from a checkpoint quantized beforehand: bitsandbytes cannot "
                "quantize in the Space's main process, which has no GPU. On a GPU machine run `python -m engine "
                f"quantize {model} DIR`, upload DIR (a model repository or the Space's /data), and set "
                "R1V_PREQUANTIZED to it.",
                f"在 ZeroGPU 上，{model} 必须来自预先量化好的检查点：Space 的主进程没有 GPU，bitsandbytes 无法在其中量化。"
                f"请在有 GPU 的机器上运行 `python -m engine quantize {model} DIR`，上传 DIR（模型仓库或 Space 的 /data），"
                "并把 R1V_PREQUANTIZED 设为它。",
            )
        if "/" in source and not os.path.isdir(source):
            from engine.hub import download

            source = str(download(source, what=("the pre-quantized model", "预量化模型"),
                                  local_hint=("set R1V_PREQUANTIZED to a directory", "把 R1V_PREQUANTIZED 设为本地目录")))
    budget = preset.max_new_tokens if preset else None
    lm = load_model(source, quantization=None, device="cpu", max_new_tokens=budget)
    lm.model.to("cuda")  # intercepted by spaces: packed at launch, mapped onto each worker's GPU
    if preset is not None:
        lm.name, lm.max_tiles = preset.name, preset.max_tiles
    log.info("ZeroGPU: %s loaded at module scope from %s", model, source)
    return Engine(loaded=lm)
