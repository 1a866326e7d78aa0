"""Launchers for the serving engines: SGLang (production), vLLM (fallback), `transformers serve` (CPU).

    python -m engine serve --model r1v2-38b-awq --dry-run           # print the SGLang command
    python -m engine serve --model r1v2-38b --port 30000            # bf16, tensor parallel 2
    python -m engine serve --model r1v2-38b-awq --replicas 4        # 4 workers behind sglang-router
    python -m engine serve --model r1v2-38b-awq --engine vllm
    python -m engine serve --model tiny-random --engine transformers --port 8000   # CPU, for tests

    from engine.serve import ServeOptions, plan, shell
    print(shell(plan(ServeOptions(model="r1v2-38b-awq"))))

SGLang does not list R1V2 (FACTS.md). Its ``InternVLChatModel`` has the same layout (InternViT + Qwen2
+ ``mlp1`` + pixel shuffle), so the launch overrides the architecture
(``--json-model-override-args '{"architectures":["InternVLChatModel"]}'``), passes our own chat
template (``assets/serving/r1v2_chat_template.jinja``: ChatML, ``<image>`` per image, which SGLang's
InternVL processor expands, ``<think>\\n`` pre-fill, no system prompt) and ``--reasoning-parser
deepseek-r1`` (it accepts output without an opening tag). vLLM supports the model natively
(``SkyworkR1VChatModel``) and takes the same template and the ``deepseek_r1`` parser.

Thinking budget and context (``engine.context``): the preset's ``max_new_tokens`` (64,000 for R1V2;
``--max-new-tokens`` to change it) plus a prompt of 4 images x 13 tiles (``SERVE_PROMPT_RESERVE``)
is the context the server needs. Past the LLM's ``max_position_embeddings`` (read from
``--model-path``'s config.json; without one, QwQ-32B's 40960 is assumed: R1V2's own value is not
verified) the launch adds YaRN and asks for that context: vLLM gets ``--hf-overrides
'{"llm_config": {"rope_scaling": ...}}'`` (it updates a nested sub-config key by key) and
``--max-model-len``; SGLang applies ``--json-model-override-args`` with a flat ``config.update``, which
would replace the whole ``llm_config`` object with a dict, so it gets a config overlay instead: a
directory of symlinks to the checkpoint's files with one patched ``config.json``
(``<R1V_DATA_DIR>/serving/<name>-yarn``, written when the server starts; a hub id is downloaded
first), plus ``--context-length`` and ``SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1``.

``--replicas N``: with SGLang, N workers (each on its own ``tp_size`` GPUs, bound to 127.0.0.1 on the
ports after ``--port``) behind ``sglang_router.launch_router`` on ``--port`` (cache-aware routing,
retries, queue limits, the API key); with vLLM, ``--data-parallel-size N`` in one server.

Pinned engines (``engine.versions``): before starting SGLang or sglang-router, the launcher asks the
Python that will run them (``--python``, default this one; e.g. the serving venv of
``requirements-gpu-server.txt``) for their versions and refuses any but the tested ones, in English and
Chinese, naming the tested version and the install command; ``--allow-untested-engine`` starts them
anyway with a warning.

``--engine transformers`` saves the preset as a local checkpoint (``tiny-random`` is built locally,
hub presets are downloaded and converted to the native layout) and runs ``transformers serve`` on it.
That server takes images for the native InternVL class (the checkpoint's own chat template, with the
native ``<IMG_CONTEXT>`` placeholder, is used), streams, maps ``frequency_penalty`` f to
``repetition_penalty = 1 + f``, refuses ``repetition_penalty`` itself (422), ignores ``n`` (one choice:
``engine.http`` then sends n requests) and has no API key. SGLang and vLLM are never installed in the
app's environment: see ``requirements-gpu-server.txt``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.context import SERVE_PROMPT_RESERVE, ContextPlan, plan_context
from engine.presets import get_preset
from tutor.errors import EngineError, InputError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CHAT_TEMPLATE = ROOT / "assets" / "serving" / "r1v2_chat_template.jinja"
ARCH_OVERRIDE = json.dumps({"architectures": ["InternVLChatModel"]}, separators=(",", ":"))
ENGINES = ("sglang", "vllm", "transformers")
REWARD_PORT = 30001  # the reward scoring server's default port (engine.reward_server), beside the policy's 30000
MAX_IMAGES_PER_PROMPT = 8  # tutor.prompts.MAX_IMAGES
# QwQ-32B's config.json, assumed when the checkpoint's own is not on disk (R1V2's llm_config: not verified)
ASSUMED_LLM_CONFIG = {"max_position_embeddings": 40960}


@dataclass
class ServeOptions:
    model: str = "r1v2-38b-awq"  # a preset name
    engine: str = "sglang"
    host: str = "0.0.0.0"
    port: int = 30000
    api_key: str | None = None
    replicas: int = 1
    tp_size: int | None = None  # default: the preset's
    mem_fraction: float | None = None  # SGLang --mem-fraction-static / vLLM --gpu-memory-utilization
    context_length: int | None = None  # default: the model's
    model_path: str | None = None  # weights on disk instead of the hub repository
    device: str = "cpu"  # transformers serve only
    chat_template: Path = CHAT_TEMPLATE
    first_gpu: int = 0
    max_new_tokens: int | None = None  # the thinking budget; default: the preset's


@dataclass
class Launch:
    """One process to start: its argv, extra environment and the URL it answers on. ``overlay``: the
    config overlay to write before it starts (``{"source", "dir", "key", "rope_scaling"}``)."""

    name: str
    argv: list[str]
    url: str
    env: dict[str, str] = field(default_factory=dict)
    overlay: dict | None = None


def _bad(code: str, en: str, zh: str) -> InputError:
    return InputError(code, en, zh)


def _check(opts: ServeOptions):
    preset = get_preset(opts.model)
    if opts.engine not in ENGINES:
        raise _bad("bad_engine", f"Unknown serving engine {opts.engine!r}; choose one of: {', '.join(ENGINES)}.",
                   f"未知的推理服务引擎 {opts.engine!r}，可选：{'、'.join(ENGINES)}。")
    if not isinstance(opts.port, int) or not 1 <= opts.port <= 65535 - opts.replicas:
        raise _bad("bad_port", f"The port must be between 1 and {65535 - opts.replicas} (got {opts.port}).",
                   f"端口必须在 1 到 {65535 - opts.replicas} 之间（收到 {opts.port}）。")
    if not isinstance(opts.replicas, int) or not 1 <= opts.replicas <= 64:
        raise _bad("bad_replicas", f"--replicas must be between 1 and 64 (got {opts.replicas}).",
                   f"--replicas 必须在 1 到 64 之间（收到 {opts.replicas}）。")
    tp = opts.tp_size or preset.tp_size
    if tp not in (1, 2, 4, 8):
        raise _bad("bad_tp", f"Tensor parallelism must divide the model's 8 KV heads: 1, 2, 4 or 8 (got {tp}).",
                   f"张量并行数必须能整除模型的 8 个 KV 头：1、2、4 或 8（收到 {tp}）。")
    if opts.mem_fraction is not None and not 0.1 <= opts.mem_fraction <= 0.98:
        raise _bad("bad_mem_fraction", f"The memory fraction must be between 0.1 and 0.98 (got {opts.mem_fraction}).",
                   f"显存占用比例必须在 0.1 到 0.98 之间（收到 {opts.mem_fraction}）。")
    if opts.engine == "sglang" and preset.source == "tiny":
        raise _bad("tiny_on_gpu_engine",
                   f"{preset.name} is built locally for CPUs; serve it with --engine vllm (CPU build) or transformers.",
                   f"{preset.name} 是本地构建的 CPU 模型，请用 --engine vllm（CPU 版）或 transformers 部署。")
    if opts.engine != "transformers" and preset.quantization:
        raise _bad("bnb_on_gpu_engine",
                   f"{preset.name} is bitsandbytes 4-bit in process; serve r1v2-38b-awq (or r1v2-38b) instead.",
                   f"{preset.name} 是进程内的 bitsandbytes 4 位量化，请改为部署 r1v2-38b-awq（或 r1v2-38b）。")
    if opts.engine == "transformers":
        if preset.served_only:
            raise _bad("served_only", f"{preset.name} is served by SGLang or vLLM only (--engine sglang or vllm).",
                       f"{preset.name} 只能由 SGLang 或 vLLM 部署（--engine sglang 或 vllm）。")
        if opts.api_key:
            raise _bad("no_api_key_support", "transformers serve has no API key; put it behind a proxy that checks one.",
                       "transformers serve 不支持 API 密钥，请在前面加一个校验密钥的代理。")
        if opts.replicas != 1:
            raise _bad("no_replicas", "--replicas needs --engine sglang or vllm.",
                       "--replicas 需要 --engine sglang 或 vllm。")
    return preset, tp


def _gpus(opts: ServeOptions, replica: int, tp: int) -> str:
    start = opts.first_gpu + replica * tp
    return ",".join(str(g) for g in range(start, start + tp))


def llm_config(opts: ServeOptions, preset) -> tuple[dict, str]:
    """(the LLM's config dict, its key in config.json): from ``--model-path``'s config.json when there
    is one, else ``ASSUMED_LLM_CONFIG`` under the layout's key."""
    file = Path(opts.model_path or "").expanduser() / "config.json"
    if opts.model_path and file.is_file():
        try:
            cfg = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise _bad("bad_model_config", f"{file} is not readable JSON.", f"{file} 不是可读的 JSON。") from e
        for key in ("llm_config", "text_config"):
            if isinstance(cfg.get(key), dict):
                return cfg[key], key
        return cfg, ""
    return dict(ASSUMED_LLM_CONFIG), "llm_config" if preset.layout == "internvl_chat" else "text_config"


def context_plan(opts: ServeOptions, preset) -> tuple[ContextPlan, str]:
    """The context the server needs (``--context-length`` if given, else budget + prompt) and the YaRN
    block it takes; with the config key the block goes under."""
    text, key = llm_config(opts, preset)
    if opts.context_length:
        return plan_context(text, opts.context_length, 0), key
    return plan_context(text, opts.max_new_tokens or preset.max_new_tokens, SERVE_PROMPT_RESERVE), key


def overlay_dir(opts: ServeOptions, preset) -> Path:
    from tutor.settings import data_dir

    base = Path(opts.model_path).expanduser().resolve().name if opts.model_path else preset.repo_id.replace("/", "--")
    return data_dir() / "serving" / f"{base}-yarn"


def write_overlay(src: Path, dst: Path, key: str, rope_scaling: dict) -> Path:
    """``dst``: symlinks to every file of the checkpoint ``src`` but config.json, which is a copy with
    ``rope_scaling`` set on its ``key`` sub-config (the top level when ``key`` is empty)."""
    src, dst = Path(src).resolve(), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name == "config.json":
            continue
        link = dst / f.name
        if link.is_symlink() or link.is_file():
            link.unlink()
        if not link.exists():
            link.symlink_to(f.resolve(), target_is_directory=f.is_dir())
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    (cfg[key] if key else cfg)["rope_scaling"] = rope_scaling
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return dst


def sglang_argv(opts: ServeOptions, preset, tp: int, *, host: str, port: int, api_key: str | None,
                model_path: str | None = None, context: int | None = None) -> list[str]:
    """The ``sglang.launch_server`` command for one replica."""
    argv = [
        "python", "-m", "sglang.launch_server",
        "--model-path", model_path or opts.model_path or preset.repo_id,
        "--served-model-name", preset.name,
        "--trust-remote-code",
        "--json-model-override-args", ARCH_OVERRIDE,
        "--chat-template", str(opts.chat_template),
        "--reasoning-parser", "deepseek-r1",
        "--tp-size", str(tp),
        "--mem-fraction-static", str(opts.mem_fraction or 0.85),
        "--host", host,
        "--port", str(port),
    ]
    if context or opts.context_length:
        argv += ["--context-length", str(context or opts.context_length)]
    if api_key:
        argv += ["--api-key", api_key]
    return argv


def vllm_argv(opts: ServeOptions, preset, tp: int, ctx: tuple[ContextPlan, str] | None = None) -> list[str]:
    """The ``vllm serve`` command (replicas as data parallelism inside one server)."""
    argv = [
        "vllm", "serve", opts.model_path or preset.repo_id,
        "--served-model-name", preset.name,
        "--trust-remote-code",
        "--chat-template", str(opts.chat_template),
        "--reasoning-parser", "deepseek_r1",
        "--tensor-parallel-size", str(tp),
        "--gpu-memory-utilization", str(opts.mem_fraction or 0.90),
        "--limit-mm-per-prompt", json.dumps({"image": MAX_IMAGES_PER_PROMPT}, separators=(",", ":")),
        # vLLM ignores a max_dynamic_patch inside image_url: the preset's tiling is set at start
        "--mm-processor-kwargs", json.dumps({"max_dynamic_patch": preset.max_tiles}, separators=(",", ":")),
        "--host", opts.host,
        "--port", str(opts.port),
    ]
    if opts.replicas > 1:
        argv += ["--data-parallel-size", str(opts.replicas)]
    plan_, key = ctx or (None, "")
    if plan_ is not None and plan_.rope_scaling:
        argv += ["--hf-overrides", json.dumps(plan_.vllm_overrides(key) if key else {"rope_scaling": plan_.rope_scaling},
                                              separators=(",", ":"))]
    if opts.context_length or (plan_ is not None and plan_.rope_scaling):
        argv += ["--max-model-len", str(opts.context_length or plan_.needed)]
    if opts.api_key:
        argv += ["--api-key", opts.api_key]
    return argv


def transformers_argv(opts: ServeOptions, preset, checkpoint: Path) -> list[str]:
    """``transformers serve`` on a local native checkpoint."""
    argv = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(checkpoint),
            "--device", opts.device, "--host", opts.host, "--port", str(opts.port)]
    if preset.quantization in ("nf4", "int8"):
        argv += ["--quantization", "bnb-4bit" if preset.quantization == "nf4" else "bnb-8bit"]
    return argv


