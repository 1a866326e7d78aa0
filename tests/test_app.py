"""The web app: pure page helpers (webui/), configuration, and the app launched in process on
tiny-random and driven through gradio_client (streamed output, per-visitor history, page messages)."""

from __future__ import annotations

import re
import string
import threading
import time
from types import SimpleNamespace

import pytest

from tests.visitor import fake_request, same_visitor, store_id
from tutor.errors import EngineError, TutorError
from webui import view
from webui.config import AppConfig, LazyEngine, make_engine, parse_config, pick_model
from webui.i18n import STRINGS, choices, lang_from_header, t

EXAMPLE = "assets/examples/math-en-cubic-graph.jpg"

# --------------------------------------------------------------------------------------- strings


def test_every_string_has_both_languages_with_the_same_fields():
    fmt = string.Formatter()
    for key, (en, zh) in STRINGS.items():
        assert en.strip() and zh.strip(), key
        fields_en = {f for _, f, _, _ in fmt.parse(en) if f}
        fields_zh = {f for _, f, _, _ in fmt.parse(zh) if f}
        assert fields_en == fields_zh, key


def test_language_choice_and_header():
    assert t("ask", "zh") == "解题" and t("ask", "en-US") == "Solve"
    assert t("done", "zh-CN", secs=1.25) == "完成，用时 1.2 秒。"
    assert choices("subject", "en")[0] == ("Math", "math")
    assert [v for _, v in choices("ptype", "zh")][0] == "auto"
    assert lang_from_header("zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert lang_from_header("en-GB,en;q=0.9") == "en"
    assert lang_from_header("fr-FR,fr;q=0.9") == "en"
    assert lang_from_header("") == "zh"


# ---------------------------------------------------------------------------------- configuration


def test_flags_win_over_environment():
    env = {"R1V_MODEL": "r1v2-38b", "R1V_N": "4", "R1V_PORT": "9000", "R1V_MAX_NEW_TOKENS": "32"}
    cfg = parse_config([], env)
    assert (cfg.model, cfg.n, cfg.port, cfg.max_new_tokens, cfg.host) == ("r1v2-38b", 4, 9000, 32, "127.0.0.1")
    cfg = parse_config(["--model", "tiny-random", "--n", "2", "--share", "--port", "7999"], env)
    assert (cfg.model, cfg.n, cfg.share, cfg.port) == ("tiny-random", 2, True, 7999)
    assert parse_config([], {"SPACE_ID": "me/tutor"}).host == "0.0.0.0"
    assert parse_config([], {"R1V_SERVER": "http://x:30000"}).engine_concurrency == 8
    assert parse_config([], {}).engine_concurrency == 1
    with pytest.raises(SystemExit):
        parse_config(["--n", "40"], {})


def test_automatic_model_choice():
    assert pick_model(AppConfig(server="http://s:1", model="tiny-random")) == ("http", "http://s:1")
    assert pick_model(AppConfig(model="r1v2-38b")) == ("local", "r1v2-38b")
    assert pick_model(AppConfig(), gpu_gb=80) == ("local", "r1v2-38b-nf4")
    kind, name = pick_model(AppConfig(), gpu_gb=16)
    assert kind == "local" and name in ("mini", "tiny-random")
    assert pick_model(AppConfig(), gpu_gb=0)[1] in ("mini", "tiny-random")


def test_missing_http_backend_is_a_clear_engine_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "engine.http", None)  # as if the module were not there
    lazy = LazyEngine("http", "http://127.0.0.1:9")
    assert lazy.backend == "http"
    with pytest.raises(EngineError) as e:
        list(lazy.stream([], messages=[]))
    assert e.value.code == "engine_missing" and "engine.http" in e.value.message("en")
    h = lazy.health()
    assert h["ok"] is False and h["error_zh"]


# ----------------------------------------------------------------------------------- view helpers


def test_stream_messages_open_while_thinking_and_fold_at_the_answer():
    thinking = view.stream_messages("Let $x=2$ so", "en")
    assert len(thinking) == 1 and thinking[0]["metadata"]["status"] == "pending"
    assert "$x=2$" in thinking[0]["content"]
    done = view.stream_messages("Let x=2.</think>The answer is $\\boxed{2}$.", "zh")
    assert [m.get("metadata", {}).get("status") for m in done] == ["done", None]
    assert done[0]["metadata"]["title"] == t("thinking", "zh") and "\\boxed{2}" in done[1]["content"]
    assert view.stream_messages("", "en")[0]["content"] == "…"


