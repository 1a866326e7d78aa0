"""Tests for tutor.store: round trips, per-user isolation, cascades, image files, threads.

Every test runs on SQLite (a file under tmp_path) and, when ``R1V_TEST_PG_URL`` is set (``.ci/run``
sets it), on PostgreSQL too, each test in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import io
import os
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tutor.errors import StoreError
from tutor.intake import load_image
from tutor.store import (
    Attempt,
    Base,
    Candidate,
    Feedback,
    ImageRef,
    Message,
    Problem,
    ProblemImage,
    Store,
)

PG_URL = os.environ.get("R1V_TEST_PG_URL")
# Without a server the PostgreSQL cases are reported as skipped, with the reason, never left out silently.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL store tests need R1V_TEST_PG_URL (a server URL; .ci/run starts one)"))]
CJK = re.compile(r"[\u4e00-\u9fff]")


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections live in a new, empty schema; the schema is dropped afterwards."""
    assert PG_URL
    schema = f"r1v_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    # lock_timeout: a test waiting on a lock fails after 20 s instead of hanging the run
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema} -clock_timeout=20s"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.db'}"
    else:
        with pg_schema_url() as url:
            yield url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    with backend_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(db_url, tmp_path) -> Iterator[Store]:
    s = Store(db_url, image_dir=tmp_path / "images")
    yield s
    s.close()


