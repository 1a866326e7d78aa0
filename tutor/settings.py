"""Where things live: the data directory and the database URL, from the environment.

``R1V_DATA_DIR`` (default ``./data``) holds the SQLite database, stored images and locally built
models (``tiny-random`` is cached under ``<data>/models``). ``R1V_DB_URL`` is any SQLAlchemy URL;
the default is ``sqlite:///<data>/r1v.db``. ``R1V_DB_BUSY_S`` (default 5) is how long a write waits
for a database another writer holds before the student is told to try again.
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


def db_busy_s() -> float:
    """How long one write may wait for the database (``R1V_DB_BUSY_S``, default 5 s), in all: the wait
    for this process's other writers and SQLite's busy wait together."""
    try:
        return max(0.1, float(os.environ.get("R1V_DB_BUSY_S") or 5))
    except ValueError:
        return 5.0
