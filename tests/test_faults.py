"""Failing engines and a killed app: the student gets a clear message, nothing typed or received is
lost, a retry works once the server is back; the database survives SIGKILL and can be backed up.

Engines fail for real: ``engine.http.HttpEngine`` talks to a local stub server (tests/stub_openai.py)
that is unreachable, too slow, dies mid-stream, sends malformed JSON, or answers 429/503.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from engine.http import HttpEngine, ServerStreamError
from tests.stub_openai import PARTIAL, StubServer
from tests.visitor import fake_request
from tutor.errors import EngineError, TutorError
from tutor.intake import load_image
from tutor.session import Tutor
from tutor.store import Store

ROOT = Path(__file__).resolve().parents[1]

# mode -> (stub settings, expected error code)
FAULTS = {
    "slow": ({"mode": "slow", "delay": 2.0}, "server_timeout"),
    "dies_mid_stream": ({"mode": "die"}, "server_lost"),
    "malformed_json": ({"mode": "malformed"}, "server_bad_reply"),
    "429": ({"mode": "status", "status": 429}, "server_busy"),
    "503": ({"mode": "status", "status": 503}, "server_error"),
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def _engine(url: str) -> HttpEngine:
    return HttpEngine(url, model="stub", timeout=0.6, connect_timeout=0.5, max_retries=1, backoff=0.01)


def _photo():
    img = Image.new("RGB", (240, 120), "white")
    ImageDraw.Draw(img).text((10, 50), "2x + 3 = 7", fill="black")
    return load_image(img)


@pytest.fixture
def stub():
    s = StubServer()
    yield s
    s.close()


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'r1v.db'}", image_dir=tmp_path / "images")
    yield s
    s.close()


def _set(stub: StubServer, settings: dict) -> None:
    stub.mode, stub.delay, stub.status = "ok", 3.0, 503
    for k, v in settings.items():
        setattr(stub, k, v)


# ------------------------------------------------------------------------------- engine.http alone


def test_unreachable_server_is_a_clear_error_quickly():
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as e:
        _engine(f"http://127.0.0.1:{_closed_port()}").solve([], "Solve 2x+3=7.")
    assert time.perf_counter() - t0 < 10
    assert e.value.code == "server_unreachable"
    assert "Cannot reach" in e.value.message("en") and "无法连接" in e.value.message("zh")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_an_engine_error_in_both_languages_within_bounded_time(stub, fault):
    settings, code = FAULTS[fault]
    _set(stub, settings)
    t0 = time.perf_counter()
    with pytest.raises(EngineError) as e:
        _engine(stub.url).solve([], "Solve 2x+3=7.")
    assert time.perf_counter() - t0 < 10
    assert e.value.code == code, e.value
    en, zh = e.value.message("en"), e.value.message("zh")
    assert en and zh and en != zh and "Traceback" not in en
    if fault == "dies_mid_stream":
        assert isinstance(e.value, ServerStreamError) and e.value.partial == {0: "".join(PARTIAL)}
    stub.mode = "ok"  # back: the same engine object answers
    assert _engine(stub.url).solve([], "Solve 2x+3=7.").answer == "2"


# ---------------------------------------------------------------------------- through the Tutor


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_tutor_keeps_question_and_partial_answer_and_retry_works(stub, store, fault):
    tutor = Tutor(_engine(stub.url), store, backend="http")
    pid = tutor.new_problem("u1", [_photo()], "Solve 2x+3=7 for x.", lang="en")
    _set(stub, FAULTS[fault][0])
    streamed = []
    with pytest.raises(EngineError) as e:
        for ev in tutor.solve("u1", pid):
            streamed.append(ev.text)
    assert e.value.code == FAULTS[fault][1]
    p = store.get_problem("u1", pid)
    assert p.messages[0].role == "user" and p.messages[0].content == "Solve 2x+3=7 for x."
    [failed] = p.attempts
    assert failed.status == "error"
    if fault == "dies_mid_stream":  # what was received is in the history, not only on the screen
        assert "".join(streamed) == "".join(PARTIAL)
        assert failed.candidates and "".join(PARTIAL).startswith(failed.candidates[0].thinking.strip())
        assert p.messages[-1].role == "assistant" and "so 2x = 4" in p.messages[-1].content
    stub.mode = "ok"
    out = [ev for ev in tutor.solve("u1", pid) if hasattr(ev, "attempt_id")]
    assert out[-1].answer == "2"
    p = store.get_problem("u1", pid)
    assert [a.status for a in p.attempts] == ["error", "done"]
    assert p.messages[0].content == "Solve 2x+3=7 for x."  # still there, once
    assert sum(m.role == "user" for m in p.messages) == 1


# ------------------------------------------------------------------------------ through the page


def test_page_shows_the_message_keeps_the_partial_chat_and_retry_works(stub, store):
    from app import TutorApp
    from webui.config import AppConfig, make_engine
    from webui.i18n import t

    tapp = TutorApp(make_engine(AppConfig(), _engine(stub.url)), store, AppConfig())
    req = fake_request("v-faults", "s-faults")
    stub.mode = "die"
    outs = list(tapp.run_mode("ask", "zh", None, [], req, image=_photo().image, photos=[],
                              question="解方程 2x+3=7", subject="math", ptype="auto", reply_lang="zh", n=1))
    status = outs[-1]["status"]
    assert status.startswith("⚠️ ") and "中途断开" in status and status != "⚠️ " + t("error_generic", "zh")
    chats = [o["chat"] for o in outs if "chat" in o]
    assert "so 2x = 4" in str(chats[-1])  # the streamed part stays on the screen
    pid = next(o["pid"] for o in outs if "pid" in o)
    stub.mode = "ok"
    outs = list(tapp.run_mode("solve", "zh", pid, chats[-1], req, n=1, regen=True))
    assert outs[-1]["status"].startswith("完成") and outs[-1]["attempt"]
    p = store.get_problem("v:v-faults", pid)
    assert [a.status for a in p.attempts] == ["error", "done"] and p.question == "解方程 2x+3=7"


def test_page_with_an_unreachable_server_says_so_and_keeps_the_question(store):
    from app import TutorApp
    from webui.config import AppConfig, make_engine

    tapp = TutorApp(make_engine(AppConfig(), _engine(f"http://127.0.0.1:{_closed_port()}")), store, AppConfig())
    req = fake_request("v-down", "s-down")
    outs = list(tapp.run_mode("ask", "en", None, [], req, image=None, photos=[],
                              question="Solve 2x+3=7.", subject="math", ptype="auto", reply_lang="en", n=1))
    assert "Cannot reach the model server" in outs[-1]["status"]
    [s] = store.list_problems("v:v-down")
    assert s.question == "Solve 2x+3=7." and store.get_problem("v:v-down", s.id).attempts[0].status == "error"


# ------------------------------------------------------------------------------------ durability

_KILLED_MID_GENERATION = textwrap.dedent('''
    import sys, time
    from engine.core import Candidate, Delta, Finished, Solution
    from tutor.session import Tutor
    from tutor.store import Store

    class Forever:
        name = "forever"
        def stream(self, images, *, messages=None, n=1, sampling=None, stop=None):
            yield Delta(0, "thinking ")
            print("STREAMING", flush=True)
            while True:
                time.sleep(0.05)
                yield Delta(0, ".")
        def stop(self):
            pass

    class Quick(Forever):
        def stream(self, images, *, messages=None, n=1, sampling=None, stop=None):
            yield Finished(Solution([Candidate(0, "x = 2", "", "2", 3, "stop", True)], 0, "quick", 1))

    store = Store(sys.argv[1], image_dir=sys.argv[2])
    pid = Tutor(Quick(), store).new_problem("u1", [], "Solve 2x+3=7.", lang="en")
    list(Tutor(Quick(), store).solve("u1", pid))
    for ev in Tutor(Forever(), store).solve("u1", pid):
        pass
''')


def test_sigkill_mid_generation_then_restart_marks_the_attempt_interrupted(tmp_path):
    url = f"sqlite:///{tmp_path / 'r1v.db'}"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_MID_GENERATION, url, str(tmp_path / "img")],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "STREAMING"
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.wait(timeout=30)
    assert proc.returncode == -9
    with Store(url, image_dir=tmp_path / "img") as store:  # the database opens
        assert store.mark_interrupted() == 1
        assert store.mark_interrupted() == 0
        [s] = store.list_problems("u1")
        p = store.get_problem("u1", s.id)
        assert [a.status for a in p.attempts] == ["done", "interrupted"]
        assert p.attempts[0].candidates[0].answer == "2"  # nothing else lost
        assert [m.role for m in p.messages] == ["user", "assistant"] and p.question == "Solve 2x+3=7."
    with sqlite3.connect(tmp_path / "r1v.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_database_refuses_an_unknown_status(store):
    pid = store.add_problem("u1", question="q")
    aid = store.add_attempt("u1", pid, mode="solve", model="m", backend="b", status="interrupted")
    with store.engine.begin() as conn, pytest.raises(Exception, match="invalid attempt status"):
        conn.exec_driver_sql("UPDATE attempts SET status = 'exploded' WHERE id = ?", (aid,))
    with pytest.raises(TutorError):
        store.update_attempt("u1", aid, status="exploded")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tutor.store", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_backup_and_restore_with_one_command(tmp_path):
    db = tmp_path / "live" / "r1v.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    with Store(url, image_dir=tmp_path / "img") as store:
        pid = store.add_problem("u1", question="before the backup")
        store.add_message("u1", pid, "user", "hello")
        r = _cli("backup", str(tmp_path / "bk" / "r1v-backup.db"), "--db", url)
        assert r.returncode == 0, r.stderr
        assert "backed up" in r.stdout and (tmp_path / "bk" / "r1v-backup.db").stat().st_size > 0
        store.add_problem("u1", question="after the backup")
        store.delete_problem("u1", pid)
        assert [s.question for s in store.list_problems("u1")] == ["after the backup"]
    r = _cli("restore", str(tmp_path / "bk" / "r1v-backup.db"), "--db", url)
    assert r.returncode == 0, r.stderr
    with Store(url, image_dir=tmp_path / "img") as store:
        [s] = store.list_problems("u1")
        assert s.question == "before the backup"
        assert [m.content for m in store.get_problem("u1", s.id).messages] == ["hello"]
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    r = _cli("restore", str(tmp_path / "junk.db"), "--db", url)
    assert r.returncode == 2 and "not an R1V Tutor database" in r.stderr and "Traceback" not in r.stderr
    r = _cli("backup", str(tmp_path / "x.db"), "--db", "postgresql+psycopg://u@h/db")
    assert r.returncode == 2 and "pg_dump" in r.stderr


def test_backup_while_writers_are_busy_is_consistent(tmp_path):
    import threading

    from tutor.backup import backup

    url = f"sqlite:///{tmp_path / 'r1v.db'}"
    with Store(url, image_dir=tmp_path / "img") as store:
        pid = store.add_problem("u1", question="q")
        done = threading.Event()

        def write():
            while not done.is_set():
                store.add_attempt("u1", pid, mode="solve", model="m", backend="b")

        th = threading.Thread(target=write)
        th.start()
        try:
            time.sleep(0.2)
            info = backup(tmp_path / "snap.db", url)
        finally:
            done.set()
            th.join()
    with sqlite3.connect(tmp_path / "snap.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == info.attempts > 0
