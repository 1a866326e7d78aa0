"""History store: users, problems, their photos, attempts, candidate solutions, chat and feedback.

SQLAlchemy 2.0 ORM on any SQLAlchemy URL (SQLite by default, PostgreSQL through psycopg 3). The
schema is owned by Alembic (``tutor/migrations``); ``Store`` upgrades the database to the newest
revision when it starts. Every method is scoped to one user, named by the external id the page
knows (a browser-stored id or a Hugging Face login), and never reads or changes another user's rows:
a problem or attempt of someone else is reported as ``not_found``, like one that does not exist.

    store = Store()                          # tutor.settings.db_url(); or Store("postgresql+psycopg://...")
    pid = store.add_problem("u1", question="...", subject="math", images=[intake_image])
    aid = store.add_attempt("u1", pid, mode="solve", model="r1v2-38b", backend="http")
    store.add_candidates("u1", aid, candidates, chosen=2)
    store.add_message("u1", pid, "assistant", "...", attempt_id=aid)
    store.list_problems("u1"); store.get_problem("u1", pid); store.delete_problem("u1", pid)
    store.history_items("u1")                # (summary, first photo, latest answer) per problem, cheaply

``id`` is a problem's key in every call (global, never shown); ``number`` (``ProblemSummary.number``,
``ProblemInfo.number``) is what the student sees: 1, 2, 3 ... for each user on their own, counted by
``users.last_number``, which only goes up, so a number is never given twice, also after a delete
(``delete_user`` removes the counter with the user: a later visitor with that id starts at 1).

Results are frozen dataclasses, never ORM objects. The class is safe to share between threads: each
call runs in its own session; writes in one process are serialised by a lock (and on SQLite each
write transaction starts with ``BEGIN IMMEDIATE``, so writers in other processes wait rather than
fail). SQLite runs in WAL mode with foreign keys on. Image files given as ``IntakeImage`` are saved
under ``image_dir``, named per visitor (``tutor.uploads``: a visitor's same photo once, at a name
nobody can compute from the picture), within the visitor's quota of stored bytes; deleting the last
problem that uses a file deletes the file (only files inside ``image_dir`` are ever deleted).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from tutor import settings, uploads
from tutor.store_checks import (
    as_id,
    bad_user,
    bad_value,
    check_len,
    db_busy,
    db_error,
    field_of,
    not_found,
    stored_opt_text,
    stored_text,
)
from tutor.store_schema import (
    MAX_EXT_ID,
    Attempt,
    AttemptInfo,
    Base,
    Candidate,
    CandidateInfo,
    Feedback,
    FeedbackInfo,
    ImageInfo,
    ImageRef,
    Message,
    MessageInfo,
    Problem,
    ProblemImage,
    ProblemInfo,
    ProblemSummary,
    User,
    UserInfo,
    make_engine,
)

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

__all__ = [
    "AttemptInfo",
    "Base",
    "CandidateInfo",
    "FeedbackInfo",
    "ImageInfo",
    "ImageRef",
    "MessageInfo",
    "ProblemInfo",
    "ProblemSummary",
    "Store",
    "UserInfo",
    "alembic_config",
    "make_engine",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MODES = ("solve", "hint", "check", "followup", "practice")
STATUSES = ("running", "done", "error", "stopped", "interrupted")
ROLES = ("user", "assistant", "system")
MIGRATION_LOCK_KEY = 0x52315654  # PostgreSQL advisory lock held while migrating

# --- the store ----------------------------------------------------------------------------------


def alembic_config(connection: Any = None) -> Config:
    """An Alembic config built in code (no alembic.ini needed), optionally bound to a connection."""
    from alembic.config import Config  # imported here: alembic is slow to import and needed once

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


class Store:
    """History for many users, each seeing only their own rows. See the module docstring."""

    def __init__(self, url: str | None = None, *, image_dir: str | Path | None = None, migrate: bool = True,
                 quota: int | None = None):
        self.url = url or settings.db_url()
        self.quota = uploads.visitor_quota() if quota is None else quota  # bytes of photos per visitor
        self._photo_key: bytes | None = None
        self.engine = make_engine(self.url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._Session = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.RLock()
        self._image_dir = Path(image_dir) if image_dir is not None else None
        if migrate:
            try:
                self.upgrade()
            except BaseException:
                self.engine.dispose()
                raise

    @property
    def image_dir(self) -> Path:
        if self._image_dir is None:
            self._image_dir = settings.data_dir() / "images"
        return self._image_dir

    def upgrade(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision``."""
        alembic_log = logging.getLogger("alembic")
        if alembic_log.level == logging.NOTSET:  # a page of INFO lines per start (plugins, each revision),
            alembic_log.setLevel(logging.WARNING)  # unless the alembic logger's level was set on purpose
        from alembic import command as alembic_command

        try:
            with self._write_lock, self.engine.connect() as conn:
                # One migrator at a time, also across processes (several app workers starting).
                conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
                    alembic_command.upgrade(alembic_config(conn), revision)
        except SQLAlchemyError as e:
            log.exception("database migration failed")
            raise db_error(e) from e

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """A transaction; a write waits at most ``settings.db_busy_s()`` in all (for this process's other
        writers, then for SQLite's lock), then fails with ``db_busy``: waits never stack up."""
        deadline = time.monotonic() + settings.db_busy_s()
        if write and not self._write_lock.acquire(timeout=settings.db_busy_s()):
            raise db_busy("waited for this process's other writers")
        try:
            with self._Session.begin() as s:
                if write and self._sqlite:
                    left = max(1, int(1000 * (deadline - time.monotonic())))
                    s.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE", "sqlite_busy_ms": left})
                yield s
        except SQLAlchemyError as e:
            log.exception("store failure")
            raise db_error(e) from e
        finally:
            if write:
                self._write_lock.release()

    # --- users ---

    @staticmethod
    def _check_user(ext_id: str) -> str:
        if not isinstance(ext_id, str) or not ext_id.strip() or len(ext_id) > MAX_EXT_ID:
            raise bad_user(f"user id {ext_id!r:.60}")
        return ext_id

    def _user(self, s: Session, ext_id: str, create: bool) -> User | None:
        ext_id = self._check_user(ext_id)
        user = s.scalar(select(User).where(User.ext_id == ext_id))
        if user is None and create:
            try:
                with s.begin_nested():
                    user = User(ext_id=ext_id)
                    s.add(user)
            except IntegrityError:  # created meanwhile by another process
                user = s.scalar(select(User).where(User.ext_id == ext_id))
        return user

    def get_or_create_user(self, ext_id: str) -> UserInfo:
        with self._session(write=True) as s:
            u = self._user(s, ext_id, create=True)
            assert u is not None
            return UserInfo(u.id, u.ext_id, u.created_at)

    def _problem(self, s: Session, user: str, problem_id: int, lock: bool = False) -> Problem:
        problem_id = as_id(problem_id, "problem")
        u = self._user(s, user, create=False)
        q = select(Problem).where(Problem.id == problem_id, Problem.user_id == (u.id if u else -1))
        p = s.scalar(q.with_for_update() if lock else q)
        if p is None:
            raise not_found("problem", f"problem {problem_id} for user {user!r}")
        return p

    def _attempt(self, s: Session, user: str, attempt_id: int) -> Attempt:
        attempt_id = as_id(attempt_id, "attempt")
        u = self._user(s, user, create=False)
        a = s.scalar(
            select(Attempt)
            .join(Problem, Attempt.problem_id == Problem.id)
            .where(Attempt.id == attempt_id, Problem.user_id == (u.id if u else -1))
        )
        if a is None:
            raise not_found("attempt", f"attempt {attempt_id} for user {user!r}")
        return a

    # --- writes ---

    def add_problem(
        self,
        user: str,
        *,
        question: str,
        subject: str = "math",
        problem_type: str | None = None,
        lang: str = "en",
        gold_answer: str | None = None,
        images: Sequence[Any] = (),
    ) -> int:
        """Save a new problem and its images (``IntakeImage`` or :class:`ImageRef`); return its id."""
        check_len(subject=subject, problem_type=problem_type, lang=lang)
        with self._session(write=True) as s:
            u = self._user(s, user, create=True)
            assert u is not None
            p = Problem(
                user_id=u.id,
                number=self._next_number(s, u.id),
                subject=subject,
                problem_type=problem_type,
                question=stored_text(question),
                lang=lang,
                gold_answer=stored_opt_text(gold_answer),
            )
            created: list[Path] = []  # removed again when the problem is not saved (over the quota)
            try:
                used = self._stored_bytes(s, u.id) if images else 0
                for pos, img in enumerate(images):
                    path, written = self._save_photo(img, user, used, created) if hasattr(img, "save") \
                        else (Path(img.path), 0)
                    used += written
                    p.images.append(ProblemImage(sha256=img.sha256, path=self._rel(path), position=pos))
                s.add(p)
                s.flush()
            except BaseException:
                for path in created:
                    path.unlink(missing_ok=True)
                raise
            return p.id

    @staticmethod
    def _next_number(s: Session, user_id: int) -> int:
        """The user's next problem number (1, 2, 3 ...). The counter row only counts up, so a deleted
        problem's number is never given again; the UPDATE locks the user's row (PostgreSQL) or runs in
        the BEGIN IMMEDIATE write (SQLite) until the commit, so two writers never get the same one."""
        s.execute(
            update(User).where(User.id == user_id).values(last_number=User.last_number + 1),
            execution_options={"synchronize_session": False},
        )
        return int(s.scalar(select(User.last_number).where(User.id == user_id)))

    def add_attempt(
        self,
        user: str,
        problem_id: int,
        *,
        mode: str,
        model: str,
        backend: str,
        sampling: Mapping[str, Any] | None = None,
        timings: Mapping[str, Any] | None = None,
        status: str = "done",
    ) -> int:
        """Record one run of the model on a problem; return the attempt id."""
        if mode not in MODES:
            raise bad_value("mode", mode, MODES)
        if status not in STATUSES:
            raise bad_value("status", status, STATUSES)
        check_len(model=model, backend=backend)
        with self._session(write=True) as s:
            p = self._problem(s, user, problem_id)
            a = Attempt(
                mode=mode,
                model=model,
                backend=backend,
                sampling=dict(sampling or {}),
                timings=dict(timings or {}),
                status=status,
            )
            p.attempts.append(a)
            s.flush()
            return a.id

    def update_attempt(
        self,
        user: str,
        attempt_id: int,
        *,
        status: str | None = None,
        timings: Mapping[str, Any] | None = None,
    ) -> None:
        """Set an attempt's status and/or merge new timings (e.g. when streaming finishes)."""
        if status is not None and status not in STATUSES:
            raise bad_value("status", status, STATUSES)
        with self._session(write=True) as s:
            a = self._attempt(s, user, attempt_id)
            if status is not None:
                a.status = status
            if timings:
                a.timings = {**(a.timings or {}), **dict(timings)}

    def add_candidates(
        self, user: str, attempt_id: int, candidates: Sequence[Any], *, chosen: int | None = None
    ) -> list[int]:
        """Save candidate solutions (dataclasses or mappings with text, thinking, answer, reward,
        tokens and optionally index, chosen, group, agreement). ``chosen`` marks one by index."""
        with self._session(write=True) as s:
            a = self._attempt(s, user, attempt_id)
            start = len(a.candidates)
            rows = []
            for i, c in enumerate(candidates):
                if dataclasses.is_dataclass(c) and not isinstance(c, type):
                    c = dataclasses.asdict(c)
                index = int(field_of(c, "index", start + i))
                reward = field_of(c, "reward")
                group = field_of(c, "group", field_of(c, "group_id"))
                agreement = field_of(c, "agreement")
                row = Candidate(
                    index=index,
                    text=stored_text(field_of(c, "text")),
                    thinking=stored_text(field_of(c, "thinking")),
                    answer=stored_text(field_of(c, "answer")),
                    reward=None if reward is None else float(reward),
                    tokens=int(field_of(c, "tokens", 0) or 0),
                    chosen=bool(field_of(c, "chosen", False)) if chosen is None else index == chosen,
                    group_id=None if group is None else int(group),
                    agreement=None if agreement is None else float(agreement),
                )
                a.candidates.append(row)
                rows.append(row)
            s.flush()
            return [r.id for r in rows]

    def add_message(
        self, user: str, problem_id: int, role: str, content: str, *, attempt_id: int | None = None
    ) -> int:
        """Append a chat message to a problem's conversation; return its id."""
        if role not in ROLES:
            raise bad_value("role", role, ROLES)
        with self._session(write=True) as s:
            p = self._problem(s, user, problem_id, lock=True)  # row lock orders concurrent appends
            if attempt_id is not None and self._attempt(s, user, attempt_id).problem_id != p.id:
                raise not_found("attempt", f"attempt {attempt_id} is not on problem {problem_id}")
            last = s.scalar(select(func.max(Message.position)).where(Message.problem_id == p.id))
            m = Message(
                problem_id=p.id,
                attempt_id=attempt_id,
                role=role,
                content=stored_text(content),
                position=0 if last is None else last + 1,
            )
            s.add(m)
            s.flush()
            return m.id

    def set_message(self, user: str, message_id: int, content: str | None) -> None:
        """Replace a message's text (a streaming reply saved as it grows), or delete it (``None``)."""
        with self._session(write=True) as s:
            m = s.get(Message, as_id(message_id, "problem"))
            if m is None:
                raise not_found("problem", f"message {message_id}")
            self._problem(s, user, m.problem_id)  # someone else's message is not found, like a missing one
            if content is None:
                s.delete(m)
            else:
                m.content = stored_text(content)

    def add_feedback(self, user: str, attempt_id: int, up: bool, comment: str | None = None) -> int:
        """Thumbs up (``up=True``) or down on an attempt, with an optional comment."""
        with self._session(write=True) as s:
            a = self._attempt(s, user, attempt_id)
            f = Feedback(up=bool(up), comment=stored_opt_text(comment) or None)
            a.feedback.append(f)
            s.flush()
            return f.id

    def mark_interrupted(self, before: datetime | None = None) -> int:
        """Attempts still "running" (their process was killed mid-generation) become "interrupted";
        returns how many. Call once when the app starts. Not scoped to a user: it is maintenance.
        With several app processes on one database, pass ``before`` (e.g. the oldest live process's
        start time) so that runs still going elsewhere are left alone."""
        q = update(Attempt).where(Attempt.status == "running")
        if before is not None:
            q = q.where(Attempt.created_at < before)
        with self._session(write=True) as s:
            n = s.execute(q.values(status="interrupted")).rowcount or 0
        if n:
            log.warning("%d attempt(s) left running by a stopped process marked interrupted", n)
        return n

    # --- reads ---

    def list_problems(self, user: str, limit: int = 20, offset: int = 0) -> list[ProblemSummary]:
        """The user's problems, newest first."""
        limit, offset = max(0, min(int(limit), 500)), max(0, int(offset))
        with self._session() as s:
            u = self._user(s, user, create=False)
            if u is None:
                return []
            n_img = (
                select(func.count(ProblemImage.id))
                .where(ProblemImage.problem_id == Problem.id)
                .scalar_subquery()
            )
            n_att = select(func.count(Attempt.id)).where(Attempt.problem_id == Problem.id).scalar_subquery()
            rows = s.execute(
                select(Problem, n_img, n_att)
                .where(Problem.user_id == u.id)
                .order_by(Problem.created_at.desc(), Problem.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return [
                ProblemSummary(
                    p.id, p.subject, p.problem_type, p.question, p.lang, p.gold_answer, p.created_at, ni, na, p.number
                )
                for p, ni, na in rows
            ]

    def history_items(self, user: str, limit: int = 30) -> list[tuple[ProblemSummary, Path | None, str | None]]:
        """What a history list shows, for the user's newest problems: the summary, the path of the
        first photo (None without one) and the final answer of the latest solve that gave one (its
        chosen candidate's). Three queries for any number of problems, and no candidate text is read
        (``get_problem`` for each would load every attempt's full text)."""
        summaries = self.list_problems(user, limit=limit)
        ids = [p.id for p in summaries]
        if not ids:
            return []
        first: dict[int, str] = {}
        answers: dict[int, str] = {}
        with self._session() as s:
            images = s.execute(
                select(ProblemImage.problem_id, ProblemImage.path)
                .where(ProblemImage.problem_id.in_(ids))
                .order_by(ProblemImage.problem_id, ProblemImage.position)
            )
            for pid, path in images:
                first.setdefault(pid, path)
            solved = s.execute(
                select(Attempt.problem_id, Candidate.answer)
                .join(Candidate, Candidate.attempt_id == Attempt.id)
                .where(Attempt.problem_id.in_(ids), Attempt.mode == "solve", Candidate.chosen.is_(True),
                       Candidate.answer != "")
                .order_by(Attempt.problem_id, Attempt.created_at.desc(), Attempt.id.desc())
            )
            for pid, answer in solved:
                answers.setdefault(pid, answer)
        return [(p, self._abs(first[p.id]) if p.id in first else None, answers.get(p.id)) for p in summaries]

    def get_problem(self, user: str, problem_id: int) -> ProblemInfo:
        """One problem with its images, attempts (with candidates and feedback) and messages, in order."""
        with self._session() as s:
            p = self._problem(s, user, problem_id)
            return ProblemInfo(
                id=p.id,
                subject=p.subject,
                problem_type=p.problem_type,
                question=p.question,
                lang=p.lang,
                gold_answer=p.gold_answer,
                created_at=p.created_at,
                images=tuple(ImageInfo(i.sha256, self._abs(i.path), i.position) for i in p.images),
                attempts=tuple(self._attempt_info(a) for a in p.attempts),
                messages=tuple(
                    MessageInfo(m.id, m.role, m.content, m.attempt_id, m.position, m.created_at)
                    for m in p.messages
                ),
                number=p.number,
            )

    @staticmethod
    def _attempt_info(a: Attempt) -> AttemptInfo:
        return AttemptInfo(
            id=a.id,
            mode=a.mode,
            model=a.model,
            backend=a.backend,
            sampling=dict(a.sampling or {}),
            timings=dict(a.timings or {}),
            status=a.status,
            created_at=a.created_at,
            candidates=tuple(
                CandidateInfo(
                    c.id,
                    c.index,
                    c.text,
                    c.thinking,
                    c.answer,
                    c.reward,
                    c.tokens,
                    c.chosen,
                    c.group_id,
                    c.agreement,
                )
                for c in a.candidates
            ),
            feedback=tuple(FeedbackInfo(f.id, f.up, f.comment, f.created_at) for f in a.feedback),
        )

    # --- deletes ---

    def delete_problem(self, user: str, problem_id: int) -> None:
        """Delete a problem with everything under it, and image files no problem uses any more."""
        with self._session(write=True) as s:
            p = self._problem(s, user, problem_id)
            paths = {i.path for i in p.images}
            s.delete(p)
            s.flush()
            still_used = set(
                s.scalars(select(ProblemImage.path).where(ProblemImage.path.in_(paths))).all()
                if paths
                else []
            )
            # Unlink while still holding the write lock, so a concurrent add of the same photo in
            # this process cannot insert its row between our check and the unlink.
            for rel in paths - still_used:
                self._unlink(rel)

    def rename_user(self, old: str, new: str) -> bool:
        """Give ``old``'s whole history to ``new`` (a visitor's id changed form: the browser-kept id of
        before issue 22 becomes their cookie id). Done only when ``old`` exists and ``new`` has no
        history yet; True when renamed. ``old`` is gone afterwards, so it works once."""
        self._check_user(new)
        with self._session(write=True) as s:
            u = self._user(s, old, create=False)
            if u is None:
                return False
            target = self._user(s, new, create=False)
            if target is not None:
                if s.scalar(select(Problem.id).where(Problem.user_id == target.id).limit(1)) is not None:
                    return False
                s.delete(target)
                s.flush()
            u.ext_id = new
        return True

    def delete_user(self, user: str) -> int:
        """Delete all of a user's history (and the user); return the number of problems removed."""
        with self._session() as s:
            u = self._user(s, user, create=False)
            ids = list(s.scalars(select(Problem.id).where(Problem.user_id == u.id))) if u else []
        for pid in ids:
            self.delete_problem(user, pid)
        with self._session(write=True) as s:
            u = self._user(s, user, create=False)
            if u is not None:
                s.delete(u)
        return len(ids)

    # --- image paths ---

    def _save_photo(self, img: Any, user: str, used: int, created: list[Path]) -> tuple[Path, int]:
        """Write an intake photo where ``tutor.uploads.photo_path`` names it for ``user`` (see there: one
        copy per visitor, fast PNG, the quota); a new file is appended to ``created``. (path, bytes)."""
        if not (hasattr(img, "sha256") and hasattr(img, "image")):
            return Path(img.save(self.image_dir)), 0
        if self._photo_key is None:
            self._photo_key = uploads.photo_key(self.image_dir)
        path = uploads.photo_path(self.image_dir, self._photo_key, user, img.sha256)
        written = uploads.save_photo(img.image, path, used, self.quota)
        if written:
            created.append(path)
        return path, written

    def _stored_bytes(self, s: Session, user_id: int) -> int:
        """Bytes of the photos a user keeps in ``image_dir`` (each file once; example photos elsewhere
        are not theirs)."""
        rows = s.scalars(select(ProblemImage.path).join(Problem).where(Problem.user_id == user_id).distinct())
        return uploads.stored_bytes(self._abs(rel) for rel in rows if not Path(rel).is_absolute())

    def _rel(self, path: Path) -> str:
        """Paths inside ``image_dir`` are stored relative to it, so the data directory can move."""
        try:
            return path.resolve().relative_to(self.image_dir.resolve()).as_posix()
        except ValueError:
            return str(path.resolve())

    def _abs(self, stored: str) -> Path:
        p = Path(stored)
        return p if p.is_absolute() else self.image_dir / p

    def _unlink(self, stored: str) -> None:
        path = self._abs(stored).resolve()
        if not path.is_relative_to(self.image_dir.resolve()):
            log.info("not deleting %s: outside the image directory", path)
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not delete image %s: %r", path, e)


if __name__ == "__main__":  # python -m tutor.store backup DEST | restore SRC
    import sys

    from tutor.backup import main

    sys.exit(main())
