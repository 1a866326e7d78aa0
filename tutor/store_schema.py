"""History store internals: ORM schema (SQLAlchemy 2.0, typed ``Mapped[]``), result records, engine.

Used by ``tutor.store`` (the API the app calls) and by ``tutor/migrations/env.py`` (autogenerate
compares these models with the migrations). The schema itself is owned by the Alembic revisions in
``tutor/migrations/versions``: change a model here and add a revision there, in the same commit;
``tests/tutor/test_migrations.py`` fails when the two drift apart.

The result records (``ProblemInfo``, ``AttemptInfo`` ...) are the frozen dataclasses ``Store``
returns instead of ORM objects. Constraint and index names follow ``NAMING`` so that migrations can
refer to them on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

MAX_EXT_ID = 128

# --- tables -------------------------------------------------------------------------------------


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _now() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(MAX_EXT_ID), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    # the number of the user's latest problem: counts up, never down (a delete frees no number)
    last_number: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class Problem(Base):
    __tablename__ = "problems"
    __table_args__ = (Index("ix_problems_user_created", "user_id", "created_at"),
                      Index("ix_problems_user_number", "user_id", "number", unique=True))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # what the student sees ("#3"): 1, 2, 3 ... per user, from users.last_number (revision 0004)
    number: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    subject: Mapped[str] = mapped_column(String(32))
    problem_type: Mapped[str | None] = mapped_column(String(32))
    question: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(8))
    gold_answer: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    images: Mapped[list[ProblemImage]] = relationship(
        order_by="ProblemImage.position", passive_deletes=True, cascade="all, delete-orphan"
    )
    attempts: Mapped[list[Attempt]] = relationship(
        order_by=lambda: [Attempt.created_at, Attempt.id], passive_deletes=True, cascade="all, delete-orphan"
    )
    messages: Mapped[list[Message]] = relationship(
        order_by="Message.position", passive_deletes=True, cascade="all, delete-orphan"
    )


class ProblemImage(Base):
    __tablename__ = "problem_images"
    __table_args__ = (UniqueConstraint("problem_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(1024))
    position: Mapped[int] = mapped_column(Integer)


class Attempt(Base):
    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    mode: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    backend: Mapped[str] = mapped_column(String(50))
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)
    candidates: Mapped[list[Candidate]] = relationship(
        order_by="Candidate.index", passive_deletes=True, cascade="all, delete-orphan"
    )
    feedback: Mapped[list[Feedback]] = relationship(
        order_by=lambda: [Feedback.created_at, Feedback.id],
        passive_deletes=True,
        cascade="all, delete-orphan",
    )


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("attempt_id", "idx"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column("idx", Integer)
    text: Mapped[str] = mapped_column(Text)
    thinking: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    reward: Mapped[float | None] = mapped_column(Float)
    tokens: Mapped[int] = mapped_column(Integer)
    chosen: Mapped[bool] = mapped_column(Boolean)
    group_id: Mapped[int | None] = mapped_column(Integer)  # answer cluster (same final answer)
    agreement: Mapped[float | None] = mapped_column(Float)  # share of candidates in that cluster


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("problem_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), index=True)
    up: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str | None] = mapped_column(Text)  # added in revision 0002
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=_now)


# --- results: plain records returned by tutor.store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserInfo:
    id: int
    ext_id: str
    created_at: datetime


@dataclass(frozen=True)
class ImageRef:
    """An image file already on disk, for :meth:`Store.add_problem` (an ``IntakeImage`` works too)."""

    sha256: str
    path: str | Path


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    path: Path
    position: int


@dataclass(frozen=True)
class CandidateInfo:
    id: int
    index: int
    text: str
    thinking: str
    answer: str
    reward: float | None
    tokens: int
    chosen: bool
    group: int | None
    agreement: float | None


@dataclass(frozen=True)
class FeedbackInfo:
    id: int
    up: bool
    comment: str | None
    created_at: datetime


@dataclass(frozen=True)
class AttemptInfo:
    id: int
    mode: str
    model: str
    backend: str
    sampling: dict[str, Any]
    timings: dict[str, Any]
    status: str
    created_at: datetime
    candidates: tuple[CandidateInfo, ...] = ()
    feedback: tuple[FeedbackInfo, ...] = ()


@dataclass(frozen=True)
class MessageInfo:
    id: int
    role: str
    content: str
    attempt_id: int | None
    position: int
    created_at: datetime


@dataclass(frozen=True)
class ProblemSummary:
    id: int
    subject: str
    problem_type: str | None
    question: str
    lang: str
    gold_answer: str | None
    created_at: datetime
    n_images: int
    n_attempts: int
    number: int = 0  # the user's own problem number, shown as "#3" (``id`` is the key in every call)


@dataclass(frozen=True)
class ProblemInfo:
    id: int
    subject: str
    problem_type: str | None
    question: str
    lang: str
    gold_answer: str | None
    created_at: datetime
    images: tuple[ImageInfo, ...]
    attempts: tuple[AttemptInfo, ...]
    messages: tuple[MessageInfo, ...]
    number: int = 0  # as in ProblemSummary


# --- engine -----------------------------------------------------------------------------------------


def _wal(cur: Any, wait_s: float = 30.0) -> None:
    """Put the database file in WAL mode (it stays so: later connections only check). Switching needs
    the file to itself and SQLite answers "database is locked" at once, busy timeout or not, when another
    connection is in it -- as when several workers open a new database together -- so retry until
    ``wait_s``."""
    import sqlite3
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; on SQLite: WAL, foreign keys, real transactions, a short busy wait
    (``tutor.settings.db_busy_s``; a write transaction may set its own, the ``sqlite_busy_ms`` option)."""
    from tutor.settings import db_busy_s

    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(u, pool_pre_ping=True)
    memory = u.database in (None, "", ":memory:")
    if not memory:
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        u,
        connect_args={"check_same_thread": False, "timeout": db_busy_s()},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy, not the sqlite3 module, issue BEGIN
        cur = dbapi_conn.cursor()
        if not memory:
            _wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commits
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        opts = conn.get_execution_options()
        if opts.get("sqlite_busy_ms") is not None:  # what is left of this write's wait, not a fresh one
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(opts['sqlite_busy_ms'])}")
        conn.exec_driver_sql(opts.get("sqlite_begin", "BEGIN"))

    return engine
