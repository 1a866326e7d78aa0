"""Runs that misbehave cannot take the app with them: ``python app.py --server`` on a stub server.

- Delete during streaming stops the model (the stub sees its stream closed), with a clear message.
- A 20 MB reply is neither stored nor shown whole (tutor/live.py, tutor/store_checks.py).
- A database locked by another process: each waiting write gives a clear "busy" message within
  ``R1V_DB_BUSY_S``, and the waits do not stack up (tutor/store.py).
- After a failed first solve, and after Regenerate, follow-ups work (tutor/session.py).

Driven over HTTP with gradio_client; results are read from the page's outputs, and sizes from the
database file on disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from tests.security.reliab_app import app_process

BUSY_S = 2


@pytest.fixture(scope="module")
def app(stub, tmp_path_factory):
    env = {"R1V_DB_BUSY_S": str(BUSY_S), "R1V_RATE_PER_MINUTE": "1000", "R1V_LOG_LEVEL": "WARNING"}
    with app_process(tmp_path_factory.mktemp("reliab-runs"), "--server", stub.url, env=env) as a:
        yield a


@pytest.fixture(autouse=True)
def _reset(stub):
    stub.mode, stub.delay, stub.hang_models, stub.ticks = "ok", 3.0, False, 10_000
    stub.disconnects = 0
    yield


def _client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def _ask(client, question: str):
    return client.submit("en", None, [], question, "math", "auto", "en", 1, api_name="/ask")


def _mode(client, api: str, message: str = "") -> str:
    """A mode on the session's current problem; its status line."""
    return client.predict("en", [], 1, "", None, message, api_name=api)[1]


def _wait(cond, timeout: float) -> bool:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.1)
    return True


def test_delete_while_streaming_stops_the_model(app, stub):
    stub.mode, stub.delay = "trickle", 0.1
    c = _client(app)
    job = _ask(c, "Solve 2x + 1 = 5")
    assert _wait(lambda: len(job.outputs()) >= 2, 60), "the answer did not start streaming"
    first = c.predict("en", api_name="/delete")  # asks "Delete #1?"
    assert "Delete" in json.dumps(first), first
    t0 = time.monotonic()
    c.predict("en", api_name="/delete")
    assert _wait(lambda: stub.disconnects >= 1, 10), "the model ran on after Delete"
    stopped_after = time.monotonic() - t0
    status = job.result(timeout=30)[1]
    assert "deleted" in status, status
    assert stopped_after < 10
    assert c.predict("en", api_name="/history") == []


def test_a_huge_reply_is_cut_not_stored_or_shown_whole(app, stub):
    stub.mode, stub.huge_chars = "huge", 20_000_000
    c = _client(app)
    t0 = time.monotonic()
    job = _ask(c, "Write forever")
    out = job.result(timeout=120)
    secs = time.monotonic() - t0
    shown = max(len(json.dumps(o, ensure_ascii=False)) for o in job.outputs())
    assert shown < 1_000_000, shown  # what the page got, at most
    db = app.data_dir / "r1v.db"
    con = sqlite3.connect(db)
    try:
        longest = con.execute("SELECT max(length(text) + length(thinking)) FROM candidates").fetchone()[0]
        longest_msg = con.execute("SELECT max(length(content)) FROM messages").fetchone()[0]
    finally:
        con.close()
    assert longest < 300_000 and longest_msg < 300_000, (longest, longest_msg)
    assert "cut" in json.dumps(out, ensure_ascii=False) or "cut" in json.dumps(job.outputs()[-1])
    assert secs < 90


def test_a_locked_database_gives_each_writer_a_clear_busy_message_without_stacked_waits(app, stub):
    db = sqlite3.connect(app.data_dir / "r1v.db", timeout=1, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        jobs, t0 = [], time.monotonic()
        for i in range(3):
            jobs.append(_ask(_client(app), f"Solve {i}x = 2"))
        done = {}

        def wait(i, job):
            out = job.result(timeout=60)
            done[i] = (time.monotonic() - t0, out[1])

        threads = [threading.Thread(target=wait, args=(i, j)) for i, j in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(70)
    finally:
        db.rollback()
        db.close()
    assert len(done) == 3, done
    for secs, status in done.values():
        assert "busy" in status, status
        assert secs < BUSY_S + 10, done  # before: 30 s, 60 s, 90 s
    out = _ask(_client(app), "Solve 3x = 6").result(timeout=60)  # the lock is gone: works
    assert "Done" in out[1], out[1]


def test_follow_ups_work_after_a_failed_first_solve_and_after_regenerate(app, stub):
    c = _client(app)
    stub.mode, stub.status = "status", 500
    status = _ask(c, "Solve 2x + 3 = 7").result(timeout=60)[1]
    assert "failed (500)" in status, status
    stub.mode = "ok"
    assert "no answer to follow up on yet" in _mode(c, "/followup", "why?")
    assert "Done" in _mode(c, "/regenerate")
    assert "Done" in _mode(c, "/followup", "why 2?")
    assert "Done" in _mode(c, "/regenerate")
    assert "Done" in _mode(c, "/followup", "and then?")
    stub.mode = "die"  # a follow-up that breaks midway keeps its text; the next one still works
    assert "stopped answering" in _mode(c, "/followup", "more?")
    stub.mode = "ok"
    assert "Done" in _mode(c, "/regenerate")
    assert "Done" in _mode(c, "/followup", "last one?")
