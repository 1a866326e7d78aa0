"""Test-wide setup: every test session gets its own data directory (tiny models are built there once)."""

import os
import tempfile

os.environ.setdefault("R1V_ENGINES_DIR", os.path.expanduser("~/.cache/r1v-test-engines"))  # engine envs: built once
os.environ.setdefault("R1V_DATA_DIR", tempfile.mkdtemp(prefix="r1v-test-data-"))
os.environ.setdefault("R1V_ENGINES_DIR", os.path.expanduser("~/.cache/r1v-test-engines"))  # engine venvs: built once
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
