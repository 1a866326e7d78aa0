"""bench/serve_smoke.py (and bench/gpu_check.py --serve-only): the launchers' smoke run, on the CPU.

SGLang and vLLM need a GPU, so here they must be SKIPPED with the reason (checked for real: this
machine has none); the run's own machinery (start ``python -m engine serve``, wait for health, one image
solve with n=4 through HttpEngine, stop the server) runs end to end with ``--engines transformers``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import serve_smoke
from engine.__main__ import main as engine_main

ROOT = Path(__file__).resolve().parent.parent
no_gpu = pytest.mark.skipif(serve_smoke.has_gpu()[0], reason="this machine has a GPU: the skip path is not taken")


@no_gpu
def test_gpu_check_serve_only_says_what_it_skipped_and_why(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--serve-only", "--smoke-out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sglang: SKIPPED (no GPU: " in proc.stdout and "vllm: SKIPPED (no GPU: " in proc.stdout
    rows = json.loads(out.read_text())
    assert [(r["engine"], r["status"]) for r in rows] == [("sglang", "SKIPPED"), ("vllm", "SKIPPED")]
    assert all(r["reason"].startswith("no GPU") for r in rows)


def test_a_missing_engine_is_named_when_there_is_a_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(serve_smoke, "has_gpu", lambda: (True, "GPU 0: pretend"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm command anywhere
    args = serve_smoke.argparse.Namespace(sglang_python=str(tmp_path / "missing" / "python"), vllm_bin=None)
    monkeypatch.setattr(serve_smoke, "sglang_python", lambda given: None)
    assert serve_smoke.preconditions("sglang", args).startswith("SGLang is not installed")
    assert serve_smoke.preconditions("vllm", args).startswith("vLLM is not installed")


def test_the_sglang_command_is_one_launch_on_one_gpu(capsys, tmp_path):
    from engine.convert import tiny_original_path

    ckpt = tiny_original_path()
    argv = serve_smoke.serve_argv("sglang", 30123, checkpoint=ckpt, python="/opt/serve/bin/python")
    assert argv[:4] == [sys.executable, "-m", "engine", "serve"]
    assert argv[argv.index("--python") + 1] == "/opt/serve/bin/python"
    assert engine_main([*argv[3:], "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "sglang.launch_server" in text and f"--model-path {ckpt}" in text and "--tp-size 1" in text
    assert "CUDA_VISIBLE_DEVICES=0 " in text and "rope_scaling" not in text  # 8192 fits: no YaRN overlay
    vllm = serve_smoke.serve_argv("vllm", 30123, checkpoint=ckpt, python=None)
    assert engine_main([*vllm[3:], "--dry-run"]) == 0
    assert "vllm serve " + str(ckpt) in capsys.readouterr().out.replace("\\\n    ", "")


def test_the_smoke_run_end_to_end_on_transformers_serve(tmp_path, capsys):
    assert serve_smoke.main(["--engines", "transformers", "--tokens", "8", "--smoke-out",
                             str(tmp_path / "smoke.json")]) == 0
    [row] = json.loads((tmp_path / "smoke.json").read_text())
    assert row["status"] == "ok" and row["candidates"] == serve_smoke.N
    assert row["prompt_tokens"] > 13 * 256  # the 800x600 image's 13 tiles reached the model
    assert "transformers ok" in " ".join(capsys.readouterr().out.split())
