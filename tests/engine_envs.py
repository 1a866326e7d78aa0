"""The serving engines' own venvs for the tests that run real engine code (vLLM's CPU build, SGLang).

``engine_python(name)`` builds the env on first use (``engine.envs.ensure_env``; the tests keep them
under ``R1V_ENGINES_DIR``, ``~/.cache/r1v-test-engines`` by default) and returns its interpreter. A
machine where it cannot be built skips the test with the reason; ``R1V_REQUIRE_ENGINE_ENVS=1`` (set by
``.ci/run``) makes that a failure, so CI cannot pass by skipping the real engines.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tutor.errors import EngineError


def engine_python(name: str) -> Path:
    """The interpreter of engine env ``name``, built if needed; skip (or fail in CI) if it cannot be."""
    from engine.envs import ensure_env

    try:
        return ensure_env(name, log=lambda line: None)
    except EngineError as e:
        reason = f"the {name} engine env cannot be built here: {e.message('en')} {e.detail[-500:]}"
        if os.environ.get("R1V_REQUIRE_ENGINE_ENVS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