def test_result_messages_for_a_reply_cut_off_while_thinking():
    msgs = view.result_messages("still thinking", "still thinking", "en")
    assert msgs[0]["metadata"]["status"] == "done"
    assert msgs[1]["content"] == t("no_answer", "en")
    assert view.result_messages("", "Correct!", "en") == [{"role": "assistant", "content": "Correct!"}]


def test_answer_box_renders_plain_math_boxed():
    assert "$\\boxed{x=2}$" in view.answer_markdown("x=2", "en")
    assert "$\\boxed{\\frac{1}{2}}$" in view.answer_markdown("\\frac{1}{2}", "en")
    assert "\\boxed" not in view.answer_markdown("二氧化碳", "zh")
    assert t("no_final", "en") in view.answer_markdown("", "en")
    box = view.answer_box("Solve $x^2=4$.", "2", "en")
    assert box.startswith("**Problem:** Solve $x^2=4$.") and "$\\boxed{2}$" in box


def _cand(i, answer, group=None, reward=None):
    return SimpleNamespace(index=i, answer=answer, group=group, reward=reward, tokens=10 + i, finish_reason="stop")


def test_live_rendering_of_a_stream_equals_rendering_it_whole():
    """view.LiveText renders only what is new, with exactly to_markdown's result at every step (random
    streams of prose, math, code and stray delimiters), and does keep finished paragraphs."""
    import random

    from tutor.render import to_markdown

    pieces = ["We have ", "$x^2$", " and ", "$", "\\(a<b\\)", "\\[f(x)\\]", "\n\n", "\n\n", "\n", "so ",
              "\\boxed{2}", "`code`", "$$y$$", "5", "{", "}", " $5 or $10", "\\", "<b>", "\n```\nx\n```\n", "\\)",
              "``", "~~~", "\\fbox{", "\\boxed{", "\\$", "a_1 * b_2"]
    rng, kept = random.Random(0), 0
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(5, 120)))
        live, i = view.LiveText(), 0
        while i < len(text):
            i += rng.randint(1, 12)
            assert live.render(text[:i]) == to_markdown(text[:i]), text[:i]
        kept += bool(live._raw)
        assert live.render("another text") == to_markdown("another text")  # not a continuation: whole
    assert kept > 50  # finished paragraphs were kept in a good share of the streams
    raw = "Let $x=1$.\n\nThen $y=2$.\n\nSo</think>The answer is $\\boxed{2}$."
    live = view.LiveRender()
    for i in range(1, len(raw) + 1):
        assert view.stream_messages(raw[:i], "en", live) == view.stream_messages(raw[:i], "en")


def test_candidate_table_and_why_chosen():
    cands = [_cand(0, "3", 1), _cand(1, "2", 0), _cand(2, "2", 0), _cand(3, "")]
    rows = view.candidate_rows(cands, 1, "en")
    assert rows[1] == [2, "2", "", 1, 11, "stop", "✓"] and rows[3][1] == "—" and rows[0][-1] == ""
    assert view.explain_choice(cands, 1, "en") == t("why_group", "en", i=2, k=2, n=4)
    scored = [_cand(0, "2", 0, 0.5), _cand(1, "2", 0, 1.75), _cand(2, "5", 1, 3.0)]
    assert view.candidate_rows(scored, 1, "en")[1][2] == "1.75"
    assert "1.75" in view.explain_choice(scored, 1, "zh") and "3 个里有 2 个" in view.explain_choice(scored, 1, "zh")
    assert view.explain_choice([_cand(0, "")], 0, "en") == t("why_none", "en", i=1)
    assert view.candidate_headers("zh")[1] == "最终答案"


def test_history_caption():
    from datetime import datetime

    s = SimpleNamespace(id=7123, number=7, subject="physics", created_at=datetime(2026, 5, 1, 9, 30))
    assert view.history_caption(s, "ABD", "en") == "#7 · Physics · ABD · 2026-05-01 09:30"  # the visitor's #, not the id
    assert view.history_caption(s, None, "zh") == "#7 · 物理 · 2026-05-01 09:30"
    assert "…" in view.history_caption(s, "x" * 40, "en")


