"""The serving-engine versions this project was tested with, and the launcher's refusal of others.

SGLang's InternVL image placeholder changed across releases (FACTS.md): on one release our chat
template's ``<image>`` is matched and expanded, on another it is silently left in the prompt and the
model sees no image. sglang-router authenticates clients with ``--api-key`` only from SGLang PR 10826
on; before, the key only went from the router to its workers (an open router). So ``python -m engine
serve`` (not ``--dry-run``) asks the Python that will run the engine which versions it has, before
starting anything, and refuses any other than ``TESTED`` with an English/Chinese error naming the
tested version and the install command. ``--allow-untested-engine`` starts it anyway, with a warning.

    from engine.versions import check_launch_versions
    check_launch_versions(["python", "-m", "sglang.launch_server", ...], python="/opt/serve/bin/python")

Tested: ``tests/engine/test_versions.py`` (a fake interpreter printing versions) and
``tests/test_sglang_template.py`` (the pinned SGLang's own code judging the template).
"""

from __future__ import annotations

import json
import logging
import subprocess

from engine.envs import SGLANG_ROUTER_VERSION, SGLANG_VERSION
from tutor.errors import EngineError

log = logging.getLogger(__name__)

# The module a launch runs (``python -m MODULE``, first part) -> the distributions it needs, exactly.
TESTED: dict[str, dict[str, str]] = {
    "sglang": {"sglang": SGLANG_VERSION},
    "sglang_router": {"sglang-router": SGLANG_ROUTER_VERSION},
}
INSTALL_HINT = "pip install -r requirements-gpu-server.txt"
WHY = {
    "sglang": ("its InternVL image placeholder changed across releases: an untested one can silently drop "
               "the images", "其 InternVL 图像占位符在不同版本间有变化，未经测试的版本可能悄悄丢掉图片"),
    "sglang-router": ("its --api-key checks clients only from SGLang PR 10826 on",
                      "它的 --api-key 仅从 SGLang PR 10826 起才校验客户端"),
}

# Run by the engine's interpreter: the installed version of each distribution named in argv, or null.
_PROBE = (
    "import json, sys\n"
    "from importlib.metadata import PackageNotFoundError, version\n"
    "out = {}\n"
    "for d in sys.argv[1:]:\n"
    "    try:\n"
    "        out[d] = version(d)\n"
    "    except PackageNotFoundError:\n"
    "        out[d] = None\n"
    "print(json.dumps(out))\n"
)


def needed(argv: list[str]) -> dict[str, str]:
    """The distributions (and tested versions) the launch ``argv`` runs; empty when none is pinned."""
    if len(argv) >= 3 and argv[0] == "python" and argv[1] == "-m":
        return dict(TESTED.get(argv[2].split(".")[0], {}))
    return {}


def installed_versions(python: str, dists: list[str], *, timeout: float = 120.0) -> dict[str, str | None]:
    """Ask interpreter ``python`` for the installed version of each of ``dists`` (None: not installed)."""
    try:
        proc = subprocess.run([python, "-c", _PROBE, *dists], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineError("engine_python_failed", f"Could not run the engine's Python {python}.",
                          f"无法运行推理引擎的 Python：{python}。", detail=repr(e)) from e
    try:
        found = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None
    except (ValueError, IndexError):
        found = None
    if not isinstance(found, dict):
        raise EngineError("engine_python_failed", f"The engine's Python {python} did not report its packages.",
                          f"推理引擎的 Python {python} 未能报告已安装的包。",
                          detail=(proc.stderr or proc.stdout)[-2000:])
    return {d: (found.get(d) if isinstance(found.get(d), str) else None) for d in dists}


def check_versions(want: dict[str, str], python: str, *, allow_untested: bool = False) -> list[str]:
    """Refuse (EngineError ``untested_engine_version``, or ``engine_not_installed``) unless ``python``
    has exactly the versions in ``want``. With ``allow_untested``, an installed but untested version
    is only warned about; returns the warnings."""
    if not want:
        return []
    found = installed_versions(python, sorted(want))
    pins = " ".join(f"{d}=={v}" for d, v in sorted(want.items()))
    missing = [d for d in sorted(want) if found[d] is None]
    if missing:
        raise EngineError(
            "engine_not_installed",
            f"{', '.join(missing)} is not installed for {python}. Install the tested version in the serving "
            f"environment (never the app's): {INSTALL_HINT} (that is {pins}).",
            f"{python} 中未安装 {'、'.join(missing)}。请在推理服务的独立环境（不要装进应用环境）中安装经过测试的版本："
            f"{INSTALL_HINT}（即 {pins}）。")
    wrong = {d: found[d] for d in sorted(want) if found[d] != want[d]}
    if not wrong:
        return []
    en = "; ".join(f"{d} {got} is installed for {python}, but this project was tested with {d}=={want[d]} "
                   f"({WHY.get(d, ('', ''))[0]})" for d, got in wrong.items())
    zh = "；".join(f"{python} 中安装的是 {d} {got}，但本项目只测试过 {d}=={want[d]}（{WHY.get(d, ('', ''))[1]}）"
                  for d, got in wrong.items())
    if not allow_untested:
        raise EngineError(
            "untested_engine_version",
            f"{en}. Install the tested version: {INSTALL_HINT} (that is {pins}), or pass "
            "--allow-untested-engine to start it anyway.",
            f"{zh}。请安装经过测试的版本：{INSTALL_HINT}（即 {pins}），或加 --allow-untested-engine 强行启动。",
            detail=json.dumps(found))
    warning = f"WARNING: starting an untested engine (--allow-untested-engine): {en}."
    log.warning(warning)
    return [warning]


def check_launch_versions(argvs: list[list[str]], python: str, *, allow_untested: bool = False) -> list[str]:
    """``check_versions`` for every launch argv at once (one interpreter call)."""
    want: dict[str, str] = {}
    for argv in argvs:
        want.update(needed(argv))
    return check_versions(want, python, allow_untested=allow_untested)
