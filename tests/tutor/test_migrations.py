"""Tests for the Alembic migrations of the history store (tutor/migrations).

An old database (revision 0001, filled with raw SQL as an old release would have left it) is
upgraded by ``Store`` and must keep every row; the models must match the newest revision; the
command-line config must work. On SQLite always, on PostgreSQL when ``R1V_TEST_PG_URL`` is set.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from tests.tutor.test_store import BACKENDS, backend_url
from tutor.store import Base, Store, alembic_config, make_engine


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    with backend_url(request.param, tmp_path) as url:
        yield url


def upgrade(url: str, revision: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


def current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_revision_chain():
    script = ScriptDirectory.from_config(alembic_config())
    revs = list(script.walk_revisions("base", "heads"))
    assert len(revs) >= 2
    assert script.get_heads() == ["0004"] and [r.revision for r in reversed(revs)][:2] == ["0001", "0002"]


def test_upgrade_from_0001_keeps_rows(db_url, tmp_path):
    upgrade(db_url, "0001")
    assert current(db_url) == "0001"
    assert "comment" not in columns(db_url, "feedback")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (id, ext_id, created_at) VALUES (1, 'old-user', :t)"),
            {"t": "2024-05-01 08:00:00"},
        )
        conn.execute(
            text(
                "INSERT INTO problems (id, user_id, subject, problem_type, question, lang, gold_answer, created_at) "
                "VALUES (10, 1, 'physics', NULL, '自由落体 2 s 后速度？', 'zh', '19.6 m/s', :t)"
            ),
            {"t": "2024-05-01 08:01:00"},
        )
        conn.execute(
            text(
                "INSERT INTO problem_images (problem_id, sha256, path, position) VALUES (10, :sha, 'ab/x.png', 0)"
            ),
            {"sha": "ab" * 32},
        )
        conn.execute(
            text(
                "INSERT INTO attempts (id, problem_id, mode, model, backend, sampling, timings, status, created_at) "
                "VALUES (20, 10, 'solve', 'r1v2-38b', 'http', :s, '{}', 'done', :t)"
            ),
            {"s": '{"temperature": 0.6}', "t": "2024-05-01 08:02:00"},
        )
        conn.execute(
            text(
                "INSERT INTO candidates (attempt_id, idx, text, thinking, answer, reward, tokens, chosen) "
                "VALUES (20, 0, 'v = gt = 19.6 m/s', 'g=9.8', '19.6 m/s', 0.7, 99, :c)"
            ),
            {"c": True},
        )
        conn.execute(
            text(
                "INSERT INTO messages (problem_id, attempt_id, role, content, position, created_at) "
                "VALUES (10, 20, 'assistant', 'v = 19.6 m/s', 0, :t)"
            ),
            {"t": "2024-05-01 08:03:00"},
        )
        conn.execute(
            text("INSERT INTO feedback (id, attempt_id, up, created_at) VALUES (30, 20, :up, :t)"),
            {"up": False, "t": "2024-05-01 08:04:00"},
        )
    engine.dispose()

    with Store(db_url, image_dir=tmp_path / "images") as store:  # upgrades to head on start
        assert current(db_url) == "0004"
        assert "comment" in columns(db_url, "feedback")
        [summary] = store.list_problems("old-user")
        assert (summary.id, summary.n_images, summary.n_attempts) == (10, 1, 1)
        assert summary.created_at.year == 2024 and summary.created_at.tzinfo is not None
        p = store.get_problem("old-user", 10)
        assert (p.question, p.gold_answer, p.subject, p.lang) == (
            "自由落体 2 s 后速度？",
            "19.6 m/s",
            "physics",
            "zh",
        )
        assert p.images[0].path == tmp_path / "images" / "ab" / "x.png"
        [a] = p.attempts
        assert a.sampling == {"temperature": 0.6} and a.status == "done"
        assert [(c.answer, c.reward, c.tokens, c.chosen) for c in a.candidates] == [
            ("19.6 m/s", 0.7, 99, True)
        ]
        assert [(f.id, f.up, f.comment) for f in a.feedback] == [(30, False, None)]
        assert [(m.role, m.content, m.attempt_id) for m in p.messages] == [("assistant", "v = 19.6 m/s", 20)]
        # the new column works, and the old user keeps adding to the old problem
        store.add_feedback("old-user", 20, True, "现在明白了")
        store.add_message("old-user", 10, "user", "谢谢")
        p = store.get_problem("old-user", 10)
        assert [(f.up, f.comment) for f in p.attempts[0].feedback] == [(False, None), (True, "现在明白了")]
        assert [m.position for m in p.messages] == [0, 1]


def test_models_match_head(db_url):
    upgrade(db_url, "head")
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == [], "models and migrations differ: add a revision"


def test_downgrade_and_upgrade_again(db_url, tmp_path):
    with Store(db_url, image_dir=tmp_path) as store:
        pid = store.add_problem("u", question="q")
        aid = store.add_attempt("u", pid, mode="solve", model="m", backend="b")
        store.add_feedback("u", aid, True, "good")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    engine.dispose()
    assert current(db_url) == "0001" and "comment" not in columns(db_url, "feedback")
    with Store(db_url, image_dir=tmp_path) as store:
        [f] = store.get_problem("u", pid).attempts[0].feedback
        assert f.up is True and f.comment is None  # the comment went with its column; the row stayed


def test_command_line_config(tmp_path, monkeypatch):
    """``alembic -c tutor/alembic.ini upgrade head`` on R1V_DB_URL, run in-process."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("R1V_DB_URL", url)
    ini = Path(__file__).resolve().parents[2] / "tutor" / "alembic.ini"
    command.upgrade(Config(str(ini)), "head")
    assert current(url) == "0004"
    assert {"users", "problems", "problem_images", "attempts", "candidates", "messages", "feedback"} <= set(
        inspect(make_engine(url)).get_table_names()
    )


