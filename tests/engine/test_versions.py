"""engine.versions: `python -m engine serve` refuses an SGLang / sglang-router it was not tested with.

The interpreter asked is a fake: a tiny shell script that prints the versions a serving environment
would report, so no engine is installed; nothing is started (``os.execvpe`` is replaced).
"""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from engine import serve, versions
from engine.__main__ import main
from engine.envs import SGLANG_ROUTER_VERSION, SGLANG_VERSION
from tutor.errors import EngineError


def _fake_python(tmp_path, found: dict) -> str:
    """An executable that answers the version probe the way an environment holding ``found`` would."""
    exe = tmp_path / "python"
    exe.write_text(f"#!/bin/sh\necho '{json.dumps(found)}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


class Execd(BaseException):
    """Raised where os.execvpe would have replaced the process (past main's error handling, like exec)."""


@pytest.fixture
def execs(monkeypatch):
    """Record what would be exec'd instead of replacing the test process."""
    calls = []

    def fake_exec(path, argv, env):
        calls.append(argv)
        raise Execd()

    monkeypatch.setattr(os, "execvpe", fake_exec)
    return calls


def test_untested_sglang_is_refused_before_anything_starts(tmp_path, capsys, execs):
    py = _fake_python(tmp_path, {"sglang": "0.5.22"})
    assert main(["serve", "--model", "r1v2-38b-awq", "--context-length", "8192", "--python", py]) == 1
    err = capsys.readouterr().err
    assert f"sglang 0.5.22 is installed for {py}" in err
    assert f"tested with sglang=={SGLANG_VERSION}" in err
    assert "pip install -r requirements-gpu-server.txt" in err and "--allow-untested-engine" in err
    assert execs == []  # nothing launched


def test_refusal_is_in_chinese_too(tmp_path):
    py = _fake_python(tmp_path, {"sglang": "0.6.0"})
    with pytest.raises(EngineError) as e:
        serve.run(serve.plan(serve.ServeOptions(model="r1v2-38b-awq", context_length=8192)), python=py)
    assert e.value.code == "untested_engine_version"
    zh = e.value.message("zh")
    assert "0.6.0" in zh and f"sglang=={SGLANG_VERSION}" in zh and "--allow-untested-engine" in zh


def test_the_tested_version_starts_with_that_python(tmp_path, capsys, execs):
    py = _fake_python(tmp_path, {"sglang": SGLANG_VERSION})
    with pytest.raises(Execd):
        main(["serve", "--model", "r1v2-38b-awq", "--context-length", "8192", "--python", py])
    assert len(execs) == 1 and execs[0][:3] == [py, "-m", "sglang.launch_server"]
    assert "WARNING" not in capsys.readouterr().err


def test_allow_untested_engine_starts_it_with_a_warning(tmp_path, capsys, execs):
    py = _fake_python(tmp_path, {"sglang": "0.5.22"})
    with pytest.raises(Execd):
        main(["serve", "--model", "r1v2-38b-awq", "--context-length", "8192", "--python", py,
              "--allow-untested-engine"])
    assert execs and execs[0][0] == py
    err = capsys.readouterr().err
    assert "WARNING: starting an untested engine" in err and "0.5.22" in err


def test_router_version_is_checked_with_replicas(tmp_path):
    py = _fake_python(tmp_path, {"sglang": SGLANG_VERSION, "sglang-router": "0.1.9"})
    with pytest.raises(EngineError) as e:
        serve.run(serve.plan(serve.ServeOptions(model="r1v2-38b-awq", replicas=2, context_length=8192)), python=py)
    assert "sglang-router 0.1.9" in e.value.message("en") and f"sglang-router=={SGLANG_ROUTER_VERSION}" in \
        e.value.message("en")
    assert "api-key" in e.value.message("en")  # why: the open router before PR 10826


def test_missing_engine_names_the_install(tmp_path):
    py = _fake_python(tmp_path, {})
    with pytest.raises(EngineError) as e:
        serve.run(serve.plan(serve.ServeOptions(model="r1v2-38b-awq", context_length=8192)), python=py)
    assert e.value.code == "engine_not_installed"
    assert "requirements-gpu-server.txt" in e.value.message("en") and f"sglang=={SGLANG_VERSION}" in \
        e.value.message("en")


def test_the_real_probe_reads_this_interpreter():
    """The probe script itself, run by a real Python: present and absent distributions."""
    found = versions.installed_versions(sys.executable, ["pytest", "surely-not-installed-r1v"])
    assert found["pytest"] == pytest.__version__ and found["surely-not-installed-r1v"] is None


def test_a_broken_interpreter_is_a_clear_error(tmp_path):
    exe = tmp_path / "python"
    exe.write_text("#!/bin/sh\necho boom >&2\nexit 3\n")
    exe.chmod(0o755)
    with pytest.raises(EngineError) as e:
        versions.installed_versions(str(exe), ["sglang"])
    assert e.value.code == "engine_python_failed" and "boom" in e.value.detail


def test_vllm_and_transformers_launches_are_not_pinned_here():
    assert versions.needed(["vllm", "serve", "x"]) == {}
    assert versions.needed(["python", "-m", "sglang.launch_server"]) == {"sglang": SGLANG_VERSION}


def test_dry_run_prints_the_given_python_and_checks_nothing(tmp_path, capsys):
    py = _fake_python(tmp_path, {"sglang": "0.0.1"})  # never asked: a dry run starts nothing
    assert main(["serve", "--model", "r1v2-38b-awq", "--context-length", "8192", "--python", py, "--dry-run"]) == 0
    assert f"{py} -m sglang.launch_server" in capsys.readouterr().out