def test_the_students_text_is_shown_as_text_with_its_math():
    """HTML and Markdown typed by the student reach the page as text (entities), math still renders;
    the model's own text keeps its Markdown but builds no HTML."""
    [msg] = view.user_messages("Solve $x<3$: <img src=x> x<y>z, 2*3*4 [1] #2")
    md = msg["content"]
    assert "<img" not in md and "<y>" not in md and "&lt;img src=x&gt;" in md and "x&lt;y&gt;z" in md
    assert "$x\\lt 3$" in md and "2&#42;3&#42;4" in md and "&#91;1&#93;" in md and "&#35;2" in md
    assert "\\[" not in md  # a backslash before "[" would open display math
    q = view.question_markdown("<b>bold?</b> $\\frac{1}{2}$", "en")
    assert q.startswith("**Problem:** &lt;b&gt;bold?&lt;/b&gt; $\\frac{1}{2}$")
    # the model's text keeps its Markdown; its HTML is shown as text (issue 22: tests/security/)
    assert view.result_messages("", "**bold** <br>", "en")[0]["content"] == "**bold** &lt;br>"


def test_export_shows_the_students_html_as_text_and_the_visitors_number():
    from datetime import UTC, datetime

    from tutor.render import export_problem_html

    p = SimpleNamespace(id=9123, number=3, question="<img src=x onerror=alert(1)> x<y>z $x^2$", lang="en",
                        subject="math", attempts=(), created_at=datetime.now(UTC))
    page = export_problem_html(view.export_payload(p, []))
    assert "R1V Tutor #3" in page and "#9123" not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "x&lt;y&gt;z" in page
    assert "<math" in page


# ------------------------------------------------------------------- the page, through gradio_client


@pytest.fixture(scope="module")
def tiny_engine():
    from engine.core import Engine

    return Engine("tiny-random")