def test_concurrent_first_start(db_url, tmp_path):
    """Several workers opening a fresh database at once: one migrates, the others find it done."""
    barrier = threading.Barrier(4)

    def start(i: int) -> int:
        barrier.wait()
        with Store(db_url, image_dir=tmp_path) as store:
            return store.add_problem(f"user{i}", question=f"q{i}")

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(start, range(4)))
    assert len(set(ids)) == 4 and current(db_url) == "0004"


def test_upgrade_to_0004_numbers_existing_problems_per_user_in_id_order(db_url, tmp_path):
    """Problems saved before per-user numbers get 1, 2, 3 ... per user in id order (ids interleaved
    between users, a gap from a delete); a new problem continues after the highest, and a delete
    never frees a number."""
    upgrade(db_url, "0003")
    engine = make_engine(db_url)
    with engine.begin() as conn:  # no explicit ids: PostgreSQL's sequences must stay right
        for ext in ("ann", "bob"):
            conn.execute(text("INSERT INTO users (ext_id, created_at) VALUES (:e, :t)"),
                         {"e": ext, "t": "2024-05-01 08:00:00"})
        ids = {}
        for q, ext in (("a1", "ann"), ("b1", "bob"), ("gone", "ann"), ("a2", "ann"), ("b2", "bob"), ("a3", "ann")):
            ids[q] = conn.execute(text("INSERT INTO problems (user_id, subject, question, lang, created_at) "
                                       "VALUES ((SELECT id FROM users WHERE ext_id = :e), 'math', :q, 'en', :t) "
                                       "RETURNING id"),
                                  {"e": ext, "q": q, "t": "2024-05-01 08:01:00"}).scalar_one()
        conn.execute(text("DELETE FROM problems WHERE id = :i"), {"i": ids.pop("gone")})
    engine.dispose()
    with Store(db_url, image_dir=tmp_path) as store:
        assert current(db_url) == "0004"
        assert {p.question: p.number for p in store.list_problems("ann")} == {"a1": 1, "a2": 2, "a3": 3}
        assert {p.question: p.number for p in store.list_problems("bob")} == {"b1": 1, "b2": 2}
        assert store.get_problem("ann", ids["a3"]).number == 3
        new = store.add_problem("ann", question="after the upgrade")
        assert store.get_problem("ann", new).number == 4
        store.delete_problem("ann", new)
        again = store.add_problem("ann", question="after a delete")
        assert store.get_problem("ann", again).number == 5  # 4 is not given twice
        assert store.get_problem("bob", store.add_problem("bob", question="b")).number == 3
        assert store.get_problem("cat", store.add_problem("cat", question="c")).number == 1


def test_downgrade_from_0004_keeps_every_problem_and_its_rows(db_url, tmp_path):
    with Store(db_url, image_dir=tmp_path) as store:
        pid = store.add_problem("u", question="q")
        aid = store.add_attempt("u", pid, mode="solve", model="m", backend="b")
        store.add_message("u", pid, "user", "hello", attempt_id=aid)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    engine.dispose()
    assert "number" not in columns(db_url, "problems") and "last_number" not in columns(db_url, "users")
    with Store(db_url, image_dir=tmp_path) as store:  # upgraded again: the row is back with number 1
        p = store.get_problem("u", pid)
        assert p.number == 1 and [m.content for m in p.messages] == ["hello"] and len(p.attempts) == 1
        assert store.get_problem("u", store.add_problem("u", question="q2")).number == 2