def _refuse_ps_v1(checkpoint: Path) -> None:
    """``transformers serve`` builds the native class with its own (v2) pixel shuffle: a converted
    ``ps_version: v1`` checkpoint would answer from scrambled image features there."""
    cfg = checkpoint / "config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("ps_version") == "v1":
        raise InputError(
            "ps_v1_transformers_serve",
            f"{checkpoint} uses pixel-shuffle v1, which `transformers serve` does not apply. Serve it with "
            "--engine vllm or sglang (the original layout), or use it in process (python -m engine solve).",
            f"{checkpoint} 使用 v1 版像素重排，`transformers serve` 不支持。请用 --engine vllm 或 sglang"
            "（原始格式）部署，或在进程内使用（python -m engine solve）。",
            detail=str(cfg))


def _local(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def plan(opts: ServeOptions, *, checkpoint: Path | None = None) -> list[Launch]:
    """The processes to start for ``opts`` (workers first, the router last). ``checkpoint``: for
    ``--engine transformers``, the local checkpoint (found or built when not given)."""
    preset, tp = _check(opts)
    url = f"http://{_local(opts.host)}:{opts.port}"
    if opts.engine == "transformers":
        if checkpoint is None:
            from engine.loading import resolve

            checkpoint, _ = resolve(opts.model_path or preset.name)
        _refuse_ps_v1(Path(checkpoint))
        return [Launch("transformers", transformers_argv(opts, preset, Path(checkpoint).resolve()), url)]
    if opts.engine == "vllm" and preset.source == "tiny":  # vLLM's CPU build in its own env (engine.vllm_cpu)
        from engine import envs, vllm_cpu

        ckpt = checkpoint or opts.model_path or _tiny_skywork_dir(preset)
        argv = vllm_cpu.cpu_argv(envs.env_python(vllm_cpu.ENV_NAME), ckpt, served_name=preset.name, host=opts.host,
                                 port=opts.port, max_tiles=preset.max_tiles, api_key=opts.api_key,
                                 chat_template=opts.chat_template)
        return [Launch("vllm-cpu", argv, url, vllm_cpu.cpu_env())]
    ctx = context_plan(opts, preset)
    if opts.engine == "vllm":
        env = {"CUDA_VISIBLE_DEVICES": ",".join(_gpus(opts, r, tp) for r in range(opts.replicas))}
        return [Launch("vllm", vllm_argv(opts, preset, tp, ctx), url, env)]
    extra: dict = {}
    overlay = None
    if ctx[0].rope_scaling:  # SGLang: a config overlay (module docstring), and the longer context allowed
        path = overlay_dir(opts, preset)
        overlay = {"source": opts.model_path or preset.repo_id, "dir": str(path), "key": ctx[1],
                   "rope_scaling": ctx[0].rope_scaling}
        extra = {"model_path": str(path), "context": opts.context_length or ctx[0].needed}
    env0 = {"SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1"} if overlay else {}
    if opts.replicas == 1:
        argv = sglang_argv(opts, preset, tp, host=opts.host, port=opts.port, api_key=opts.api_key, **extra)
        return [Launch("sglang", argv, url, {"CUDA_VISIBLE_DEVICES": _gpus(opts, 0, tp), **env0}, overlay)]
    launches = []
    for r in range(opts.replicas):
        port = opts.port + 1 + r
        argv = sglang_argv(opts, preset, tp, host="127.0.0.1", port=port, api_key=None, **extra)
        launches.append(Launch(f"sglang-{r}", argv, f"http://127.0.0.1:{port}",
                               {"CUDA_VISIBLE_DEVICES": _gpus(opts, r, tp), **env0}, overlay))
    router = ["python", "-m", "sglang_router.launch_router", "--worker-urls", *[w.url for w in launches],
              "--policy", "cache_aware", "--host", opts.host, "--port", str(opts.port)]
    if opts.api_key:
        router += ["--api-key", opts.api_key]
    launches.append(Launch("router", router, url))
    return launches


def _tiny_skywork_dir(preset) -> Path:
    """Where ``engine.vllm_cpu.tiny_skywork_path`` puts the converted tiny model (not built here)."""
    from engine.tiny import BUILD_VERSION
    from tutor.settings import data_dir

    return data_dir() / "models" / f"tiny-random-s{preset.seed}-v{BUILD_VERSION}-skywork"


def shell(launches: list[Launch]) -> str:
    """The launches as shell text a person can paste (workers in the background, the last in front)."""
    lines = []
    ov = next((ln.overlay for ln in launches if ln.overlay), None)
    if ov:
        lines.append(f"# {ov['dir']}: written at start, links to {ov['source']} with config.json's "
                     f"{ov['key'] or 'top level'}.rope_scaling = {json.dumps(ov['rope_scaling'])}")
    for k, ln in enumerate(launches):
        env = " ".join(f"{key}={shlex.quote(v)}" for key, v in ln.env.items())
        cmd = " \\\n    ".join(_pairs(ln.argv))
        text = f"{env} {cmd}" if env else cmd
        lines.append(f"# {ln.name}: {ln.url}")
        lines.append(text + (" &" if k < len(launches) - 1 else ""))
    return "\n".join(lines)


def _pairs(argv: list[str]) -> list[str]:
    """Shell-quoted lines: the program and its positional arguments, then one line per ``--flag`` with
    its value(s)."""
    out: list[str] = []
    for a in argv:
        q = shlex.quote(a)
        if out and not a.startswith("--"):
            out[-1] += " " + q
        else:
            out.append(q)
    return out


def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None,
               api_key: str | None = None) -> dict:
    """Poll ``/health`` and ``/v1/models`` until the server answers (raises EngineError on timeout
    or if ``proc`` exits first); returns the ``/v1/models`` JSON."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EngineError("server_exited", f"The server exited while starting (status {proc.returncode}).",
                              f"服务器在启动时退出（状态 {proc.returncode}）。")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                r = httpx.get(f"{url}/v1/models", headers=headers, timeout=5.0)
                if r.status_code == 200 and r.json().get("data"):
                    return r.json()
                last = f"/v1/models: {r.status_code}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.5)
    raise EngineError("server_start_timeout", f"The server at {url} was not ready after {timeout:.0f} s.",
                      f"{url} 上的服务器在 {timeout:.0f} 秒后仍未就绪。", detail=last)


def _require(launch: Launch, python: str = sys.executable) -> None:
    import importlib.util
    import shutil

    exe = launch.argv[0]
    missing = None
    if exe == "python" and launch.argv[1] == "-m" and python != sys.executable:
        pass  # another interpreter runs it: engine.versions asked that one (pinned engines)
    elif exe == "python" and launch.argv[1] == "-m":
        mod = launch.argv[2].split(".")[0]
        if importlib.util.find_spec(mod) is None:
            missing = mod
    elif exe != sys.executable and shutil.which(exe) is None:
        missing = exe
    if missing:
        raise EngineError(
            "engine_not_installed",
            f"{missing} is not installed here. Install requirements-gpu-server.txt in its own environment on the "
            "GPU machine (never in the app's), or print the command with --dry-run.",
            f"此环境未安装 {missing}。请在 GPU 机器上的独立环境中安装 requirements-gpu-server.txt（不要装进应用环境），"
            "或用 --dry-run 打印命令。",
        )


def _write_overlays(launches: list[Launch]) -> None:
    """Write each launch's config overlay once (a hub id is downloaded first, as the server would)."""
    done: set[str] = set()
    for ln in launches:
        ov = ln.overlay
        if not ov or ov["dir"] in done:
            continue
        src = Path(ov["source"]).expanduser()
        if not src.is_dir():
            from engine.hub import download

            src = download(ov["source"], what=("the model", "模型"),
                           local_hint=("pass the downloaded weights with --model-path DIR", "用 --model-path DIR 指定已下载的权重"))
        write_overlay(src, Path(ov["dir"]), ov["key"], ov["rope_scaling"])
        done.add(ov["dir"])


