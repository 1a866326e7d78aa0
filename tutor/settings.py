"""Where things live: the data directory and the database URL, from the environment.

``R1V_DATA_DIR`` (default ``./data``) holds the SQLite database, stored images and locally built
models (``tiny-random`` is cached under ``<data>/models``). ``R1V_DB_URL`` is any SQLAlchemy URL;
the default is ``sqlite:///<data>/r1v.db``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """The data directory, created on first use."""
    path = Path(os.environ.get("R1V_DATA_DIR", "data")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_url() -> str:
    """The database URL: ``R1V_DB_URL`` or a SQLite file in the data directory."""
    return os.environ.get("R1V_DB_URL") or f"sqlite:///{(data_dir() / 'r1v.db').resolve()}"
