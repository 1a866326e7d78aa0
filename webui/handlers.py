"""The page's handlers: ``TutorApp`` holds the one engine, store and tutor of a page and turns each
Gradio event (ask, the tutoring modes, stop, practice, feedback, history, reopen, delete, export)
into store calls and streamed page updates. ``app.py`` builds the layout and wires these to it.

    from webui.handlers import TutorApp
    app = TutorApp(make_engine(cfg), Store(), cfg)      # then app.run_mode("ask", "en", None, [], request, ...)

The visitor of every call is the request's (``webui.identity``: a signed HttpOnly cookie, or the
Hugging Face login); every store call is scoped to it. No handler lets an exception reach the page:
a ``TutorError`` becomes its message in the page language, anything else a generic message and a log
line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from tutor.drills import drill_examples
from tutor.errors import TutorError
from tutor.examples import load_examples
from tutor.intake import load_images
from tutor.limits import (
    MAX_ANSWER_CHARS,
    REQUESTS_PER_MINUTE,
    RateLimiter,
    cap_max_new_tokens,
    check_length,
    check_n,
)
from tutor.render import export_problem_html
from tutor.session import TurnResult, Tutor
from tutor.store import Store
from webui import layout, view
from webui.budget import SessionBudgets
from webui.components import (
    editor_image,
    unrefused,
)
from webui.config import AppConfig, LazyEngine, pick_reward
from webui.files import ProblemFiles
from webui.health import HealthMonitor
from webui.i18n import norm_lang, t
from webui.identity import Identity, public_text, server_urls

log = logging.getLogger("r1v.app")

# Streaming page updates are throttled: each one costs Gradio a full postprocess of the outputs on
# the server (schema, files, configs), which competes with decoding for the CPU and the GIL. An
# update waits at least UPDATE_EVERY_S, and at least UPDATE_COST_FACTOR times what the previous
# update cost (the time from our yield until Gradio asked for the next one), so the page's share of
# the work stays small on a slow machine (bench/app_overhead.py measures it).
UPDATE_EVERY_S = 0.25
UPDATE_COST_FACTOR = 8.0
EXPORTS = Path(tempfile.gettempdir()) / "r1v-exports"  # each run's exported pages and added photos, swept at start


class TutorApp:
    """Handlers of the page, sharing one engine, one store and one tutor."""

    def __init__(self, engine: LazyEngine, store: Store, cfg: AppConfig, identity: Identity | None = None):
        from engine.core import Sampling

        self.engine, self.store, self.cfg = engine, store, cfg
        self.identity = identity or Identity.shared()
        self.tutor = Tutor(engine, store, backend=engine.backend, reward=pick_reward(cfg, engine))
        max_new = cap_max_new_tokens(cfg.max_new_tokens)
        self.sampling = Sampling(max_new_tokens=max_new) if max_new else None
        self.limiter = RateLimiter(int(os.environ.get("R1V_RATE_PER_MINUTE") or REQUESTS_PER_MINUTE))
        # what the caller cannot mint: the client address, with room for a few visitors behind one NAT
        self.addr_limiter = RateLimiter(int(os.environ.get("R1V_RATE_PER_ADDRESS") or 4 * self.limiter.per_minute))
        self.stops: dict[str, threading.Event] = {}
        self.budgets = SessionBudgets()  # the thinking budget each session chose on the page
        self.stop_owner: dict[str, str] = {}  # session -> the visitor whose answer it is
        self.user_stopped: set[str] = set()
        # a small model (preset writes_problems False) gets photos of the drill kinds it can solve
        self.examples = load_examples() if engine.writes_problems else drill_examples()
        EXPORTS.mkdir(parents=True, exist_ok=True)
        self.export_dir = Path(tempfile.mkdtemp(prefix="run-", dir=EXPORTS))
        self.files = ProblemFiles()  # each problem's uploads and exports: Delete removes every copy
        self.written: set[str] = set()  # files this app wrote for the page: removed by Gradio's delete_cache
        self.export_dir = Path(tempfile.mkdtemp(prefix="r1v-export-"))
        self.health = HealthMonitor(engine)  # the server is checked in the background, never on a page load
        self.health.start()

    # -- identity, status -------------------------------------------------------------------------

    def user(self, request: gr.Request | None) -> str:
        """The store id of the request's visitor: their HF login, else their cookie's id (``webui.identity``)."""
        return self.identity.visitor(request)

    def status_md(self, lang: str) -> str:
        h = self.health.health()
        if h.get("checking"):
            health = t("health_checking", lang)
        elif h.get("starting"):
            health = t("health_starting", lang, s=h.get("elapsed_s", 0))
        elif not h.get("ok"):
            health = t("health_bad", lang, msg=public_text(h.get("error_zh" if lang == "zh" else "error", "?"),
                                                           lang, [h.get("url") or "", *server_urls(self.engine)]))
        elif self.engine.kind == "http":
            health = t("health_ok", lang)
        else:
            health = t("health_loaded" if h.get("loaded") else "health_lazy", lang)
        name = self.engine.name if self.engine.kind != "http" or "://" not in self.engine.name else "model server"
        lines = [t("status_model", lang, name=view.as_text(name), backend=self.engine.backend) + f" · {health}"]
        if "tiny-random" in self.engine.name:
            lines.append(t("tiny_banner", lang))
        elif self.engine.name == "mini":
            lines.append(t("mini_banner", lang))
        return "\n\n".join(lines)

    def visitor_history(self, lang: str, request: gr.Request | None) -> tuple[list, list[int]]:
        """``history`` for the visitor of a request; an unidentified request gives an empty history."""
        try:
            user = self.user(request)
        except TutorError as e:
            gr.Warning(self.msg(e, lang))
            return [], []
        return self.history(user, lang)

    def history(self, user: str, lang: str) -> tuple[list, list[int]]:
        items, ids = [], []
        try:
            for s, photo, answer in self.store.history_items(user, limit=30):
                card = layout.history_card(s, photo, answer, lang, layout.thumb_dir(self.store) / str(s.id))
                items.append((card, view.history_caption(s, answer, lang)))
                ids.append(s.id)
        except TutorError as e:
            gr.Warning(self.msg(e, lang))
        return items, ids

    def msg(self, e: TutorError, lang: str) -> str:
        """An error's message for the page: in ``lang``, without the internal model-server address."""
        return public_text(e.message(lang), lang, server_urls(self.engine))

    # -- streaming turns --------------------------------------------------------------------------

    def _turn(self, gen: Iterator[Any], chat: list, lang: str, session: str, question: str = "") -> Iterator[dict]:
        """Drive one tutor mode: stream into the chat, then show the finished turn. Yields field dicts."""
        raw, tokens, t0, last, gap = "", 0, time.perf_counter(), 0.0, UPDATE_EVERY_S
        live = view.LiveRender()  # renders only what is new since the last update
        result: TurnResult | None = None
        try:
            for ev in gen:
                if isinstance(ev, TurnResult):
                    result = ev
                    continue
                tokens += 1
                if getattr(ev, "index", 0) == 0:
                    raw += ev.text
                now = time.perf_counter()
                if tokens == 1:
                    log.debug("first token after %.2f s", now - t0)
                if now - last >= gap or tokens == 1:
                    yield {"chat": chat + view.stream_messages(raw, lang, live),
                           "status": view.progress_text(raw, tokens, lang)}
                    last = time.perf_counter()
                    gap = max(UPDATE_EVERY_S, UPDATE_COST_FACTOR * (last - now))
        except TutorError:
            if raw:  # the engine failed midway: show everything received, not the last throttled update
                yield {"chat": chat + view.stream_messages(raw, lang, live)}
            raise
        secs = time.perf_counter() - t0
        if result is None:  # stopped before the model finished
            yield {"chat": chat + view.stream_messages(raw, lang, live), "status": t("stopped", lang)}
            return
        note = view.budget_note(result.solution, lang)  # out of thinking budget: say so, and what to do
        out: dict[str, Any] = {"chat": chat + view.with_note(view.result_messages(result.thinking, result.text, lang),
                                                             note, lang),
                               "status": t("stopped" if session in self.user_stopped else "done", lang, secs=secs),
                               "result": result}
        sol = result.solution
        if sol is not None and result.mode == "solve":
            out["answer"] = view.answer_box(question, result.answer, lang, note)
            out["cands"] = view.candidate_rows(sol.candidates, sol.chosen, lang)
            out["why"] = "\n\n".join(p for p in (view.explain_choice(sol.candidates, sol.chosen, lang),
                                                    view.solution_notes(sol, lang)) if p)
            out["many"] = len(sol.candidates) > 1
        yield out

    def run_mode(self, mode: str, ui_lang: str, pid: int | None, chat: list | None,
                 request: gr.Request, **kw: Any) -> Iterator[dict]:
        """Any tutor mode on the current problem, with every failure turned into a page message."""
        lang = norm_lang(ui_lang)
        log.debug("%s: start", mode)
        chat = list(chat or [])
        session = getattr(request, "session_hash", None) or uuid.uuid4().hex
        self.stops[session] = threading.Event()
        self.user_stopped.discard(session)
        problem = None  # the stored problem, when this turn already read it
        try:
            user = self.user(request)
            self.stop_owner[session] = user
            if mode in ("ask", "solve"):
                kw["n"] = check_n(1 if kw.get("n") is None else kw["n"])
            sampling = self.budgets.sampling(session, self.sampling, kw.get("budget"))
            self.limiter.hit(user)
            self.addr_limiter.hit(self.identity.address(request))
            if mode == "ask":
                photos = [unrefused(p) for p in kw["photos"]]
                image = editor_image(kw["image"])
                images = load_images([*photos, *([image] if image is not None else [])], lang=lang)
                if not images and not kw["question"].strip():
                    gr.Warning(t("need_input", lang))
                    yield {"status": t("need_input", lang)}
                    return
                pid = self.tutor.new_problem(user, images, kw["question"], subject=kw["subject"],
                                             problem_type=kw["ptype"], lang=kw["reply_lang"])
                self.files.add(pid, *photos, image)
                log.debug("problem %d saved", pid)
                problem = self.store.get_problem(user, pid)
                chat = view.user_messages(kw["question"], [str(i.path) for i in problem.images])
                yield {"pid": pid, "chat": chat, "answer": view.question_markdown(kw["question"], lang),
                       "practice": None, "status": t("thinking_now", lang, tokens=0)}
                mode = "solve"
            elif pid is None:
                gr.Warning(t("no_problem", lang))
                yield {"status": t("no_problem", lang)}
                return
            stop = self.stops[session]
            if mode == "solve":
                chat += view.user_messages(t("regenerate", lang)) if kw.get("regen") else []
                gen = self.tutor.solve(user, pid, n=kw["n"], sampling=sampling, stop=stop)
            elif mode == "hint":
                chat += view.user_messages(t("hint", lang))
                gen = self.tutor.hint(user, pid, sampling=sampling, stop=stop)
            elif mode == "check":
                work = load_images([unrefused(kw["work"])], lang=lang) if kw.get("work") is not None else []
                self.files.add(pid, kw["work"])
                chat += view.user_messages(f"{t('my_answer', lang)}: {kw['answer']}")
                gen = self.tutor.check(user, pid, kw["answer"], work, sampling=sampling, stop=stop)
            elif mode == "followup":
                if not kw["message"].strip():
                    yield {"status": t("need_text", lang)}
                    return
                chat += view.user_messages(kw["message"])
                gen = self.tutor.followup(user, pid, kw["message"], sampling=sampling, stop=stop)
            else:  # practice
                chat += view.user_messages(t("practice", lang))
                gen = self.tutor.practice(user, pid, sampling=sampling, stop=stop)
            question = (problem or self.store.get_problem(user, pid)).question if mode == "solve" else ""
            for out in self._turn(gen, chat, lang, session, question):
                r = out.pop("result", None)
                if r is not None:
                    out["attempt"] = r.attempt_id
                    if r.mode == "check" and r.verdict:  # the status line also says the verdict (tutor.verdict)
                        out["status"] = f"{out.get('status', '')}{' ' if lang == 'en' else ''}{t('verdict_' + r.verdict, lang)}" \
                            + ("." if lang == "en" else "。")
                    if r.mode == "practice":
                        out["practice"] = r.attempt_id if r.practice else None
                    out["history"] = self.history(user, lang)
                yield out
        except TutorError as e:
            log.info("refused: %s", e)
            gr.Warning(self.msg(e, lang))
            yield {"status": "⚠️ " + self.msg(e, lang)}
        except Exception:
            log.exception("handler %s failed", mode)
            gr.Warning(t("error_generic", lang))
            yield {"status": "⚠️ " + t("error_generic", lang)}
        finally:
            self.stops.pop(session, None)
            self.stop_owner.pop(session, None)

    def set_budget(self, value: Any, ui_lang: str, request: gr.Request) -> str:
        """The "Thinking budget" control (webui.budget): kept for the session's next runs."""
        refused = self.budgets.set(getattr(request, "session_hash", None) or "", value, norm_lang(ui_lang))
        return refused and (gr.Warning(refused) or "⚠️ " + refused)

    def stop(self, request: gr.Request) -> None:
        """Stop the answer running in the request's session, only when the requester owns it."""
        session = getattr(request, "session_hash", "")
        ev = self.stops.get(session)
        try:
            mine = self.stop_owner.get(session) == self.user(request)
        except TutorError:
            mine = False
        if ev is not None and mine:
            self.user_stopped.add(session)
            ev.set()  # the engine ends its generation at the next token

    # -- one-shot actions -------------------------------------------------------------------------

    def answer_practice(self, ui_lang: str, pid: int | None, att: int | None, answer: str,
                        chat: list | None, request: gr.Request) -> tuple[list, str]:
        lang = norm_lang(ui_lang)
        chat = list(chat or [])
        try:
            if pid is None or att is None:
                return chat, t("no_problem", lang)
            answer = check_length(answer or "", MAX_ANSWER_CHARS, "answer", "答案")
            r = self.tutor.answer_practice(self.user(request), pid, att, answer)
            chat += view.user_messages(f"{t('my_answer', lang)}: {answer}") + view.result_messages("", r.text, lang)
            return chat, t("verdict_" + (r.verdict or "unknown"), lang)
        except TutorError as e:
            gr.Warning(self.msg(e, lang))
            return chat, "⚠️ " + self.msg(e, lang)
        except Exception:
            log.exception("answer_practice failed")
            return chat, "⚠️ " + t("error_generic", lang)

    def feedback(self, up: bool, ui_lang: str, att: int | None, comment: str,
                 request: gr.Request) -> tuple[str, str]:
        lang = norm_lang(ui_lang)
        if att is None:
            return t("no_attempt", lang), comment
        try:
            comment = check_length(comment or "", MAX_ANSWER_CHARS, "comment", "评论")
            self.store.add_feedback(self.user(request), att, up, comment.strip() or None)
            return t("thanks", lang), ""
        except TutorError as e:
            return "⚠️ " + e.message(lang), comment
        except Exception:
            log.exception("feedback failed")
            return "⚠️ " + t("error_generic", lang), comment

    def reopen(self, ui_lang: str, ids: list[int], evt: gr.SelectData, request: gr.Request):
        lang = norm_lang(ui_lang)
        try:
            pid = ids[evt.index]
            p = self.store.get_problem(self.user(request), pid)
            return (pid, view.problem_messages(p, lang), view.answer_box(p.question, view.latest_answer(p), lang),
                    t("opened_n", lang, n=p.number))
        except (TutorError, IndexError, TypeError) as e:
            msg = e.message(lang) if isinstance(e, TutorError) else t("pick_first", lang)
            return gr.skip(), gr.skip(), gr.skip(), "⚠️ " + msg

    def delete(self, ui_lang: str, pid: int | None, pending: int | None, request: gr.Request):
        """Two steps: the first click asks "Delete #N?" (``pending`` becomes ``pid``), a second click on
        the same problem deletes it and clears the chat, the answer panel and the export link.
        Returns (history, ids, pid, chat, message, answer, export file, pending, delete button)."""
        lang = norm_lang(ui_lang)
        keep = (gr.skip(),) * 4
        if pid is None:
            return *keep, t("pick_first", lang), gr.skip(), gr.skip(), None, gr.skip()
        try:
            user = self.user(request)
            number = self.store.get_problem(user, pid).number
            if pending != pid:
                return (*keep, t("delete_confirm", lang, n=number), gr.skip(), gr.skip(), pid,
                        gr.update(value=t("delete_again", lang, n=number)))
            stored = [i.path for i in self.store.get_problem(user, pid).images]
            self.files.delete(pid, [*stored, layout.thumb_dir(self.store) / str(pid)])  # cache copies first
            self.tutor.delete_problem(user, pid)  # stops its running answer too
        except TutorError as e:
            return *keep, "⚠️ " + e.message(lang), gr.skip(), gr.skip(), None, gr.update(value=t("delete", lang))
        items, ids = self.history(user, lang)
        return (items, ids, None, [], t("deleted_n", lang, n=number), "", gr.update(value=None, visible=False),
                None, gr.update(value=t("delete", lang)))

    def export(self, ui_lang: str, pid: int | None, request: gr.Request):
        lang = norm_lang(ui_lang)
        if pid is None:
            return gr.update(visible=False), t("pick_first", lang)
        try:
            p = self.store.get_problem(self.user(request), pid)
            images = [Path(i.path).read_bytes() for i in p.images if Path(i.path).exists()]
            path = self.export_dir / f"r1v-problem-{p.number}-{uuid.uuid4().hex[:8]}.html"
            path.write_text(export_problem_html(view.export_payload(p, images)), encoding="utf-8")
            self.files.add(pid, path)
            self.written.add(str(path))
            return gr.update(value=str(path), visible=True), ""
        except TutorError as e:
            return gr.update(visible=False), "⚠️ " + e.message(lang)