def run(launches: list[Launch], *, python: str | None = None, allow_untested: bool = False) -> int:
    """Start the launches. One process: exec it (its PID is ours, signals reach it). Several: start
    them all (the router waits for its workers), and stop them all when one exits. ``python``: the
    interpreter that runs ``python -m ...`` launches (default: this one); its SGLang / sglang-router
    versions are checked first (``engine.versions``; ``allow_untested`` only warns)."""
    from engine.versions import check_launch_versions

    python = python or sys.executable
    for warning in check_launch_versions([ln.argv for ln in launches], python, allow_untested=allow_untested):
        print(warning, file=sys.stderr, flush=True)
    for ln in launches:
        _require(ln, python)
    _write_overlays(launches)
    if len(launches) == 1:
        ln = launches[0]
        print(f"serving on {ln.url}  ({ln.name})", file=sys.stderr, flush=True)
        argv = [python, *ln.argv[1:]] if ln.argv[0] == "python" else ln.argv
        os.execvpe(argv[0], argv, {**os.environ, **ln.env})
    procs: list[subprocess.Popen] = []
    try:
        for ln in launches:
            argv = [python, *ln.argv[1:]] if ln.argv[0] == "python" else ln.argv
            log.warning("starting %s on %s", ln.name, ln.url)
            procs.append(subprocess.Popen(argv, env={**os.environ, **ln.env}))
        # The router waits for its workers itself (up to its --worker-startup-timeout-secs).
        wait_ready(launches[-1].url, timeout=3600, proc=procs[-1])
        print(f"serving on {launches[-1].url}  ({len(launches) - 1} workers behind the router)", file=sys.stderr)
        while all(p.poll() is None for p in procs):
            time.sleep(1.0)
        return next(p.returncode for p in procs if p.poll() is not None) or 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def add_arguments(p) -> None:
    """The ``python -m engine serve`` options."""
    p.add_argument("--model", default="r1v2-38b-awq", help="preset (r1v2-38b-awq, r1v2-38b, tiny-random, ...)")
    p.add_argument("--engine", default="sglang", choices=list(ENGINES))
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=None, help="default 30000; a reward model: 30001")
    p.add_argument("--api-key", default=None, help="clients must send it (SGLang, vLLM, the router)")
    p.add_argument("--replicas", type=int, default=1, help="SGLang: N workers behind sglang-router; vLLM: data parallel")
    p.add_argument("--tp", type=int, default=None, help="GPUs per replica (default: the preset's)")
    p.add_argument("--mem-fraction", type=float, default=None,
                   help="GPU memory for weights + KV cache (SGLang default 0.85, vLLM 0.90)")
    p.add_argument("--context-length", type=int, default=None,
                   help="default: the thinking budget + a 4-image prompt (YaRN added when that passes the model's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="thinking budget the context is planned for "
                   "(default: the preset's, 64000 for R1V2)")
    p.add_argument("--model-path", default=None, help="local weights instead of the hub repository")
    p.add_argument("--device", default=None, help="--engine transformers (default cpu); a reward model (default: "
                   "CUDA when there is one)")
    p.add_argument("--first-gpu", type=int, default=0, help="first GPU index to use")
    p.add_argument("--dry-run", action="store_true", help="print the command(s), start nothing")
    p.add_argument("--python", default=None, help="the serving environment's Python that runs the engine "
                   "(default: this one); its SGLang version is checked before starting")
    p.add_argument("--allow-untested-engine", action="store_true",
                   help="start an SGLang / sglang-router version other than the tested one (with a warning)")