def photo(color=(200, 30, 30), size=(64, 48)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return load_image(buf.getvalue())


@dataclass
class EngineCandidate:  # the shape engine/ returns
    text: str
    thinking: str
    answer: str
    reward: float | None
    tokens: int


def count(store: Store, model, **where) -> int:
    with store.engine.connect() as conn:
        q = select(func.count()).select_from(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return conn.scalar(q)


def assert_not_found(call, *args, **kw):
    with pytest.raises(StoreError) as info:
        call(*args, **kw)
    e = info.value
    assert e.code == "not_found"
    assert e.en and e.zh and CJK.search(e.zh)
    return e


def fill(store: Store, user: str = "alice") -> tuple[int, int]:
    pid = store.add_problem(
        user,
        question="已知 f(x)=x^2，求 f(3)。",
        subject="math",
        problem_type="fill_blank",
        lang="zh",
        gold_answer="9",
        images=[photo(), photo((0, 0, 255))],
    )
    aid = store.add_attempt(
        user,
        pid,
        mode="solve",
        model="tiny-random",
        backend="transformers",
        sampling={"temperature": 0.6, "top_p": 0.95, "n": 2},
        timings={"first_token_s": 0.5},
    )
    store.add_candidates(
        user,
        aid,
        [
            EngineCandidate("f(3)=9 \\boxed{9}", "x^2 at 3", "9", 1.25, 40),
            {
                "text": "\\boxed{6}",
                "thinking": "2*3",
                "answer": "6",
                "reward": -0.5,
                "tokens": 12,
                "group": 1,
            },
        ],
        chosen=0,
    )
    store.add_message(user, pid, "user", "求 f(3)")
    store.add_message(user, pid, "assistant", "f(3)=9", attempt_id=aid)
    store.add_feedback(user, aid, True, "清楚")
    return pid, aid


# --- basics -------------------------------------------------------------------------------------


def test_sqlite_pragmas(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'h.db'}", image_dir=tmp_path) as s, s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_round_trip(store, tmp_path):
    pid, aid = fill(store)
    p = store.get_problem("alice", pid)
    assert (p.question, p.subject, p.problem_type, p.lang, p.gold_answer) == (
        "已知 f(x)=x^2，求 f(3)。",
        "math",
        "fill_blank",
        "zh",
        "9",
    )
    assert p.created_at.tzinfo is not None and abs(datetime.now(UTC) - p.created_at).total_seconds() < 60
    assert [i.position for i in p.images] == [0, 1]
    assert all(i.path.is_file() and i.path.is_relative_to(tmp_path / "images") for i in p.images)
    assert p.images[0].sha256 == photo().sha256
    [a] = p.attempts
    assert (a.id, a.mode, a.model, a.backend, a.status) == (
        aid,
        "solve",
        "tiny-random",
        "transformers",
        "done",
    )
    assert a.sampling == {"temperature": 0.6, "top_p": 0.95, "n": 2} and a.timings == {"first_token_s": 0.5}
    c0, c1 = a.candidates
    assert (c0.index, c0.answer, c0.reward, c0.tokens, c0.chosen, c0.group) == (0, "9", 1.25, 40, True, None)
    assert (c1.index, c1.answer, c1.reward, c1.tokens, c1.chosen, c1.group) == (1, "6", -0.5, 12, False, 1)
    assert c0.thinking == "x^2 at 3" and c1.text == "\\boxed{6}"
    assert [(f.up, f.comment) for f in a.feedback] == [(True, "清楚")]
    assert [(m.role, m.content, m.attempt_id, m.position) for m in p.messages] == [
        ("user", "求 f(3)", None, 0),
        ("assistant", "f(3)=9", aid, 1),
    ]


def test_results_are_plain_dataclasses(store):
    pid, _ = fill(store)
    p = store.get_problem("alice", pid)
    store.close()

    def walk(obj):
        assert not isinstance(obj, Base)
        if is_dataclass(obj):
            for f in fields(obj):
                walk(getattr(obj, f.name))
        elif isinstance(obj, tuple | list):
            for x in obj:
                walk(x)

    walk(p)
    assert p.attempts[0].candidates[0].answer == "9"  # readable after the engine is gone


def test_list_problems_newest_first_with_paging(store):
    ids = [store.add_problem("alice", question=f"q{i}") for i in range(5)]
    store.add_attempt("alice", ids[0], mode="hint", model="m", backend="http")
    store.add_problem("bob", question="bob's")
    listed = store.list_problems("alice")
    assert [p.id for p in listed] == ids[::-1]
    assert listed[-1].n_attempts == 1 and listed[0].n_attempts == 0 and listed[0].n_images == 0
    assert [p.id for p in store.list_problems("alice", limit=2, offset=1)] == ids[3:1:-1]
    assert store.list_problems("nobody") == []
    assert [p.question for p in store.list_problems("bob")] == ["bob's"]


def test_get_or_create_user_is_idempotent(store):
    a = store.get_or_create_user("hf:alice")
    assert store.get_or_create_user("hf:alice") == a
    assert store.get_or_create_user("hf:bob").id != a.id


def test_update_attempt(store):
    pid = store.add_problem("alice", question="q")
    aid = store.add_attempt("alice", pid, mode="check", model="m", backend="http", status="running")
    store.update_attempt("alice", aid, status="done", timings={"total_s": 3.5})
    store.update_attempt("alice", aid, timings={"tokens_per_s": 20})
    a = store.get_problem("alice", pid).attempts[0]
    assert a.status == "done" and a.timings == {"total_s": 3.5, "tokens_per_s": 20}


def test_attempts_and_messages_keep_order(store):
    pid = store.add_problem("alice", question="q")
    modes = ["solve", "hint", "check", "followup", "practice"]
    aids = [store.add_attempt("alice", pid, mode=m, model="m", backend="b") for m in modes]
    for i in range(12):
        store.add_message("alice", pid, "user" if i % 2 == 0 else "assistant", f"m{i}")
    p = store.get_problem("alice", pid)
    assert [a.id for a in p.attempts] == aids and [a.mode for a in p.attempts] == modes
    assert [m.content for m in p.messages] == [f"m{i}" for i in range(12)]
    assert [m.position for m in p.messages] == list(range(12))


# --- isolation between users --------------------------------------------------------------------


def test_other_user_cannot_read_add_or_delete(store):
    pid, aid = fill(store, "alice")
    store.get_or_create_user("bob")
    assert_not_found(store.get_problem, "bob", pid)
    assert_not_found(store.add_attempt, "bob", pid, mode="solve", model="m", backend="b")
    assert_not_found(store.add_message, "bob", pid, "user", "hi")
    assert_not_found(store.add_candidates, "bob", aid, [{"text": "x"}])
    assert_not_found(store.add_feedback, "bob", aid, False, "spam")
    assert_not_found(store.update_attempt, "bob", aid, status="error")
    assert_not_found(store.delete_problem, "bob", pid)
    assert_not_found(store.get_problem, "never-seen", pid)  # unknown user, same answer
    assert store.list_problems("bob") == []
    # alice's problem is exactly as before
    p = store.get_problem("alice", pid)
    assert len(p.messages) == 2 and len(p.attempts) == 1 and len(p.attempts[0].candidates) == 2
    assert [(f.up, f.comment) for f in p.attempts[0].feedback] == [(True, "清楚")]
    assert p.attempts[0].status == "done"


def test_message_cannot_point_at_attempt_of_other_problem(store):
    p1, a1 = fill(store, "alice")
    p2 = store.add_problem("alice", question="other")
    assert_not_found(store.add_message, "alice", p2, "assistant", "x", attempt_id=a1)
    _, b_aid = fill(store, "bob")
    assert_not_found(store.add_message, "alice", p1, "assistant", "x", attempt_id=b_aid)


def test_missing_and_malformed_ids(store):
    pid, aid = fill(store, "alice")
    assert_not_found(store.get_problem, "alice", 999_999)
    assert_not_found(store.add_feedback, "alice", 999_999, True)
    assert_not_found(store.get_problem, "alice", "abc")
    assert_not_found(store.get_problem, "alice", None)
    assert store.get_problem("alice", str(pid)).id == pid  # ids from a page arrive as strings
    assert store.add_feedback("alice", str(aid), False) > 0


# --- deletion -----------------------------------------------------------------------------------


def test_delete_cascades_and_removes_unused_files(store, tmp_path):
    pid, aid = fill(store, "alice")
    other, _ = fill(store, "alice")  # same two photos in a second problem
    paths = [i.path for i in store.get_problem("alice", pid).images]
    store.delete_problem("alice", pid)
    assert_not_found(store.get_problem, "alice", pid)
    assert count(store, Problem, id=pid) == 0
    assert count(store, ProblemImage, problem_id=pid) == 0
    assert count(store, Attempt, problem_id=pid) == 0
    assert count(store, Candidate, attempt_id=aid) == 0
    assert count(store, Feedback, attempt_id=aid) == 0
    assert count(store, Message, problem_id=pid) == 0
    assert all(p.is_file() for p in paths), "still used by the other problem"
    assert len(store.get_problem("alice", other).attempts[0].candidates) == 2
    store.delete_problem("alice", other)
    assert not any(p.exists() for p in paths)
    assert count(store, Candidate) == 0 and count(store, Message) == 0 and count(store, ProblemImage) == 0


def test_a_photo_is_stored_once_per_visitor_never_shared_across_visitors(store):
    """The same picture: one file per visitor (tutor.uploads names it by visitor and content), so
    another visitor's copy says nothing about whether anyone else uploaded it."""
    a_pid = store.add_problem("alice", question="q", images=[photo()])
    a2_pid = store.add_problem("alice", question="q2", images=[photo()])
    b_pid = store.add_problem("bob", question="q", images=[photo()])
    a_path = store.get_problem("alice", a_pid).images[0].path
    assert store.get_problem("alice", a2_pid).images[0].path == a_path  # alice's: stored once
    b_path = store.get_problem("bob", b_pid).images[0].path
    assert b_path != a_path and b_path.name != f"{photo().sha256}.png"
    store.delete_problem("alice", a_pid)
    assert a_path.is_file()  # alice's other problem uses it
    store.delete_problem("alice", a2_pid)
    assert not a_path.exists() and b_path.is_file()
    store.delete_problem("bob", b_pid)
    assert not b_path.exists()


def test_files_outside_image_dir_are_never_deleted(store, tmp_path):
    outside = tmp_path / "user_upload.png"
    outside.write_bytes(photo().png_bytes())
    pid = store.add_problem("alice", question="q", images=[ImageRef(sha256="ab" * 32, path=outside)])
    assert store.get_problem("alice", pid).images[0].path == outside.resolve()
    store.delete_problem("alice", pid)
    assert outside.is_file()


def test_delete_user(store):
    fill(store, "alice")
    fill(store, "alice")
    keep, _ = fill(store, "bob")
    assert store.delete_user("alice") == 2
    assert store.list_problems("alice") == []
    assert store.get_problem("bob", keep).images[0].path.is_file()


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext_id", ["", "   ", "x" * 129, None, 42])
def test_bad_user_id(store, ext_id):
    with pytest.raises(StoreError) as info:
        store.add_problem(ext_id, question="q")
    assert info.value.code == "bad_user" and CJK.search(info.value.zh)


def test_bad_values(store):
    pid = store.add_problem("alice", question="q")
    for call, kw in [
        (store.add_attempt, {"mode": "cheat", "model": "m", "backend": "b"}),
        (store.add_attempt, {"mode": "solve", "model": "m", "backend": "b", "status": "weird"}),
    ]:
        with pytest.raises(StoreError) as info:
            call("alice", pid, **kw)
        assert info.value.code == "bad_value" and CJK.search(info.value.zh)
    with pytest.raises(StoreError) as info:
        store.add_message("alice", pid, "robot", "hi")
    assert info.value.code == "bad_value"
    with pytest.raises(StoreError) as info:
        store.add_problem("alice", question="q", subject="s" * 33)
    assert info.value.code == "too_long" and CJK.search(info.value.zh)


def test_unreachable_database_is_a_store_error():
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", image_dir="/nonexistent")
    assert info.value.code == "db_error" and CJK.search(info.value.zh)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(max_size=300), answer=st.text(max_size=40))
def test_text_round_trips(store, content, answer):
    """Property: any Unicode text comes back as it went in (NUL removed, which PostgreSQL refuses)."""
    pid = store.add_problem("prop", question=content)
    aid = store.add_attempt("prop", pid, mode="solve", model="m", backend="b")
    store.add_candidates("prop", aid, [{"text": content, "answer": answer, "thinking": content}])
    store.add_message("prop", pid, "assistant", content)
    p = store.get_problem("prop", pid)
    clean = content.replace("\x00", "")
    assert p.question == clean and p.messages[0].content == clean
    c = p.attempts[0].candidates[0]
    assert (c.text, c.thinking, c.answer) == (clean, clean, answer.replace("\x00", ""))


# --- setup and threads --------------------------------------------------------------------------


def test_reopen_keeps_data_and_migrating_twice_is_harmless(db_url, tmp_path):
    with Store(db_url, image_dir=tmp_path) as s1:
        pid, _ = fill(s1)
    with Store(db_url, image_dir=tmp_path) as s2:
        assert s2.get_problem("alice", pid).gold_answer == "9"


def test_default_url_from_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("R1V_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("R1V_DB_URL", raising=False)
    with Store() as s:
        pid = s.add_problem("alice", question="q", images=[photo()])
        assert (tmp_path / "data" / "r1v.db").is_file()
        assert s.get_problem("alice", pid).images[0].path.is_relative_to(tmp_path / "data" / "images")


def test_in_memory_sqlite():
    with Store("sqlite://", image_dir="/nonexistent") as s:
        pid = s.add_problem("alice", question="q")
        assert [p.id for p in s.list_problems("alice")] == [pid]


def test_threads(store):
    pid = store.add_problem("alice", question="shared")
    n_threads, per_thread = 8, 6
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        barrier.wait()
        store.get_or_create_user("carol")  # the same new user from every thread
        own = store.add_problem(f"user{t}", question=f"t{t}")
        for i in range(per_thread):
            store.add_message("alice", pid, "user", f"{t}-{i}")
            store.add_message(f"user{t}", own, "assistant", f"{i}")
        assert len(store.list_problems(f"user{t}")) == 1

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(work, range(n_threads)))
    msgs = store.get_problem("alice", pid).messages
    assert [m.position for m in msgs] == list(range(n_threads * per_thread))
    assert sorted(m.content for m in msgs) == sorted(
        f"{t}-{i}" for t in range(n_threads) for i in range(per_thread)
    )
    assert count(store, Message) == 2 * n_threads * per_thread
    assert store.get_or_create_user("carol").id == store.get_or_create_user("carol").id


def test_problems_are_numbered_per_user_and_a_number_is_never_reused(store):
    """A new visitor's first problem is #1 whatever others did before; numbers only go up, also after
    a delete (a deleted #2 is never shown again); the summaries, the full problem and the history list
    carry the number; the id stays the key."""
    for i in range(3):
        store.add_problem("bob", question=f"bob {i}")
    a1, a2 = (store.add_problem("alice", question=f"a{i}") for i in range(2))
    assert [store.get_problem("alice", p).number for p in (a1, a2)] == [1, 2]
    store.delete_problem("alice", a2)
    a3 = store.add_problem("alice", question="a3")
    store.delete_problem("alice", a3)  # deleting the newest does not give its number back either
    a4 = store.add_problem("alice", question="a4")
    assert [(p.id, p.number) for p in store.list_problems("alice")] == [(a4, 4), (a1, 1)]
    assert [s.number for s, _, _ in store.history_items("alice")] == [4, 1]
    assert [p.number for p in store.list_problems("bob")] == [3, 2, 1]
    with pytest.raises(StoreError):  # the number is not a key: another user's id still refuses
        store.get_problem("bob", a1)


def test_concurrent_new_problems_of_one_user_get_distinct_numbers(store):
    n = 8
    barrier = threading.Barrier(n)

    def add(i: int) -> int:
        barrier.wait()
        return store.add_problem("dana", question=f"q{i}")

    with ThreadPoolExecutor(n) as pool:
        ids = list(pool.map(add, range(n)))
    assert sorted(store.get_problem("dana", p).number for p in ids) == list(range(1, n + 1))


def test_concurrent_new_problems_from_two_processes_worth_of_stores(db_url, tmp_path):
    """Two Store objects on one database (as two app processes would be) never hand out one number twice."""
    with Store(db_url, image_dir=tmp_path) as s1, Store(db_url, image_dir=tmp_path) as s2:
        barrier = threading.Barrier(6)

        def add(i: int) -> int:
            barrier.wait()
            return (s1 if i % 2 else s2).add_problem("eve", question=f"q{i}")

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(add, range(6)))
        assert sorted(p.number for p in s1.list_problems("eve")) == [1, 2, 3, 4, 5, 6]
