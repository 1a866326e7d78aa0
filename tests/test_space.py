"""The Space on ZeroGPU (webui.space, engine.quantize): what can be checked off a Space.

- the pre-quantized checkpoint: written once, loaded back with no quantization, same greedy tokens;
- the start under the real ``spaces`` package with the ZeroGPU variables set (its CUDA emulation, in a
  subprocess): ``spaces`` imported before CUDA, the model loaded at module scope on the CPU and moved
  to the emulated device without reaching CUDA, generation wrapped in ``spaces.GPU``; the NF4 preset
  refused without a pre-quantized checkpoint;
- off ZeroGPU the decorator is the function itself and generation runs on the CPU;
- the decorator's size and duration.

    python -m pytest tests/test_space.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from webui import space

ROOT = Path(__file__).resolve().parents[1]
ZERO_ENV = {"SPACE_ID": "me/tutor", "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": "http://127.0.0.1:9/"}


def test_zerogpu_is_a_space_with_zerogpu_hardware():
    assert space.zerogpu_active(ZERO_ENV)
    assert not space.zerogpu_active({"SPACE_ID": "me/tutor"})  # a CPU or dedicated-GPU Space
    assert not space.zerogpu_active({"SPACES_ZERO_GPU": "true"})  # not a Space
    assert not space.zerogpu_active({})


def test_size_and_duration_for_r1v2():
    assert space.gpu_size(32, 1, 64_000) == "large"  # 32 GB NF4 + one 68K-token KV cache (about 18 GB)
    assert space.gpu_size(32, 2, 64_000) == "xlarge"
    assert space.gpu_size(32, 8, 4_000) == "large"
    assert space.duration(64_000, {}) == 300  # capped: a 64K budget does not fit a ZeroGPU call
    assert space.duration(2_000, {}) == 20 + 100
    assert space.duration(128, {}) == 30
    assert space.duration(64_000, {"R1V_GPU_SECONDS": "90"}) == 90
    assert space.duration(64_000, {"R1V_GPU_TOKENS_PER_S": "400", "R1V_GPU_MAX_SECONDS": "600"}) == 180


@pytest.fixture(scope="module")
def prequantized(tmp_path_factory):
    from engine.quantize import write_prequantized

    return write_prequantized("tiny-random", tmp_path_factory.mktemp("q") / "tiny-nf4", device="cpu")


def _greedy(lm, n: int = 6) -> list[int]:
    import torch

    tok = lm.tokenizer
    ids = tok("<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n<think>\n", return_tensors="pt")
    with torch.inference_mode():
        out = lm.model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, ids["input_ids"].shape[1]:].tolist()


def test_a_prequantized_checkpoint_is_written_once_and_loads_as_it_is(prequantized):
    from engine.loading import load_model
    from engine.quantize import is_prequantized
    from tutor.errors import InputError

    assert is_prequantized(prequantized)
    qc = json.loads((prequantized / "config.json").read_text())["quantization_config"]
    assert qc["bnb_4bit_quant_type"] == "nf4" and "model.vision_tower" in qc["llm_int8_skip_modules"]
    direct = load_model("tiny-random", quantization="nf4", device="cpu")
    again = load_model(prequantized, quantization=None, device="cpu")  # nothing asks for quantization here
    kinds = {name: type(m).__name__ for name, m in again.model.named_modules()}
    assert any(k == "Linear4bit" for n, k in kinds.items() if "language_model" in n)
    assert not any(k == "Linear4bit" for n, k in kinds.items() if "vision_tower" in n or "lm_head" in n)
    assert _greedy(again) == _greedy(direct)
    with pytest.raises(InputError):
        from engine.quantize import write_prequantized

        write_prequantized("tiny-random", prequantized, device="cpu")  # never over an existing checkpoint


_START = """
import json, sys
from pathlib import Path
import app
from webui import space
spaces_mod = space.import_spaces()      # what app.main does first
import torch
from tutor.errors import EngineError
from tutor.store import Store
from webui.config import parse_config
tmp = Path(sys.argv[1])
out = {"spaces": spaces_mod is not None}
try:
    demo = app.build_app(store=Store(f"sqlite:///{tmp / 'db.sqlite'}", image_dir=tmp / "img"), cfg=parse_config([]))
except EngineError as e:
    print(json.dumps({**out, "error": e.code, "en": e.en, "zh": e.zh})); sys.exit(0)
eng = demo.r1v.engine
lm = eng._engine.lm if eng.loaded else None
out.update(loaded=eng.loaded, device=str(lm.model.device), name=lm.name, budget=lm.budget,
           wrapped=hasattr(eng._stream, "zerogpu"),
           linear4bit=sum(type(m).__name__ == "Linear4bit" for m in lm.model.modules()))
try:                                    # the loading the Space must avoid: device_map onto "cuda"
    from engine.loading import load_model
    load_model("tiny-random", quantization=None, device="cuda")
    out["device_map_cuda"] = "loaded"
except RuntimeError as e:
    out["device_map_cuda"] = str(e)[:80]
print(json.dumps(out))
"""


def _start(tmp_path: Path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SPACE", "R1V_MODEL", "R1V_PREQ"))}
    full.update(ZERO_ENV, **env)
    r = subprocess.run([sys.executable, "-c", _START, str(tmp_path)], cwd=ROOT, env=full, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_on_zerogpu_the_prequantized_model_loads_at_module_scope_and_never_reaches_cuda(tmp_path, prequantized):
    out = _start(tmp_path, R1V_MODEL="r1v2-38b-nf4", R1V_PREQUANTIZED=str(prequantized))
    assert out["spaces"] and out["loaded"]  # loaded at start, before any GPU call
    assert out["device"] == "cuda:0" and out["linear4bit"] > 0  # moved to the emulated device, still NF4
    assert out["name"] == "r1v2-38b-nf4" and out["budget"] == 64_000
    assert out["wrapped"]  # generation runs under spaces.GPU
    assert out["device_map_cuda"].startswith("Low-level CUDA init")  # why the model is loaded on the CPU first


def test_on_zerogpu_nf4_without_a_prequantized_checkpoint_says_what_to_do(tmp_path):
    out = _start(tmp_path, R1V_MODEL="r1v2-38b-nf4")
    assert out["error"] == "zerogpu_needs_prequantized"
    assert "python -m engine quantize r1v2-38b-nf4 DIR" in out["en"] and "R1V_PREQUANTIZED" in out["en"]
    assert "预先量化" in out["zh"]


def test_off_zerogpu_the_decorator_is_the_function_and_generation_runs_on_cpu(monkeypatch):
    import importlib.util

    from PIL import Image

    from webui.config import AppConfig, make_engine

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert importlib.util.find_spec("spaces") is not None  # the real package is installed here

    def f():
        return 1

    assert space.gpu(f, budget=64_000, weights_gb=32) is f
    lazy = make_engine(AppConfig(model="tiny-random"))
    assert not lazy.loaded  # off ZeroGPU the model still loads on the first question
    from engine.core import Finished, Sampling

    events = list(lazy.stream([Image.new("RGB", (64, 64), "white")], "1+1?", n=1, sampling=Sampling(max_new_tokens=3)))
    assert isinstance(events[-1], Finished) and str(lazy.get().lm.model.device) == "cpu"