def is_reward_model(model: str) -> bool:
    """A reward preset, or a directory holding a value head: served by ``engine.reward_server``."""
    from engine.reward import HEAD_FILE, REWARD_PRESETS

    return model in REWARD_PRESETS or (Path(model).expanduser() / HEAD_FILE).is_file()


def main(args) -> int:
    """``python -m engine serve``: print (``--dry-run``) or start the launch plan (a reward model: its
    scoring server, ``engine.reward_server``, in this process)."""
    if is_reward_model(args.model):
        port = args.port or REWARD_PORT
        if args.dry_run:
            key = f" --api-key {shlex.quote(args.api_key)}" if args.api_key else ""
            print(f"{shlex.quote(sys.executable)} -m engine serve --model {shlex.quote(args.model)} "
                  f"--host {args.host} --port {port}{key}   # the reward scoring server (engine.reward_server)")
            return 0
        from engine.reward_server import serve as serve_reward

        return serve_reward(args.model, host=args.host, port=port, api_key=args.api_key, device=args.device or "auto")
    args.port = args.port or 30000
    opts = ServeOptions(model=args.model, engine=args.engine, host=args.host, port=args.port, api_key=args.api_key,
                        replicas=args.replicas, tp_size=args.tp, mem_fraction=args.mem_fraction,
                        context_length=args.context_length, model_path=args.model_path, device=args.device or "cpu",
                        first_gpu=args.first_gpu, max_new_tokens=args.max_new_tokens)
    if args.dry_run:
        checkpoint = None
        if opts.engine == "transformers" and opts.model_path is None:
            from engine.loading import resolve

            preset = _check(opts)[0]
            if preset.source == "hub":  # never download for a dry run
                from tutor.settings import data_dir

                checkpoint = data_dir() / "models" / (preset.repo_id.replace("/", "--") + "-native")
            else:
                checkpoint = resolve(preset.name)[0]
        launches = plan(opts, checkpoint=checkpoint)
        if args.python:  # print the interpreter that would run them
            launches = [Launch(ln.name, [args.python, *ln.argv[1:]] if ln.argv[0] == "python" else ln.argv, ln.url,
                               ln.env, ln.overlay) for ln in launches]
        print(shell(launches))
        return 0
    checkpoint = None
    if opts.engine == "vllm" and get_preset(opts.model).source == "tiny" and opts.model_path is None:
        from engine import vllm_cpu

        _check(opts)
        checkpoint = vllm_cpu.prepare(get_preset(opts.model).seed, log=lambda m: print(m, file=sys.stderr, flush=True))[1]
    return run(plan(opts, checkpoint=checkpoint), python=args.python, allow_untested=args.allow_untested_engine)
