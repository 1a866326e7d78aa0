"""The page's thinking budget: the control, its checks, and what the page says when a candidate runs out.

Runs the app's handlers on the real tiny-random model in process (random weights: with a budget of a
few tokens it never reaches ``</think>``, which is the case the page must explain).

    python -m pytest tests/test_budget_page.py -q
"""

from __future__ import annotations

import pytest
from PIL import Image

from tests.visitor import fake_request
from webui import view
from webui.config import AppConfig, make_engine
from webui.i18n import t


@pytest.fixture(scope="module")
def tiny_loaded():
    from engine.loading import load_model

    return load_model("tiny-random", quantization=None, device="cpu")


@pytest.fixture
def tapp(tiny_loaded, tmp_path):
    from app import TutorApp
    from engine.core import Engine
    from tutor.store import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", image_dir=tmp_path / "img")
    app = TutorApp(make_engine(AppConfig(), Engine(loaded=tiny_loaded)), store, AppConfig())
    yield app
    store.close()


def _ask(tapp, lang: str, budget, seed: int = 0) -> list[dict]:
    import torch

    torch.manual_seed(seed)  # the page sends no seed; fix torch's global generator for a repeatable run
    req = fake_request(f"v-{lang}", f"s-{lang}")
    return list(tapp.run_mode("ask", lang, None, [], req, image=Image.new("RGB", (120, 80), "white"),
                              photos=[], question="What is 2+3?", subject="math", ptype="auto", reply_lang=lang, n=1,
                              budget=budget))


def _text(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_candidate_out_of_budget_is_explained_with_what_to_do(tapp, lang):
    outs = _ask(tapp, lang, budget=6)
    last = outs[-1]
    assert [r[4] for r in last["cands"]] == [6] and [r[5] for r in last["cands"]] == ["length"]  # budget reached
    note = t("out_of_budget_thinking", lang, budget=6)
    chat = _text(last["chat"])
    assert view.to_markdown(note) in chat  # in the chat, in place of the generic line
    assert view.to_markdown(t("no_answer", lang)) not in chat
    assert view.to_markdown(note) in last["answer"] and t("no_final", lang) not in last["answer"]
    assert ("Raise" in note) if lang == "en" else ("调高" in note)


def test_the_budget_sent_from_the_page_is_the_one_the_model_gets(tapp):
    last = _ask(tapp, "en", budget="3")[-1]
    assert [r[4] for r in last["cands"]] == [3]
    attempt = tapp.store.get_problem("v:v-en", tapp.store.list_problems("v:v-en")[0].id).attempts[-1]
    assert attempt.timings["max_new_tokens"] == 3


@pytest.mark.parametrize("bad", [0, -5, 64_001, 2.5, "lots", float("nan")])
def test_a_bad_budget_is_refused_in_the_page_language(tapp, bad):
    for lang, words in (("en", "thinking budget must be a whole number of tokens from 1 to 64000"),
                        ("zh", "思考预算必须是 1 到 64000 之间的整数")):
        outs = _ask(tapp, lang, budget=bad)
        assert words in outs[-1]["status"] and "Traceback" not in outs[-1]["status"]


def test_the_page_has_a_budget_control_starting_at_the_models_budget(tiny_loaded, tmp_path):
    import gradio as gr

    from app import build_app
    from engine.core import Engine
    from tutor.store import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", image_dir=tmp_path / "img")
    demo = build_app(engine=Engine(loaded=tiny_loaded), store=store)
    [slider] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "r1v-budget"]
    assert isinstance(slider, gr.Slider) and slider.value == tiny_loaded.budget == 64
    assert slider.maximum == 64_000 and slider.minimum == 1
    setter = next(d for d in demo.fns.values() if d.api_name == "set_budget")
    assert setter.inputs[0] is slider
    ask = next(d for d in demo.fns.values() if d.api_name == "ask")
    assert len(ask.inputs) == 8  # API clients of /ask keep their inputs (less the visitor id: webui.identity)
    store.close()


def test_the_control_keeps_the_budget_for_the_sessions_next_questions(tapp):
    req = fake_request("v-en", "s-en")
    assert tapp.set_budget(5, "en", req) == ""
    last = _ask(tapp, "en", budget=None)[-1]  # the handler is given no budget: the session's is used
    assert [r[4] for r in last["cands"]] == [5]
    assert "64000" in tapp.set_budget(0, "en", req)  # refused, and the kept one stays
    assert tapp.set_budget("x", "zh", req).startswith("⚠️ 思考预算必须是")
    assert [r[4] for r in _ask(tapp, "en", budget=None)[-1]["cands"]] == [5]


def test_the_budget_note_follows_a_language_switch(tapp):
    from webui.relang import relang_answer, relang_chat

    last = _ask(tapp, "en", budget=6)[-1]
    zh_note = t("out_of_budget_thinking", "zh", budget=6)
    assert zh_note in relang_answer(last["answer"], "zh") and t("final", "zh") in relang_answer(last["answer"], "zh")
    assert zh_note in _text(relang_chat(last["chat"], "zh"))
    assert relang_answer(relang_answer(last["answer"], "zh"), "en") == last["answer"]
