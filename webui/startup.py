"""Opening the history database when the app starts: a clear message and exit status 2, never a traceback.

    from webui.startup import open_store
    store = open_store()        # tutor.store.Store() checked and ready, or SystemExit(EXIT_BAD_DB)

Whatever is wrong with the database -- a file that is not SQLite, damaged pages, a schema revision
this version does not know, a server that refuses the connection -- the app prints what it is and
what to do (in English and Chinese) on stderr and exits with ``EXIT_BAD_DB``. On SQLite the file is
also checked with ``PRAGMA quick_check``, so damage deep in the file is found at start, not in the
middle of a student's question. Attempts a killed process left "running" are marked "interrupted".
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from sqlalchemy import text

log = logging.getLogger(__name__)

EXIT_BAD_DB = 2


def _where(url: str) -> str:
    if url.startswith("sqlite:///"):
        return url.removeprefix("sqlite:///")
    return url.split("@")[-1]  # a server URL without its password


def _reason(e: BaseException) -> str:
    detail = getattr(e, "detail", "") or str(e) or type(e).__name__
    for known in ("database is locked", "file is not a database", "database disk image is malformed", "Can't locate revision",
                  "unable to open database file", "quick_check"):
        if known in detail:
            start = detail.index(known)
            return detail[start:start + 160].split("\n")[0].rstrip("')\"")
    return detail.split("\n")[0][:200]


def bad_db_message(url: str, e: BaseException) -> str:
    where, why = _where(url), _reason(e)
    if getattr(e, "code", "") == "db_busy" or "database is locked" in why:
        return (f"R1V Tutor cannot start: the history database {where} is locked by another process (waited "
                "R1V_DB_BUSY_S seconds). Stop that process or try again in a moment.\n"
                f"R1V Tutor 无法启动：历史数据库 {where} 被另一个进程锁定（已等待 R1V_DB_BUSY_S 秒）。"
                "请结束该进程或稍后再试。")
    return (f"R1V Tutor cannot start: the history database {where} cannot be used ({why}).\n"
            "It may be damaged, not a database, or from another version. Move the file away to start with an "
            "empty history, or restore a backup: python -m tutor.store restore BACKUP.db\n"
            f"R1V Tutor 无法启动：历史数据库 {where} 无法使用（{why}）。它可能已损坏、不是数据库文件，或来自其他版本。"
            "请把该文件移走以使用空的历史记录，或恢复备份：python -m tutor.store restore BACKUP.db")


def _quick_check(store: Any) -> None:
    if store.engine.dialect.name != "sqlite":
        return
    with store.engine.connect() as conn:
        rows = [r[0] for r in conn.execute(text("PRAGMA quick_check")).fetchall()]
    if rows != ["ok"]:
        raise RuntimeError(f"quick_check: {'; '.join(map(str, rows))[:200]}")


def open_store(url: str | None = None) -> Any:
    """The app's store, checked (see the module docstring); SystemExit(EXIT_BAD_DB) when it cannot be used."""
    from tutor import settings
    from tutor.store import Store

    url = url or settings.db_url()
    store = None
    store_log = logging.getLogger("tutor.store")  # its failures log tracebacks: here the message says it all
    level = store_log.level
    store_log.setLevel(logging.CRITICAL)
    try:
        store = Store(url)
        _quick_check(store)
        stale = store.mark_interrupted()  # attempts a killed process left "running"
    except Exception as e:  # noqa: BLE001 - whatever it is, the operator gets a message, not a traceback
        log.debug("database unusable", exc_info=True)
        if store is not None:
            store.close()
        print(bad_db_message(url, e), file=sys.stderr)
        raise SystemExit(EXIT_BAD_DB) from None
    finally:
        store_log.setLevel(level)
    if stale:
        log.warning("marked %d attempt(s) left running by a previous run as interrupted", stale)
    return store