@pytest.fixture(scope="module")
def running(tiny_engine, tmp_path_factory):
    """The app launched in process on tiny-random, with its own store; yields (url, demo, store)."""
    from app import build_app, launch_kwargs
    from tutor.store import Store

    root = tmp_path_factory.mktemp("app")
    store = Store(f"sqlite:///{root / 'r1v.db'}", image_dir=root / "images")
    cfg = AppConfig(max_new_tokens=16)
    demo = build_app(engine=tiny_engine, store=store, cfg=cfg)
    demo.queue(max_size=8, default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
    yield url, demo, store
    demo.close()
    store.close()


def _editor(path):
    from gradio_client import handle_file

    return {"background": handle_file(path), "layers": [], "composite": handle_file(path)}


def _texts(chat):
    out = []
    for m in chat or []:
        for part in m["content"]:
            if part.get("type") == "text":
                out.append(part["text"])
    return out


def test_submit_an_example_streams_and_is_stored_for_that_visitor_only(running):
    from gradio_client import Client

    url, demo, store = running
    client = Client(url, verbose=False)  # one visitor: the cookie its first /config got (tests/visitor.py)
    a_id = store_id(client)
    job = client.submit("en", _editor(EXAMPLE), [], "Find $x$ if $x^2=4$.", "math", "auto", "en", 2,
                        api_name="/ask")
    outputs = list(job)
    assert job.status().success
    outputs = job.outputs()
    # Streamed: the problem echo first, then a thinking block still open, then the finished turn.
    assert len(outputs) >= 3
    statuses = [m["metadata"]["status"] for o in outputs for m in o[0] if m.get("metadata")]
    assert "pending" in statuses and statuses[-1] == "done"
    chat, status, answer, cands = outputs[-1][:4]
    assert chat[0]["role"] == "user" and chat[0]["content"][0]["type"] == "file"
    assert "Find $x$ if $x^2=4$." in _texts(chat)
    assert status.startswith("Done in"), status
    assert answer.startswith("**Problem:** Find $x$")
    assert len(cands["data"]) == 2 and sum(r[-1] == "✓" for r in cands["data"]) == 1

    mine = store.list_problems(a_id)
    assert len(mine) == 1 and mine[0].question == "Find $x$ if $x^2=4$." and mine[0].n_images == 1
    p = store.get_problem(a_id, mine[0].id)
    solve = [a for a in p.attempts if a.mode == "solve"]
    assert solve and solve[-1].status == "done" and len(solve[-1].candidates) == 2
    other = Client(url, verbose=False)
    assert store.list_problems(store_id(other)) == []
    with pytest.raises(TutorError):
        store.get_problem(store_id(other), mine[0].id)
    gallery_b = other.predict("en", api_name="/history")
    gallery_a = same_visitor(url, client).predict("en", api_name="/history")
    assert gallery_b == [] and len(gallery_a) == 1 and gallery_a[0]["caption"].startswith("#1 · Math")
    assert mine[0].number == 1  # the visitor's own first problem, whatever the id


def test_bad_input_becomes_a_page_message_not_a_traceback(running):
    from gradio_client import Client

    url, demo, store = running
    client = Client(url, verbose=False)
    out = client.predict("zh", None, [], "", "math", "auto", "zh", 1, api_name="/ask")
    assert t("need_input", "zh") in out[1]
    out = client.predict("en", None, [], "x" * 50_000, "math", "auto", "en", 1, api_name="/ask")
    assert out[1].startswith("⚠️ ") and "Traceback" not in out[1] and re.search(r"long|characters", out[1])
    assert store.list_problems(store_id(client)) == []
    out = client.predict("en", [], 1, "", None, "", api_name="/hint")  # no problem in this session
    assert t("no_problem", "en") in out[1]


# -------------------------------------------------------------------------- stop reaches the engine


class _SlowEngine:
    """Streams one token every 10 ms until its stop event is set (then finishes as stopped)."""

    name = "slow"

    def __init__(self):
        self.saw_stop = threading.Event()

    def stream(self, images, *, messages=None, n=1, sampling=None, stop=None):
        from engine.core import Candidate, Delta, Finished, Solution

        for _ in range(2000):
            if stop.is_set():
                self.saw_stop.set()
                break
            yield Delta(0, "think ")
            time.sleep(0.01)
        c = Candidate(0, "think", "", "", 5, "stopped", True)
        yield Finished(Solution([c], 0, self.name, 1, stopped=True))

    def stop(self):
        pass


def test_stop_button_stops_the_engine(tmp_path):
    from PIL import Image

    from app import TutorApp
    from tutor.store import Store

    eng = _SlowEngine()
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", image_dir=tmp_path / "img")
    tapp = TutorApp(make_engine(AppConfig(), eng), store, AppConfig())
    req = fake_request("v1", "s1")
    img = Image.new("RGB", (200, 120), "white")
    gen = tapp.run_mode("ask", "en", None, [], req, image=img, photos=[], question="", subject="math",
                        ptype="auto", reply_lang="en", n=1)
    seen = []
    for out in gen:
        seen.append(out)
        if len(seen) == 3:
            tapp.stop(req)  # what the Stop button calls
    assert eng.saw_stop.is_set()
    assert seen[-1]["status"] == t("stopped", "en")
    p = store.get_problem("v:v1", store.list_problems("v:v1")[0].id)
    assert p.attempts[-1].status == "stopped"
    store.close()


def test_every_component_uses_a_stock_gradio_frontend(running):
    """A subclassed component must name its Gradio parent's frontend: otherwise the browser asks for a
    custom component that does not exist and the page never finishes loading (gradio_client does not
    notice; a browser does)."""
    import gradio as gr
    import requests

    url, demo, _ = running
    config = requests.get(url.rstrip("/") + "/config", timeout=30).json()
    types = {c["type"] for c in config["components"]}
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    stock = {c.__name__.lower() for c in subclasses(gr.blocks.Block) if c.__module__.startswith("gradio.")}
    assert types <= stock, types - stock
    assert {"image", "imageeditor", "gallery"} <= types


# ------------------------------------------------------------------ what a streamed update costs


def test_history_items_match_reading_every_problem(tmp_path):
    """The history list's one-pass query gives what reading each problem in full gives."""
    from PIL import Image

    from tutor.intake import load_image
    from tutor.store import Store

    store = Store(f"sqlite:///{tmp_path / 'h.db'}", image_dir=tmp_path / "img")
    photo = load_image(Image.new("RGB", (120, 90), "white"))
    p1 = store.add_problem("u", question="two solves", images=[photo])
    for answers, chosen in ((["1", "2"], 1), (["3", "4"], 0)):
        a = store.add_attempt("u", p1, mode="solve", model="m", backend="b")
        store.add_candidates("u", a, [{"text": x, "thinking": "", "answer": x} for x in answers], chosen=chosen)
    hint = store.add_attempt("u", p1, mode="hint", model="m", backend="b")
    store.add_candidates("u", hint, [{"text": "h", "thinking": "", "answer": "9"}], chosen=0)
    p2 = store.add_problem("u", question="no photo, no answer")
    a = store.add_attempt("u", p2, mode="solve", model="m", backend="b")
    store.add_candidates("u", a, [{"text": "t", "thinking": "", "answer": ""}], chosen=0)
    p3 = store.add_problem("u", question="later solve gave no answer", images=[photo, photo])
    for answer in ("7", ""):
        a = store.add_attempt("u", p3, mode="solve", model="m", backend="b")
        store.add_candidates("u", a, [{"text": "t", "thinking": "", "answer": answer}], chosen=0)
    store.add_problem("someone-else", question="not listed", images=[photo])

    items = store.history_items("u")
    assert [s.id for s, _, _ in items] == [p.id for p in store.list_problems("u", limit=30)] == [p3, p2, p1]
    for summary, first, answer in items:
        full = store.get_problem("u", summary.id)
        assert first == (full.images[0].path if full.images else None)
        assert answer == view.latest_answer(full)
    assert [a for _, _, a in items] == ["7", None, "3"]
    assert store.history_items("nobody") == []
    store.close()


def test_skipped_outputs_are_answered_as_gradio_answers_them(running):
    """webui.blocks.Blocks sends "no change" for the fields a streamed update leaves out without
    rebuilding those components, and sends exactly what Gradio itself sends."""
    import asyncio

    import gradio as gr
    from gradio.state_holder import SessionState

    url, demo, store = running
    fn = next(f for f in demo.fns.values() if f.api_name == "ask")
    chat, status = fn.outputs[:2]
    value = view.user_messages("Find $x$.", [EXAMPLE]) + view.stream_messages("Let x be", "en")

    async def both(pred):
        ours = await demo.postprocess_data(fn, pred, SessionState(demo))
        stock = await gr.Blocks.postprocess_data(demo, fn, pred, SessionState(demo))
        return ours, stock

    ours, stock = asyncio.run(both({chat: value, status: "Thinking"}))
    assert ours == stock and ours[2:] == [None if b.stateful else {"__type__": "update"} for b in fn.outputs[2:]]
    ours, stock = asyncio.run(both(gr.skip()))
    assert ours == stock
    one = [gr.skip()] * len(fn.outputs)
    one[1] = "only the status"
    ours, stock = asyncio.run(both(one))
    assert ours == stock and ours[1] == "only the status"


def test_a_photo_in_the_chat_is_hashed_once(running, tmp_path, monkeypatch):
    """Every streamed update re-sends the chat with the student's photo; Gradio would hash the file
    each time to find its cached copy. A changed file is hashed (and cached) again."""
    import shutil

    from gradio import processing_utils

    url, demo, store = running
    chat = next(f for f in demo.fns.values() if f.api_name == "ask").outputs[0]
    photo = tmp_path / "photo.jpg"
    shutil.copy(EXAMPLE, photo)
    hashed = []
    real = processing_utils.hash_file
    monkeypatch.setattr(processing_utils, "hash_file", lambda p, *a, **k: hashed.append(p) or real(p, *a, **k))
    first = chat.move_resource_to_block_cache(str(photo))
    assert len(hashed) == 1
    assert chat.move_resource_to_block_cache(str(photo)) == first and len(hashed) == 1
    photo.write_bytes(photo.read_bytes() + b"\0")
    again = chat.move_resource_to_block_cache(str(photo))
    assert len(hashed) == 2 and again != first


def test_a_new_problem_is_solved_without_reading_its_photo_back(tmp_path, monkeypatch):
    """The photos of a new problem are kept decoded (by content hash) for its turns."""
    from PIL import Image

    import tutor.session as session
    from tutor.intake import load_image
    from tutor.store import Store

    store = Store(f"sqlite:///{tmp_path / 'h.db'}", image_dir=tmp_path / "img")
    photo = load_image(Image.new("RGB", (120, 90), "white"))
    tutor = session.Tutor(_SlowEngine(), store)
    pid = tutor.new_problem("u", [photo], "q", lang="en")
    reads = []
    monkeypatch.setattr(session, "load_image", lambda p, **k: reads.append(p) or load_image(p, **k))
    assert tutor._images(store.get_problem("u", pid))[0] is photo.image and reads == []
    fresh = session.Tutor(_SlowEngine(), store)  # another process: reads the stored photo once
    first = fresh._images(store.get_problem("u", pid))[0]
    assert len(reads) == 1 and fresh._images(store.get_problem("u", pid))[0] is first and len(reads) == 1
    stored = store.get_problem("u", pid).images[0].path  # written by the store (fast PNG): still lossless
    assert stored.parent.parent == store.image_dir and load_image(stored).sha256 == photo.sha256
    assert stored.name != f"{photo.sha256}.png"  # named per visitor (tutor.uploads), not by content alone
    assert list(first.getdata()) == list(photo.image.getdata())
    store.close()


def test_reward_model_defaults_to_minis_own_only_for_mini():
    from webui.config import LazyEngine, parse_config, pick_reward

    mini, tiny = LazyEngine("local", "mini"), LazyEngine("local", "tiny-random")
    assert pick_reward(parse_config([], env={}), mini) == "mini-reward"
    assert pick_reward(parse_config([], env={}), tiny) is None
    assert pick_reward(parse_config(["--reward", "none"], env={}), mini) is None
    assert pick_reward(parse_config([], env={"R1V_REWARD": "/models/rm"}), tiny) == "/models/rm"


# ------------------------------------------------------------- delete asks first; upload-time checks


def _bare_app(tmp_path):
    from app import TutorApp
    from tutor.store import Store

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", image_dir=tmp_path / "img")
    return TutorApp(make_engine(AppConfig(), SimpleNamespace(name="x", stop=lambda: None)), store, AppConfig())


def test_delete_asks_first_then_clears_the_problem_its_export_and_the_answer_panel(tmp_path):
    tapp = _bare_app(tmp_path)
    req = fake_request("v-del", "s-del")
    store = tapp.store
    store.add_problem("someone", question="not mine")
    p1, p2 = (store.add_problem("v:v-del", question=f"q{i}") for i in range(2))
    upd, _ = tapp.export("zh", p2, req)
    assert upd["visible"] and "r1v-problem-2-" in upd["value"]  # the file is named by the visitor's #2

    hist, ids, pid, chat, msg, answer, export, pending, button = tapp.delete("zh", p2, None, req)
    assert msg == t("delete_confirm", "zh", n=2) == "删除 #2？再点一次确认。" and pending == p2
    assert button["value"] == t("delete_again", "zh", n=2) and pid == gr_skip()
    assert len(store.list_problems("v:v-del")) == 2  # nothing deleted yet

    hist, ids, pid, chat, msg, answer, export, pending, button = tapp.delete("en", p2, p2, req)
    assert msg == "Deleted #2." and pending is None and pid is None and chat == [] and answer == ""
    assert export["visible"] is False and export["value"] is None and button["value"] == t("delete", "en")
    assert ids == [p1] and [c for _, c in hist][0].startswith("#1 ·")
    p3 = store.add_problem("v:v-del", question="after the delete")
    assert store.get_problem("v:v-del", p3).number == 3  # #2 is not given again

    # a confirmation for another problem than the one asked about asks again
    assert tapp.delete("en", p1, p3, req)[4] == t("delete_confirm", "en", n=1)
    assert tapp.delete("en", None, None, req)[4] == t("pick_first", "en")
    tapp.store.close()


def gr_skip():
    import gradio as gr

    return gr.skip()


def test_upload_checks_name_a_bad_photo_at_once(tmp_path, monkeypatch):
    """The hidden upload's handler (a file the browser could not draw) warns with the intake's message
    in the page language and leaves the editor alone; a photo the intake reads (HEIC) goes into the
    editor as the intake's picture. The work photo's handler warns and clears a refused file."""
    from pathlib import Path

    import gradio as gr
    from gradio import utils as gr_utils
    from PIL import Image

    from tutor.errors import InputError
    from webui import upload_check
    from webui.components import Refused

    warned: list[str] = []
    monkeypatch.setattr(gr, "Warning", lambda msg, *a, **k: warned.append(msg))
    folder = Path(gr_utils.get_upload_folder()) / "r1v-test-upload-check"
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "homework.png"
    text.write_text("my notes", encoding="utf-8")
    editor, box = upload_check.check_photo_file(str(text), "zh")
    assert editor == gr_skip() and box is None
    assert warned == ["这个文件不是图片，请上传照片（JPEG、PNG、WebP、HEIC、BMP 或 GIF）。"]

    outside = tmp_path / "elsewhere.png"  # not an upload: never read
    Image.new("RGB", (64, 64)).save(outside)
    assert upload_check.check_photo_file(str(outside), "en")[0] == gr_skip()
    assert "not uploaded" in warned[-1]

    heic = folder / "iphone.heic"
    Image.new("RGB", (200, 120), (10, 200, 30)).save(heic, format="HEIF")
    editor, box = upload_check.check_photo_file(str(heic), "en")
    assert editor["composite"].size == (200, 120) and editor["composite"].getpixel((5, 5))[1] > 150

    refused = Refused(InputError("image_too_small", "Too small.", "太小了。"))
    assert upload_check.check_work_photo(refused, "zh") is None and warned[-1] == "太小了。"
    assert upload_check.check_work_photo(Image.new("RGB", (64, 64)), "zh") == gr_skip()
