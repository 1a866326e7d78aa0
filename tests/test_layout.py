"""webui.layout's logic without a browser: the banner timer stops once the model is ready, the
feedback buttons' states, history cards and the empty-history note, the ImageEditor tools that keep
Gradio's toolbar valid; tutor.store quiets Alembic's INFO lines; a reopened problem keeps its
practice turn (Engine("tiny-random"), the tutor's own drill practice)."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest

from webui import layout


class _Engine:
    def __init__(self, health):
        self.h = health

    def health(self):
        return self.h


@pytest.mark.parametrize("health, active", [({"ok": True, "loaded": False}, True), ({"ok": True, "loaded": True}, False),
                                            ({"ok": False, "error": "down"}, True), ({"ok": True}, False)])
def test_banner_tick_runs_until_ready(health, active):
    md, timer = layout.banner_tick(lambda lang: f"banner {lang}", _Engine(health), "en")
    assert md == "banner en"
    assert timer.active is active


def test_feedback_states():
    up, down = layout.feedback_states(True, True)
    assert (up["variant"], down["variant"]) == ("primary", "secondary")
    up, down = layout.feedback_states(True, False)
    assert (up["variant"], down["variant"]) == ("secondary", "primary")
    assert all(u["variant"] == "secondary" for u in layout.feedback_states(False, True))
    assert all(u["variant"] == "secondary" for u in layout.feedback_reset())


def test_empty_note():
    assert layout.empty_note([], "en") == {"__type__": "update", "value": "No problems yet.", "visible": True}
    assert layout.empty_note([], "zh")["value"] == "还没有题目。"
    assert layout.empty_note([("a.png", "x")], "en")["visible"] is False


def test_history_card(tmp_path):
    from PIL import Image

    class S:
        id, number, subject, question, created_at = 7, 3, "math", "Solve 4x+4=12", datetime(2026, 12, 3, 14, 56)

    path = layout.history_card(S(), None, "2", "zh", tmp_path)
    assert Image.open(path).size == (320, 200)
    assert layout.history_card(S(), None, "2", "zh", tmp_path) == path  # cached
    assert layout.history_card(S(), tmp_path / "gone.png", "2", "zh", tmp_path) == path  # a missing photo


def test_editor_tools_are_options():
    # brush=False / eraser=False make Gradio's toolbar bind an undefined size (Svelte props_invalid_value).
    assert layout.EDITOR_TOOLS["brush"] is not False and layout.EDITOR_TOOLS["eraser"] is not False
    assert "#r1v-photo .toolbar-wrap" in layout.CSS  # ...and the page hides those tools


def test_store_start_is_quiet(tmp_path, caplog):
    from tutor.store import Store

    logging.getLogger("alembic").setLevel(logging.NOTSET)
    with caplog.at_level(logging.INFO):
        Store(f"sqlite:///{tmp_path / 'r.db'}", image_dir=tmp_path / "img").close()
    assert not [r for r in caplog.records if r.name.startswith("alembic") and r.levelno < logging.WARNING]


def test_reopen_keeps_the_practice_turn(tmp_path):
    from engine.core import Engine, Sampling
    from tutor.session import Tutor
    from tutor.store import Store
    from webui import view
    from webui.config import AppConfig, make_engine

    store = Store(f"sqlite:///{tmp_path / 'r.db'}", image_dir=tmp_path / "img")
    tutor = Tutor(make_engine(AppConfig(), Engine("tiny-random")), store, backend="transformers")
    pid = tutor.new_problem("u", [], "Solve 4x+4=12", subject="math", problem_type="auto", lang="en")
    for _ in tutor.solve("u", pid, n=1, sampling=Sampling(max_new_tokens=4)):
        pass
    result = [ev for ev in tutor.practice("u", pid, sampling=Sampling(max_new_tokens=4))][-1]
    msgs = view.problem_messages(store.get_problem("u", pid), "en")
    texts = [m["content"] for m in msgs if isinstance(m["content"], str)]
    assert "Practice problem" in texts
    assert any(result.practice.problem in t for t in texts)
    store.close()
