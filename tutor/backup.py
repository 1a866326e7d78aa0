"""Back up and restore the SQLite history database while the app runs (sqlite3's online backup API).

    python -m tutor.store backup backups/r1v-2025-06-07.db       # the database of R1V_DB_URL
    python -m tutor.store restore backups/r1v-2025-06-07.db      # replaces its contents
    python -m tutor.store backup DEST --db sqlite:////srv/r1v/r1v.db

In code: ``backup(dest, url=None) -> BackupInfo`` and ``restore(src, url=None) -> BackupInfo``.
The backup is a consistent snapshot even while students are writing (the API copies pages under
a read transaction; WAL content is included). Restore first checks that the source is an intact
R1V database (``PRAGMA integrity_check`` and an ``alembic_version`` row), copies it over the live
database page by page (writers wait on the lock, nobody sees half a database), then upgrades it to
the current schema. Photos live in the image directory next to the database: copy that folder too
(``rsync -a data/images/ backup/images/``); files are named by content hash, so copies merge safely.
PostgreSQL: use ``pg_dump`` / ``pg_restore``; this refuses with a clear message.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tutor import settings
from tutor.errors import StoreError, TutorError

log = logging.getLogger(__name__)

__all__ = ["BackupInfo", "backup", "main", "restore"]


@dataclass(frozen=True)
class BackupInfo:
    path: Path  # the file written (backup) or read (restore)
    db: Path  # the live database file
    bytes: int
    attempts: int  # rows in attempts, a quick sanity figure
    revision: str | None


def _db_path(url: str | None) -> Path:
    u = make_url(url or settings.db_url())
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        raise StoreError("backup_unsupported",
                         "Backup/restore here works for a SQLite file database only (PostgreSQL: use pg_dump).",
                         "这里的备份/恢复只支持 SQLite 数据库文件（PostgreSQL 请用 pg_dump）。", str(u))
    return Path(u.database)


def _facts(conn: sqlite3.Connection) -> tuple[int, str | None]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"alembic_version", "attempts", "problems"} <= tables:
        raise StoreError("not_a_backup", "This file is not an R1V Tutor database.",
                         "这个文件不是 R1V Tutor 的数据库。", f"tables: {sorted(tables)[:10]}")
    rev = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return conn.execute("SELECT count(*) FROM attempts").fetchone()[0], rev[0] if rev else None


def _open_checked(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError("no_backup", f"No such file: {path}", f"文件不存在：{path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreError("not_a_backup", "This file is not an R1V Tutor database.",
                         "这个文件不是 R1V Tutor 的数据库。", repr(e)) from e
    if ok != "ok":
        conn.close()
        raise StoreError("corrupt_backup", "The backup file is damaged.", "备份文件已损坏。", str(ok))
    return conn


def backup(dest: str | Path, url: str | None = None) -> BackupInfo:
    """Write a consistent copy of the live database to ``dest`` (overwritten if it exists)."""
    db, dest = _db_path(url), Path(dest)
    if not db.is_file():
        raise StoreError("no_database", f"There is no database at {db} yet.", f"{db} 还没有数据库。")
    if dest.resolve() == db.resolve():
        raise StoreError("same_file", "The backup must go to another file.", "备份必须写到另一个文件。")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(db, timeout=30)
    out = sqlite3.connect(tmp)
    try:
        src.backup(out, pages=1024)
        out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        attempts, rev = _facts(out)
    finally:
        out.close()
        src.close()
    tmp.replace(dest)
    log.info("backed up %s to %s", db, dest)
    return BackupInfo(dest, db, dest.stat().st_size, attempts, rev)


def restore(src: str | Path, url: str | None = None) -> BackupInfo:
    """Replace the live database's contents with the backup ``src``, then upgrade its schema."""
    db, src = _db_path(url), Path(src)
    conn = _open_checked(src)
    try:
        attempts, rev = _facts(conn)
        db.parent.mkdir(parents=True, exist_ok=True)
        live = sqlite3.connect(db, timeout=30)
        try:
            conn.backup(live)
        finally:
            live.close()
    finally:
        conn.close()
    from tutor.store import Store

    Store(f"sqlite:///{db}").close()  # an older backup is brought up to the current schema
    log.info("restored %s from %s", db, src)
    return BackupInfo(src, db, db.stat().st_size, attempts, rev)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tutor.store", description="Back up or restore the history database")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, arg, text in (("backup", "dest", "file to write"), ("restore", "src", "backup file to read")):
        s = sub.add_parser(name)
        s.add_argument(arg, help=text)
        s.add_argument("--db", default=None, help="database URL (default: R1V_DB_URL or the data directory)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = backup(a.dest, a.db) if a.cmd == "backup" else restore(a.src, a.db)
    except TutorError as e:
        print(f"error: {e.message('en')}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    verb = "backed up to" if a.cmd == "backup" else "restored from"
    print(f"{info.db} {verb} {info.path}: {info.bytes} bytes, {info.attempts} attempts, revision {info.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
