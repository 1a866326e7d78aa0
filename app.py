"""R1V Tutor web app (Gradio 6): photo in, reasoning and worked answer out.

    python app.py [--model PRESET] [--server URL] [--n N] [--host H] [--port P] [--share]
    python app.py --model r1v2-38b-awq [--local-engine sglang|vllm|none] [--engine-python PY]
                                                # the serving engine as the app's child (engine.local)

(all flags and their R1V_* environment variables: ``webui/config.py``). In a test or a notebook::

    from app import build_app, launch_kwargs
    demo = build_app(engine=my_engine, store=my_store)
    demo.queue().launch(prevent_thread_lock=True, **launch_kwargs())

Layout and wiring only: the handlers are ``webui.handlers.TutorApp``, tutoring logic is in ``tutor/`` (``tutor.session.Tutor``), models in
``engine/``, the page's pure helpers (strings, message building, tables) and its guarded input components in ``webui/``. A visitor
is identified by a signed HttpOnly cookie the server sets (``webui.identity``; never in page state) or
by their Hugging Face login on a Space with OAuth; every store call is scoped to that id. No handler ever lets an exception reach the
page: a ``TutorError`` becomes its message in the page language, anything else a generic message and
a log line.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from tutor import mathcheck, settings
from tutor.errors import EngineError, InputError
from tutor.intake import load_image
from tutor.store import Store
from webui import layout, locale, space, upload_limits, view
from webui.blocks import Blocks
from webui.budget import budget_slider
from webui.components import (
    PRIVATE_DIRS,
    Chatbot,
    Gallery,
    Refused,
    SafeGallery,
    SafeImage,
    SafeImageEditor,
    editor_image,
    not_uploaded,
    rotate,
    uploaded,
)
from webui.config import AppConfig, make_engine, parse_config
from webui.example_table import example_table, picked, table_update
from webui.files import cache_dir, delete_cache, sweep
from webui.handlers import EXPORTS, TutorApp
from webui.i18n import choices, lang_from_header, norm_lang, t
from webui.identity import Identity
from webui.legacy_id import migrate
from webui.relang import relang_answer, relang_chat, retranslate
from webui.startup import open_store
from webui.upload_check import PHOTO_TOOLS, wire_upload_checks

log = logging.getLogger("r1v.app")

CSS = """
#r1v-answer {font-size: 1.1em}
#r1v-ask-btn, #r1v-stop-btn {min-width: 6em}
@media (max-width: 640px) { .gradio-container {padding: 6px !important} }
"""

def build_app(engine: Any = None, store: Store | None = None, cfg: AppConfig | None = None,
              identity: Identity | None = None) -> gr.Blocks:
    """The page. ``engine``: any engine (default: chosen from ``cfg``, loaded lazily); ``store``:
    default ``Store()`` on ``R1V_DB_URL``; ``identity``: the visitor cookie (default
    ``Identity.shared()``; launch with the same one in ``launch_kwargs``)."""
    cfg = cfg or AppConfig()
    app = TutorApp(make_engine(cfg, engine), store or Store(), cfg, identity)
    PRIVATE_DIRS.update({app.store.image_dir.resolve(), settings.data_dir().resolve()})
    upload_limits.install()  # at most MAX_IMAGES files per upload request, refused before saving
    L: list[tuple[Any, str, str]] = []  # (component, string key, attribute) relabelled with the language

    def lab(comp: Any, key: str, attr: str = "label") -> Any:
        L.append((comp, key, attr))
        if attr != "value":
            setattr(comp, attr, t(key, "zh"))  # the first render; on_load switches to the visitor's language
        return comp

    with Blocks(title="R1V Tutor", delete_cache=delete_cache()) as demo:
        demo.temp_file_sets.append(app.written)  # exports and added photos age out with Gradio's own files
        # the page language only (nothing identifying): its key need not be secret
        lang_store = gr.BrowserState("", storage_key="r1v_ui_lang", secret="r1v-page-language")
        legacy = gr.Textbox("", visible=False)  # the old page's stored visitor id, sent once (webui.legacy_id)
        pid, attempt, practice = gr.State(None), gr.State(None), gr.State(None)
        pending_delete = gr.State(None)  # the problem a first click on Delete asked about
        hist_ids = gr.State([])
        with gr.Row():
            lab(gr.Markdown(f"## {t('title', 'zh')}\n{t('tagline', 'zh')}"), "header", "value")
            ui_lang = lab(gr.Radio([("中文", "zh"), ("English", "en")], value=None, show_label=False,  # on_load sets it
                                   scale=0, min_width=160, elem_id="r1v-ui-lang"), "ui_lang")  # named, not "Radio"
            if os.environ.get("OAUTH_CLIENT_ID"):
                gr.LoginButton(scale=0)
        banner = gr.Markdown(elem_id="r1v-status-banner")
        layout.banner_timer(app.status_md, ui_lang, banner, app.health)
        with gr.Row(equal_height=False, elem_id="r1v-main"):
            with gr.Column(scale=2, min_width=300, elem_id="r1v-left"):
                editor = lab(SafeImageEditor(type="filepath", sources=("upload", "webcam", "clipboard"), transforms=("crop",),
                                            layers=False, **layout.EDITOR_TOOLS, height=340,
                                            elem_id="r1v-photo"), "photo")
                with gr.Row():
                    rot_l = lab(gr.Button(t("rotate_left", "zh"), size="sm", min_width=80), "rotate_left", "value")
                    rot_r = lab(gr.Button(t("rotate_right", "zh"), size="sm", min_width=80), "rotate_right", "value")
                    add = lab(gr.Button(t("add_photo", "zh"), size="sm", min_width=80), "add_photo", "value")
                photos = lab(SafeGallery(type="filepath", columns=4, height=110, interactive=False,
                                        visible=True, elem_id="r1v-photos"), "photos")
                clear = lab(gr.Button(t("clear_photos", "zh"), size="sm"), "clear_photos", "value")
                question = lab(lab(gr.Textbox(lines=2, max_lines=8, elem_id="r1v-question"), "question"),
                               "question_ph", "placeholder")
                with gr.Row():
                    subject = lab(gr.Dropdown(choices("subject", "zh"), value="math", min_width=120), "subject")
                    ptype = lab(gr.Dropdown(choices("ptype", "zh"), value="auto", min_width=120), "ptype")
                with gr.Row():
                    reply_lang = lab(gr.Radio(choices("lang", "zh"), value="zh", min_width=120), "reply_lang")
                    n = lab(gr.Slider(1, 8, value=cfg.n, step=1, min_width=120, elem_id="r1v-n"), "n")
                budget = lab(lab(budget_slider(cfg, app.engine), "budget"), "budget_info", "info")
                with gr.Row():
                    ask = lab(gr.Button(t("ask", "zh"), variant="primary", elem_id="r1v-ask-btn"), "ask", "value")
                    stop = lab(gr.Button(t("stop", "zh"), variant="stop", elem_id="r1v-stop-btn"), "stop", "value")
                examples = example_table(app.examples)  # sets values only: the labels stay in the page language
            with gr.Column(scale=3, min_width=300, elem_id="r1v-right"):
                chat = lab(Chatbot(height=520, latex_delimiters=view.LATEX_DELIMITERS, elem_id="r1v-chat",
                                   feedback_options=None, buttons=["copy"]), "chat")
                answer = gr.Markdown(latex_delimiters=view.LATEX_DELIMITERS, elem_id="r1v-answer")
                status = gr.Markdown(elem_id="r1v-status")
                with lab(gr.Accordion(open=False, visible=False, elem_id="r1v-cands"), "candidates") as cand_box:
                    cands = gr.Dataframe(headers=view.candidate_headers("zh"), interactive=False, wrap=True)
                    why = gr.Markdown()
                with lab(gr.Accordion(open=True), "tutor_tools"):
                    with gr.Row():
                        hint = lab(gr.Button(t("hint", "zh"), size="sm", min_width=80), "hint", "value")
                        prac = lab(gr.Button(t("practice", "zh"), size="sm", min_width=80), "practice", "value")
                        regen = lab(gr.Button(t("regenerate", "zh"), size="sm", min_width=80), "regenerate", "value")
                    with gr.Row(equal_height=False):
                        my_answer = lab(lab(gr.Textbox(min_width=160), "my_answer"), "my_answer_ph", "placeholder")
                        work = lab(SafeImage(type="filepath", height=170, min_width=160, sources=("upload", "webcam"), elem_id="r1v-work"),
                                   "work_photo")
                    with gr.Row():
                        check = lab(gr.Button(t("check", "zh"), size="sm"), "check", "value")
                        ans_prac = lab(gr.Button(t("answer_practice", "zh"), size="sm", visible=False),
                                       "answer_practice", "value")
                    with gr.Row(equal_height=True):
                        follow = lab(lab(gr.Textbox(scale=4, min_width=160), "followup"), "followup_ph",
                                     "placeholder")
                        send = lab(gr.Button(t("send", "zh"), scale=1, min_width=80), "send", "value")
                lab(gr.Markdown(t("feedback", "zh")), "feedback", "value")
                with gr.Row(equal_height=True):
                    up = gr.Button("👍", size="sm", scale=0, min_width=56, elem_id="r1v-up")
                    down = gr.Button("👎", size="sm", scale=0, min_width=56, elem_id="r1v-down")
                    comment = lab(lab(gr.Textbox(scale=3, min_width=140, show_label=False, container=False,
                                                 elem_id="r1v-comment"), "comment", "placeholder"), "comment")
        with lab(gr.Accordion(open=False, elem_id="r1v-history"), "history"):
            hist = Gallery(columns=4, height="auto", allow_preview=False, object_fit="contain", fit_columns=False,
                           interactive=False, buttons=[], elem_id="r1v-history-list", show_label=False)
            hist_empty = lab(gr.Markdown(t("history_empty", "zh"), elem_id="r1v-history-empty"), "history_empty",
                             "value")
            with gr.Row():
                refresh = lab(gr.Button(t("refresh", "zh"), size="sm"), "refresh", "value")
                delete = lab(gr.Button(t("delete", "zh"), size="sm", variant="stop"), "delete", "value")
                export = lab(gr.Button(t("export", "zh"), size="sm"), "export", "value")
            hist_msg = gr.Markdown()
            export_file = lab(gr.File(visible=False, interactive=False), "export_file")

        # -- wiring ---------------------------------------------------------------------------------
        keys = {"chat": chat, "status": status, "answer": answer, "cands": cands, "why": why, "pid": pid,
                "attempt": attempt, "practice": practice}
        turn_outputs = [*keys.values(), cand_box, ans_prac, hist, hist_ids, up, down]

        def to_updates(out: dict) -> dict:
            upd = {keys[k]: v for k, v in out.items() if k in keys}
            if "many" in out:
                upd[cand_box] = gr.update(visible=out["many"])
            if "practice" in out:
                upd[ans_prac] = gr.update(visible=out["practice"] is not None)
            if "history" in out:
                upd[hist], upd[hist_ids] = out["history"]
            if "attempt" in out:  # a new attempt: no vote on it yet
                upd[up], upd[down] = layout.feedback_reset()
            return upd

        def on_ask(ui_lang, image, gallery, q, subj, pt, rl, k, request: gr.Request):
            paths = [g[0] if isinstance(g, tuple | list) else g for g in (gallery or [])]
            paths = [p if isinstance(p, Refused) or uploaded(p) else Refused(not_uploaded(p)) for p in paths]
            for out in app.run_mode("ask", ui_lang, None, [], request, image=image,
                                    photos=paths, question=q or "", subject=subj, ptype=pt, reply_lang=rl, n=k):
                yield to_updates(out)

        def mode_fn(mode: str):
            def fn(ui_lang, pid_, chat_, k, ans, wk, msg, request: gr.Request):
                for out in app.run_mode(mode, ui_lang, pid_, chat_, request, n=k, answer=ans or "",
                                        work=wk, message=msg or "", regen=True):
                    yield to_updates(out)
            return fn

        lim = cfg.engine_concurrency
        ask.click(on_ask, [ui_lang, editor, photos, question, subject, ptype, reply_lang, n],
                           turn_outputs, api_name="ask", concurrency_limit=lim, concurrency_id="engine",
                           show_progress="minimal")
        mode_inputs = [ui_lang, pid, chat, n, my_answer, work, follow]
        for btn, mode in ((hint, "hint"), (prac, "practice"), (regen, "solve"), (check, "check"), (send, "followup")):
            btn.click(mode_fn(mode), mode_inputs, turn_outputs, api_name=mode if mode != "solve" else "regenerate",
                      concurrency_limit=lim, concurrency_id="engine", show_progress="minimal")
        follow.submit(mode_fn("followup"), mode_inputs, turn_outputs, api_visibility="private",
                      concurrency_limit=lim, concurrency_id="engine")
        layout.scroll_to_chat(ask, hint, prac, regen, check, send, follow)
        layout.clear_on_send(send, follow)
        layout.name_photo_tool(demo)
        stop.click(app.stop, None, None, queue=False, api_name="stop")
        budget.input(app.set_budget, [budget, ui_lang], status, queue=False, api_name="set_budget")
        ans_prac.click(app.answer_practice, [ui_lang, pid, practice, my_answer, chat], [chat, status])

        def fb_up(ui_lang, att, text, request: gr.Request):
            msg, box = app.feedback(True, ui_lang, att, text, request)
            return msg, box, *layout.feedback_states(msg == t("thanks", norm_lang(ui_lang)), True)

        def fb_down(ui_lang, att, text, request: gr.Request):
            msg, box = app.feedback(False, ui_lang, att, text, request)
            return msg, box, *layout.feedback_states(msg == t("thanks", norm_lang(ui_lang)), False)

        fb_inputs = [ui_lang, attempt, comment]
        up.click(fb_up, fb_inputs, [status, comment, up, down], api_name="feedback_up")
        down.click(fb_down, fb_inputs, [status, comment, up, down], api_name="feedback_down")

        photo_tool = {"concurrency_limit": 1, "concurrency_id": PHOTO_TOOLS}  # one photo decoded at a time
        rot_l.click(lambda v: rotate(v, 90), editor, editor, api_visibility="private", **photo_tool)
        rot_r.click(lambda v: rotate(v, -90), editor, editor, api_visibility="private", **photo_tool)

        def add_photo(value, gallery):
            try:
                img = editor_image(value)
                if img is None:
                    return gr.skip(), gr.skip()
                path = app.export_dir / f"photo-{uuid.uuid4().hex}.png"
                load_image(img).image.save(path)
                app.written.add(str(path))
            except InputError as e:
                gr.Warning(e.message("en"))
                return gr.skip(), gr.skip()
            return [*(g[0] if isinstance(g, tuple | list) else g for g in (gallery or [])), str(path)], None

        add.click(add_photo, [editor, photos], [photos, editor], api_visibility="private", **photo_tool)
        clear.click(lambda: ([], None), None, [photos, editor], api_visibility="private")

        def history_fn(ui_lang, request: gr.Request):
            return app.visitor_history(norm_lang(ui_lang), request)

        refresh.click(history_fn, [ui_lang], [hist, hist_ids], api_name="history")
        hist.select(app.reopen, [ui_lang, hist_ids], [pid, chat, answer, hist_msg])
        delete.click(app.delete, [ui_lang, pid, pending_delete],
                     [hist, hist_ids, pid, chat, hist_msg, answer, export_file, pending_delete, delete])
        # another problem open: no pending delete, and no export link of the one before
        pid.change(lambda lang: (None, gr.update(value=t("delete", norm_lang(lang))), gr.update(visible=False)),
                   ui_lang, [pending_delete, delete, export_file], api_visibility="private", show_progress="hidden")
        wire_upload_checks(demo, editor, work, ui_lang)  # a bad photo is named when chosen, not at Solve
        export.click(app.export, [ui_lang, pid], [export_file, hist_msg])
        hist.change(layout.empty_note, [hist, ui_lang], hist_empty, queue=False, api_visibility="private",
                    show_progress="hidden")
        examples.click(lambda i: picked(app.examples, i), examples, [editor, subject, ptype], api_visibility="private",
                       show_progress="hidden")

        # -- language and first load ----------------------------------------------------------------
        labelled = [c for c, _, _ in L]

        def relabel(lang: str) -> dict:
            upd: dict[Any, dict] = {}
            for comp, key, attr in L:
                text = f"## {t('title', lang)}\n{t('tagline', lang)}" if key == "header" else t(key, lang)
                upd.setdefault(comp, {})[attr] = text
            for comp, kind in ((subject, "subject"), (ptype, "ptype"), (reply_lang, "lang")):
                upd[comp]["choices"] = choices(kind, lang)
            upd[cands] = {"headers": view.candidate_headers(lang)}
            return {examples: table_update(app.examples, lang), **{c: gr.update(**u) for c, u in upd.items()}}

        def set_lang(lang, chat_, status_, answer_, msg_, request: gr.Request):
            lang = norm_lang(lang)
            items, ids = app.visitor_history(lang, request)
            shown = {answer: relang_answer(answer_, lang), status: retranslate(status_, lang) or "",  # already shown
                     hist_msg: retranslate(msg_, lang) or "",
                     chat: gr.update(value=relang_chat(chat_, lang), label=t("chat", lang))}
            return {lang_store: lang, banner: app.status_md(lang), hist: items, hist_ids: ids, **relabel(lang),
                    **shown}

        lang_outputs = [lang_store, banner, hist, hist_ids, cands, examples, *labelled]
        ui_lang.change(set_lang, [ui_lang, chat, status, answer, hist_msg],
                       [*lang_outputs, status, answer, hist_msg], api_visibility="private",
                       show_progress="hidden").then(None, ui_lang, None, js=locale.SYNC_JS)  # Gradio's own strings

        def on_load(old_blob, stored_lang, request: gr.Request):
            lang = norm_lang(stored_lang) if stored_lang else lang_from_header(request.headers.get("accept-language"))
            migrate(app.store, old_blob, lambda: app.user(request))
            items, ids = app.visitor_history(lang, request)
            upd = relabel(lang)
            upd[reply_lang] = gr.update(value=lang, choices=choices("lang", lang), label=t("reply_lang", lang))
            upd[ui_lang] = gr.update(value=lang, label=t("ui_lang", lang))  # not only its label
            return {legacy: "", ui_lang: lang, lang_store: lang, banner: app.status_md(lang),
                    hist: items, hist_ids: ids, **upd}

        demo.load(on_load, [legacy, lang_store], [legacy, ui_lang, reply_lang, *lang_outputs], js=locale.LOAD_JS,
                  api_visibility="private", show_progress="hidden").then(None, js=locale.FORGET_OLD_ID_JS)
    demo.r1v = app  # type: ignore[attr-defined] - tests reach the store and engine through this
    return demo


def launch_kwargs(cfg: AppConfig | None = None, store: Store | None = None, identity: Identity | None = None) -> dict:
    """Arguments for ``demo.launch``: theme and css (Gradio 6 takes them here), upload limit, paths,
    the visitor cookie's middleware (``identity``, default ``Identity.shared()``), no run history
    (Gradio would keep each call's inputs and outputs in localStorage), monitoring only with a token."""
    identity = identity or Identity.shared()
    cfg = cfg or AppConfig()
    # Only the photo store is served from disk (files named by a 256-bit content hash). Never the data
    # directory or the temp directory as a whole: /gradio_api/file=<data>/r1v.db would hand out
    # everyone's history. Outputs elsewhere (exports, thumbnails) reach the page through Gradio's cache.
    image_dir = store.image_dir if store is not None else settings.data_dir() / "images"
    blocked = [str(settings.data_dir() / "browser_secret"), str(settings.data_dir() / "cookie_secret"),
               str(Path(image_dir).resolve().parent / "photo_key")]
    url = store.url if store is not None else settings.db_url()
    if url.startswith("sqlite:///"):
        db = url.removeprefix("sqlite:///")
        blocked += [db, db + "-wal", db + "-shm"]
    return {"theme": gr.themes.Soft(), "css": CSS + layout.CSS + locale.CSS, "max_file_size": cfg.max_upload,
            "allowed_paths": [str(image_dir)], "blocked_paths": blocked, "footer_links": ["api", "gradio"],
            "app_kwargs": {"middleware": [identity.middleware(), locale.middleware(), upload_limits.middleware()]},
            "i18n": locale.gradio_i18n(), "run_history": False, "enable_monitoring": identity.monitoring_token is not None}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("R1V_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    space.import_spaces()  # on ZeroGPU: before anything initialises CUDA (webui.space)
    cfg = parse_config(argv)
    store = open_store()  # checked; a bad database is a clear message and exit status 2, never a traceback
    sweep([cache_dir(), EXPORTS])  # what a killed process left, older than R1V_CACHE_MAX_AGE_S
    if cfg.model and not cfg.server and cfg.local_engine != "none":  # a local server may start (engine.local):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM as a normal exit, whose atexit stops it
    try:
        demo = build_app(store=store, cfg=cfg)
    except EngineError as e:  # a local server that cannot start (engine.local): said once, no traceback
        print(f"{e.en}\n{e.zh}", file=sys.stderr)
        return 2
    if getattr(demo.r1v.engine, "server", None) is None:  # type: ignore[attr-defined]
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # none started: as before
    mathcheck.warm_up()  # sympy loads in the checker's workers while the page starts, not on the first check
    demo.queue(max_size=cfg.queue_size, default_concurrency_limit=cfg.engine_concurrency)
    log.info("R1V Tutor: model %s, http://%s:%d", demo.r1v.engine.name, cfg.host, cfg.port)  # type: ignore[attr-defined]
    demo.launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share, **launch_kwargs(cfg, store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
