"""Smoke run of the serving launchers on the tiny checkpoint: `python -m engine serve` + HttpEngine.

    python bench/serve_smoke.py                              # sglang and vllm (a GPU and the engines needed)
    python bench/serve_smoke.py --engines sglang --sglang-python /opt/r1v-serve/bin/python
    python bench/serve_smoke.py --engines transformers       # the same path on a CPU (transformers serve)

For each engine: start ``python -m engine serve`` on the tiny checkpoint (SGLang and vLLM: the original
InternVL-chat layout, ``convert --to original``, served as the ``r1v2-38b`` preset with ``--model-path``,
one GPU, a short context), wait for ``/health`` and ``/v1/models``, then one image solve with n=4 through
``engine.http.HttpEngine`` (its health probe first), and stop the server. It prints one line per engine
(ok / FAILED / SKIPPED, with the reason and the server log's tail on failure), then a table: start
seconds, solve seconds, candidates, prompt tokens with the image. An engine is SKIPPED, saying why, when
there is no GPU (SGLang, vLLM) or the engine is not installed; the run exits 1 only when one FAILED.
``bench/gpu_check.py --serve`` runs this after its decode measurements. Tested on the CPU:
``tests/bench/test_serve_smoke.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENGINES = ("sglang", "vllm", "transformers")
N = 4


@dataclass
class Result:
    engine: str
    status: str = "SKIPPED"  # ok | FAILED | SKIPPED
    reason: str = ""
    start_s: float | None = None
    solve_s: float | None = None
    candidates: int | None = None
    prompt_tokens: int | None = None
    argv: list[str] = field(default_factory=list)
    log_tail: str = ""


def has_gpu() -> tuple[bool, str]:
    """(a CUDA GPU is visible, how that was found out)."""
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True)
        if out.returncode == 0 and "GPU" in out.stdout:
            return True, out.stdout.strip().splitlines()[0]
        return False, f"nvidia-smi found no GPU ({(out.stderr or out.stdout).strip()[:200]})"
    return False, "no nvidia-smi on PATH"


def sglang_python(given: str | None) -> str | None:
    """The Python that has SGLang: ``given``, else the built engine env (engine.envs), else this one."""
    if given:
        return given if Path(given).exists() else None
    from engine.envs import env_python, is_built

    if is_built("sglang"):
        return str(env_python("sglang"))
    import importlib.util

    return sys.executable if importlib.util.find_spec("sglang") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_argv(engine: str, port: int, *, checkpoint: Path | None, python: str | None,
               context: int = 8192) -> list[str]:
    """The ``python -m engine serve`` command for one smoke run."""
    argv = [sys.executable, "-m", "engine", "serve", "--engine", engine, "--port", str(port), "--host", "127.0.0.1"]
    if engine == "transformers":
        return argv + ["--model", "tiny-random", "--device", "cpu"]
    argv += ["--model", "r1v2-38b", "--model-path", str(checkpoint), "--tp", "1", "--context-length", str(context),
             "--mem-fraction", "0.5"]
    if engine == "sglang" and python:
        argv += ["--python", python]
    return argv


def preconditions(engine: str, args) -> str:
    """Why ``engine`` cannot run here ("" when it can)."""
    if engine == "transformers":
        return ""
    gpu, how = has_gpu()
    if not gpu:
        return f"no GPU: {how}"
    if engine == "sglang" and not sglang_python(args.sglang_python):
        return "SGLang is not installed (pass --sglang-python, or build it: engine.envs.ensure_env('sglang'))"
    if engine == "vllm" and not shutil.which("vllm", path=_path(args)):
        return "vLLM is not installed (no `vllm` on PATH; pass --vllm-bin DIR)"
    return ""


def _path(args) -> str:
    return os.pathsep.join(p for p in (getattr(args, "vllm_bin", None), os.environ.get("PATH", "")) if p)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_one(engine: str, args, image: Path, logdir: Path) -> Result:
    """Start the server, solve once with n=4, stop it."""
    from engine.http import HttpEngine
    from engine.serve import wait_ready

    res = Result(engine)
    why = preconditions(engine, args)
    if why:
        res.reason = why
        return res
    checkpoint = None
    if engine != "transformers":
        from engine.convert import tiny_original_path

        checkpoint = tiny_original_path()
    port = free_port()
    res.argv = serve_argv(engine, port, checkpoint=checkpoint, python=sglang_python(args.sglang_python))
    log = logdir / f"serve-{engine}.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(res.argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, "PATH": _path(args)})
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=args.start_timeout, proc=proc)
        res.start_s = round(time.monotonic() - t0, 1)
        client = HttpEngine(f"http://127.0.0.1:{port}", timeout=args.solve_timeout)
        try:
            client.check()
            t1 = time.monotonic()
            from engine.core import Sampling

            sol = client.solve([str(image)], "What is shown?", n=N,
                               sampling=Sampling(max_new_tokens=args.tokens))
            res.solve_s = round(time.monotonic() - t1, 1)
        finally:
            client.close()
        res.candidates, res.prompt_tokens = len(sol.candidates), sol.prompt_tokens
        res.status = "ok" if res.candidates == N else "FAILED"
        res.reason = "" if res.candidates == N else f"{res.candidates} candidates, not {N}"
    except Exception as e:  # a smoke run reports every failure, it never stops the others
        res.status, res.reason = "FAILED", f"{type(e).__name__}: {getattr(e, 'en', None) or e}"
    finally:
        _stop(proc)
        if res.status != "ok":
            res.log_tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    return res


def report(results: list[Result]) -> str:
    """One line per engine, then the figures' table."""
    lines = []
    for r in results:
        lines.append(f"{r.engine}: {r.status}" + (f" ({r.reason})" if r.reason else ""))
        if r.log_tail:
            lines.append("  server log, last lines:\n    " + "\n    ".join(r.log_tail.splitlines()[-25:]))
    lines.append(f"\n{'engine':12s} {'status':8s} {'start s':>8s} {'solve s':>8s} {'n':>3s} {'prompt tok':>10s}")
    for r in results:
        lines.append(f"{r.engine:12s} {r.status:8s} {str(r.start_s or '-'):>8s} {str(r.solve_s or '-'):>8s} "
                     f"{str(r.candidates or '-'):>3s} {str(r.prompt_tokens or '-'):>10s}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", default="sglang,vllm", help=f"comma-separated, of {', '.join(ENGINES)}")
    p.add_argument("--sglang-python", default=None, help="the Python that has SGLang (default: the engine env)")
    p.add_argument("--vllm-bin", default=None, help="folder holding the `vllm` command (default: PATH)")
    p.add_argument("--tokens", type=int, default=64, help="max new tokens per candidate")
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--solve-timeout", type=float, default=300.0)
    p.add_argument("--smoke-out", default="bench/results/serve_smoke.json")


def run(args) -> int:
    from PIL import Image, ImageDraw

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        print(f"unknown engine(s) {bad}; choose from {', '.join(ENGINES)}", file=sys.stderr)
        return 2
    out = Path(args.smoke_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = out.parent / "serve_smoke.png"
    img = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(img).text((40, 40), "x + 2 = 5", fill="black")
    img.save(image)
    results = []
    for engine in engines:
        print(f"serve smoke: {engine} ...", flush=True)
        results.append(run_one(engine, args, image, out.parent))
        print(f"serve smoke: {engine}: {results[-1].status} {results[-1].reason}", flush=True)
    out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(report(results))
    return 1 if any(r.status == "FAILED" for r in results) else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
