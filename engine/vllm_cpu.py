"""vLLM's CPU build serving the tiny model: the real vLLM code on a machine with no GPU.

    python -m engine serve --model tiny-random --engine vllm --port 8000     # builds what it needs first
    python -m engine solve photo.png --server http://127.0.0.1:8000 --n 2 --json

    from engine.vllm_cpu import start_server
    server = start_server(port=8000)     # builds the env and the checkpoint, starts, waits for /v1/models
    ...; server.stop()

On first use this builds the ``vllm-cpu`` engine environment (``engine.envs``: vllm-cpu 0.32.0 in a venv
of its own, never the app's) and converts ``tiny-random`` to the Skywork-R1V layout
(``engine.convert.convert_to_original`` with ``SkyworkR1VChatModel``, vLLM's own class for R1V2), then
starts ``python -m vllm.entrypoints.openai.api_server`` from that env: the installed distribution is
named ``vllm-cpu``, and the ``vllm`` console script looks up one named ``vllm``. The flags are the GPU
launch's (the project's chat template, ``--reasoning-parser deepseek_r1``, the preset's tiling) plus
what the CPU build needs (FACTS.md): ``--enforce-eager`` (start in 30-50 s, no compilation),
``--max-num-batched-tokens 8192`` (a seeded request longer than it kills the CPU engine),
``--trust-request-mm-kwargs`` (per-request ``max_dynamic_patch``), float32 weights, and a small KV
cache (``VLLM_CPU_KVCACHE_SPACE``, GiB).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENV_NAME = "vllm-cpu"
KV_CACHE_GIB = 1
MAX_BATCHED_TOKENS = 8192
MAX_MODEL_LEN = 8192  # the tiny model's context here: 4 images x 7 tiles x 256 tokens, plus the reply


def tiny_skywork_path(seed: int = 0) -> Path:
    """``tiny-random`` in the Skywork-R1V layout (architecture ``SkyworkR1VChatModel``), built once."""
    from engine.convert import convert_to_original
    from engine.tiny import BUILD_VERSION, cached_build, tiny_path

    return cached_build(f"tiny-random-s{seed}-v{BUILD_VERSION}-skywork", "config.json",
                        lambda out: convert_to_original(tiny_path(seed), out, architecture="SkyworkR1VChatModel"))


def cpu_argv(python: str | Path, checkpoint: str | Path, *, served_name: str = "tiny-random", host: str = "127.0.0.1",
             port: int = 8000, max_tiles: int = 6, api_key: str | None = None, chat_template: Path | None = None,
             max_images: int = 8) -> list[str]:
    """The CPU server's command line (module docstring)."""
    from engine.serve import CHAT_TEMPLATE

    argv = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(checkpoint),
        "--served-model-name", served_name,
        "--trust-remote-code",  # the checkpoint's config module (engine/skywork_config.py), nothing else
        "--chat-template", str(chat_template or CHAT_TEMPLATE),
        "--reasoning-parser", "deepseek_r1",
        "--enforce-eager",
        "--dtype", "float32",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--max-num-batched-tokens", str(MAX_BATCHED_TOKENS),
        "--limit-mm-per-prompt", json.dumps({"image": max_images}, separators=(",", ":")),
        "--mm-processor-kwargs", json.dumps({"max_dynamic_patch": max_tiles}, separators=(",", ":")),
        "--trust-request-mm-kwargs",
        "--host", host,
        "--port", str(port),
    ]
    if api_key:
        argv += ["--api-key", api_key]
    return argv


def cpu_env() -> dict[str, str]:
    """Environment for the CPU server (added to the caller's)."""
    return {"VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB), "VLLM_TARGET_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "",
            "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def prepare(seed: int = 0, log=print) -> tuple[Path, Path]:
    """Build (or find) the engine env and the converted checkpoint; return (python, checkpoint)."""
    from engine.envs import ensure_env, is_built

    if not is_built(ENV_NAME):
        log(f"vllm (cpu): first use, building the {ENV_NAME} engine environment (a few minutes)")
    python = ensure_env(ENV_NAME, log=log)
    log("vllm (cpu): converting tiny-random to the Skywork-R1V layout (SkyworkR1VChatModel)")
    checkpoint = tiny_skywork_path(seed)
    log(f"vllm (cpu): checkpoint {checkpoint}")
    return python, checkpoint


@dataclass
class CpuServer:
    """A running CPU vLLM server (``start_server``)."""

    proc: subprocess.Popen
    url: str
    start_s: float
    log_path: Path

    def stop(self) -> None:
        """Stop the server and its engine processes (it was started in its own process group)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_server(port: int, *, seed: int = 0, api_key: str | None = None, timeout: float = 300.0,
                 log_path: str | Path | None = None, log=print) -> CpuServer:
    """Start the CPU server as a child in its own process group; wait until it serves the model."""
    from engine.serve import wait_ready

    python, checkpoint = prepare(seed, log=log)
    log_file = Path(log_path) if log_path else checkpoint.parent / f"vllm-cpu-{port}.log"
    out = open(log_file, "w")
    argv = cpu_argv(python, checkpoint, port=port, api_key=api_key)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **cpu_env()},
                            start_new_session=True)
    server = CpuServer(proc, f"http://127.0.0.1:{port}", 0.0, log_file)
    try:
        wait_ready(server.url, timeout=timeout, proc=proc, api_key=api_key)
    except BaseException:
        server.stop()
        print(server.log_tail(), file=sys.stderr)
        raise
    server.start_s = time.monotonic() - t0
    return server
