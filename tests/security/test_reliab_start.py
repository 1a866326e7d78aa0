"""Start-up and SIGKILL: ``python app.py`` as a subprocess.

- A corrupt history database (not SQLite, damaged pages, an unknown schema revision) always gives a
  clear message on stderr and exit status 2, never a traceback (webui/startup.py).
- An answer killed mid-stream (SIGKILL) reopens, after a restart, with the text it had streamed
  (tutor/live.py saves it as it grows) and the attempt marked interrupted.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.security.reliab_app import ROOT, app_process, free_port, kill_group, page_event
from tests.stub_openai import TICK, StubServer
from tests.visitor import COOKIE, cookie_of


def _make_db(data) -> None:
    from tutor.store import Store

    data.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{data / 'r1v.db'}", image_dir=data / "images")
    for i in range(200):  # several pages of rows
        store.add_problem(f"u{i}", question=f"problem {i} " + "x" * 500)
    store.close()


def _garbage(data) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "r1v.db").write_bytes(os.urandom(8192))


def _damaged_pages(data) -> None:
    _make_db(data)
    raw = bytearray((data / "r1v.db").read_bytes())
    raw[8192:] = os.urandom(len(raw) - 8192)  # the header and first pages intact, the rest noise
    (data / "r1v.db").write_bytes(bytes(raw))


def _unknown_revision(data) -> None:
    _make_db(data)
    con = sqlite3.connect(data / "r1v.db")
    con.execute("UPDATE alembic_version SET version_num = 'deadbeef0000'")
    con.commit()
    con.close()


@pytest.mark.parametrize("corrupt", [_garbage, _damaged_pages, _unknown_revision],
                         ids=["not_sqlite", "damaged_pages", "unknown_revision"])
def test_a_corrupt_database_gives_a_clear_message_and_exit_status(tmp_path, corrupt):
    data = tmp_path / "data"
    corrupt(data)
    env = {**os.environ, "R1V_DATA_DIR": str(data), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("R1V_DB_URL", None)
    r = subprocess.run([sys.executable, "app.py", "--server", "http://127.0.0.1:9", "--port", str(free_port())],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-2000:]
    assert "cannot start: the history database" in r.stderr and "历史数据库" in r.stderr, r.stderr[-2000:]
    assert "python -m tutor.store restore" in r.stderr


def test_a_database_locked_by_another_process_at_start_is_a_clear_message_soon(tmp_path):
    data = tmp_path / "data"
    _make_db(data)
    db = sqlite3.connect(data / "r1v.db", timeout=1, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # another process holds the write lock while the app starts
    try:
        env = {**os.environ, "R1V_DATA_DIR": str(data), "GRADIO_ANALYTICS_ENABLED": "False", "R1V_DB_BUSY_S": "2"}
        env.pop("R1V_DB_URL", None)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "app.py", "--server", "http://127.0.0.1:9", "--port", str(free_port())],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        secs = time.monotonic() - t0
    finally:
        db.rollback()
        db.close()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-2000:]
    assert "is locked by another process" in r.stderr and "被另一个进程锁定" in r.stderr, r.stderr[-2000:]
    assert secs < 60, secs  # imports plus one short wait, not 30 s per write


def test_an_answer_killed_mid_stream_reopens_with_its_streamed_text(tmp_path):
    from gradio_client import Client

    stub = StubServer("trickle", delay=0.05)
    try:
        with app_process(tmp_path, "--server", stub.url, env={"R1V_LOG_LEVEL": "WARNING"}) as app:
            c = Client(app.url, verbose=False)
            job = c.submit("en", None, [], "Solve 2x = 8", "math", "auto", "en", 1, api_name="/ask")
            t0 = time.monotonic()
            while len(job.outputs()) < 2 and time.monotonic() - t0 < 60:
                time.sleep(0.1)
            time.sleep(5)  # streaming for a while: more than one save interval
            kill_group(app.proc, signal.SIGKILL)  # the app and its workers, as a power loss would
            app.proc.wait(10)
        with app_process(tmp_path, "--server", stub.url, env={"R1V_LOG_LEVEL": "WARNING"}) as app:
            session, me = "reliabkill1", {COOKIE: cookie_of(c)}  # the same visitor, after the restart
            _, hist = page_event(app.url, "/history", ["en"], session=session, cookies=me)
            assert hist and len(hist[0]) == 1, hist
            _, reopened = page_event(app.url, "/reopen", ["en", None], session=session, cookies=me,
                                     event_data={"index": 0, "value": None})
            chat = str(reopened[1])
            assert (TICK * 20).strip() in chat, chat[:1000]
        con = sqlite3.connect(tmp_path / "data" / "r1v.db")
        try:
            assert con.execute("SELECT status FROM attempts").fetchall() == [("interrupted",)]
        finally:
            con.close()
    finally:
        stub.close()
