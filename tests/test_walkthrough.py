"""A student's whole session in headless Chromium, on the shipped default model (``Engine("mini")``).

Issue 18's "Done when": one fresh visitor per (page language, width) uploads a drill photo the page
offers as an example, then Solve, Hint, Check a right answer, a wrong one and (when it differs) the
tutor's own answer, a follow-up, Practice (answered), 👍, My problems, reopen (after a reload), Export
and Delete, and -- in the full walk -- a new problem after the delete. What a student would see is
asserted, point by point of the issue:

1. the tutor's first reply is on screen right after Solve starts, and the final answer when it is
   there (bounding box against the viewport and every scrolling box around it: ``walk_page.in_view``);
2. each "My problems" card shows a picture with ink in it (not blank paper), and its caption (subject
   in the page language, date, the answer) wholly inside the visible card;
3. check verdicts: never "not correct" for the right answer of a shipped drill photo nor for the
   tutor's own answer, a wrong answer is not called correct, every verdict states how sure the tutor
   is, and a "not correct" never names the student's own answer as the answer;
4. hints, practice and follow-ups give a usable result;
5. no string in the other language (the rule is in ``tests/walk_page.py``'s docstring), replies in
   the reply language, no raw subject key in the export;
6. the export holds the hints, the checked answers, the follow-up and the practice problem;
8. the visitor's first problem is #1 although other visitors' problems exist, and a new problem
   after a delete does not take the deleted number;
9. labels do not wrap a character per line, the chat label does not cover a message, the work-photo
   icon is not clipped, the follow-up box empties after Send, 👍 shows it is selected, the empty
   history says so, the reopened problem keeps its practice turn, Delete asks first and takes the
   export link away, no ``props_invalid_value`` in the console, no control is named only "Radio"
   or "Textbox".

Every check is recorded (not stopped at the first failure), so one run lists all that fail. A step
that breaks is recorded as a failure of the walk itself. Screenshots of each step go to the test's
tmp folder, or to ``$R1V_WALK_SHOTS/<lang>-<width>/`` when that is set; ``walk.json`` next to them
holds every check and the click-to-answer times (Solve click -> first reply visible / in view /
final answer; each mode's click -> its reply), which are also printed.

Point 7 (bad inputs: a text file named .png, a 12000x12000 PNG, HTML typed into the question) has
its own short test, ``test_bad_inputs_told_at_once``, on the English desktop page (~30 s once point 7
is fixed; on main before the fix it waits out its limits: the huge PNG took 35-77 s to be refused).

The tutor's replies are held to the reply language (= the page language here, set by the example
photo chosen for it), the model's part of a reply included: the issue counts a Chinese check
explanation under an English reply language as its point 5 (only the folded thinking is left out).

The default run walks the English page on a phone (390x844) in a shorter form (no reload before
reopening, no own-answer check, no new problem after the delete; about a minute plus ~45 s to start
the app on a busy 2-core machine); ``-m slow`` walks the full session in both languages at 1280x800
and 390x844 (50-75 s each). The browser gets the project's fonts (``assets/fonts``) added
through fontconfig; their CJK font is a subset, so Chinese glyphs outside it still show as boxes in
the screenshots of a machine without CJK fonts. Skipped only when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import walk_page as wp
from tests.browser_app import ARGS, CHROMIUM, needs_chromium
from webui.config import AppConfig
from webui.i18n import t

FONTS = Path(__file__).resolve().parents[1] / "assets" / "fonts"
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "mini" / "examples"
# The drill photo each language's student uses, what they answer right and wrong, and a follow-up.
STUDENT = {
    "zh": {"photo": "00000.png", "statement": "解方程 4x+4=12", "right": "x = 2", "wrongs": ("x = 5", "x = 7", "x = 9"),
           "followup": "为什么先把 4 移到右边？"},
    "en": {"photo": "00008.png", "statement": "f(x)=9x+3, find f(5)", "right": "48", "wrongs": ("51", "53", "57"),
           "followup": "Why do we multiply first?"},
}
SIZES = {1280: 800, 390: 844}
RESULTS: dict[str, dict] = {}

pytestmark = needs_chromium


class Server:
    """The app on the mini in this process, with the store, to wait for turns and read what was saved."""

    def __init__(self, url: str, demo, store):
        self.url, self.demo, self.store, self.app = url, demo, store, demo.r1v
        self.users: list[str] = []
        orig = self.app.user

        def recording(request):  # the store id of each visitor the page identifies
            u = orig(request)
            if u not in self.users:
                self.users.append(u)
            return u

        self.app.user = recording

    def problems(self, user: str) -> list:
        return self.store.list_problems(user, limit=50)

    def problem(self, user: str, pid: int):
        return self.store.get_problem(user, pid)

    def n_replies(self, user: str, pid: int | None) -> int:
        if pid is None:
            return 0
        try:
            return sum(1 for m in self.problem(user, pid).messages if m.role == "assistant")
        except Exception:  # noqa: BLE001 - deleted
            return -1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app import build_app, launch_kwargs
    from engine.core import Engine
    from tutor.store import Store

    root = tmp_path_factory.mktemp("walk-app")
    store = Store(f"sqlite:///{root / 'r1v.db'}", image_dir=root / "images")
    # other visitors were here first: three problems, the last one deleted
    ids = [store.add_problem("earlier-visitor", question=f"{k}+{k}", lang="en") for k in (1, 2, 3)]
    store.delete_problem("earlier-visitor", ids[-1])
    cfg = AppConfig()
    demo = build_app(engine=Engine("mini"), store=store, cfg=cfg)
    demo.queue(max_size=8, default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs(cfg, store))
    yield Server(url, demo, store)
    demo.close()
    store.close()


def _font_env(tmp: Path) -> dict:
    """The browser's environment with the project's fonts (assets/fonts: CJK included) added to the
    machine's, as on a student's computer: without them a test machine draws Chinese as empty boxes,
    and the layout (text widths, wrapping) is not the one a student gets."""
    conf = tmp / "fonts.conf"
    conf.write_text('<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
                    '<include ignore_missing="yes">/etc/fonts/fonts.conf</include>'
                    f'<dir>{FONTS}</dir><cachedir>{tmp / "cache"}</cachedir></fontconfig>', encoding="utf-8")
    return {**os.environ, "FONTCONFIG_FILE": str(conf)}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, env=_font_env(tmp_path_factory.mktemp("fc")))
        yield b
        b.close()


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> Path:
    env = os.environ.get("R1V_WALK_SHOTS")
    root = Path(env) if env else tmp_path_factory.mktemp("walk-shots")
    root.mkdir(parents=True, exist_ok=True)
    return root


class Walk:
    """The checks, times and screenshots of one walk."""

    def __init__(self, page, server: Server, out: Path, lang: str, width: int):
        self.page, self.server, self.out, self.lang, self.width = page, server, out, lang, width
        self.checks: list[dict] = []
        self.times: dict[str, float | None] = {}
        self.shots: list[str] = []
        self.user: str | None = None
        self.pid: int | None = None
        self.english = wp.english_ui_strings()

    def check(self, point: str, name: str, ok: bool, detail: object = "") -> bool:
        self.checks.append({"point": point, "check": name, "ok": bool(ok), "detail": "" if ok else str(detail)[:600]})
        return bool(ok)

    def shot(self, name: str, full: bool = False) -> None:
        try:
            self.shots.append(wp.shot(self.page, self.out, f"{len(self.shots):02d}-{name}", full))
        except Exception:  # noqa: BLE001 - a screenshot never stops the walk
            pass

    @contextmanager
    def step(self, name: str):
        try:
            yield
        except Exception as e:  # noqa: BLE001 - recorded: the walk goes on with the next step
            self.check("walk", f"step '{name}' ran", False, f"{type(e).__name__}: {e}")
            self.shot(f"{name}-broke")

    def language(self, where: str) -> None:
        found = wp.language_problems(wp.visible_texts(self.page), self.lang, self.english)
        self.check("5", f"no {'Chinese' if self.lang == 'en' else 'English'} UI string ({where})", not found, found)

    def reply_language(self, what: str, texts: list[str]) -> None:
        """The tutor's reply in the reply language (= the page language in this walk); math left out."""
        for text in texts:
            if not text.strip():
                continue
            if self.lang == "en":
                self.check("5", f"{what} reply in English", not wp.CJK.search(text), text[:200])
            else:
                self.check("5", f"{what} reply in Chinese", bool(wp.CJK.search(text)), text[:200])

    def turn(self, name: str, click, timeout_s: float = 120) -> tuple[list[str], list[str]]:
        """Click, wait until the server saved the tutor's reply and the chat settled; (new tutor
        messages, their prose without math). The click-to-reply time goes into ``times``."""
        before = wp.bot_texts(self.page)
        n0 = self.server.n_replies(self.user, self.pid)
        t0 = time.perf_counter()
        click()
        while self.server.n_replies(self.user, self.pid) <= n0:
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"{name}: no reply saved in {timeout_s:.0f} s")
            self.page.wait_for_timeout(100)
        while len(wp.bot_texts(self.page)) <= len(before) and time.perf_counter() - t0 < timeout_s + 10:
            self.page.wait_for_timeout(50)
        wp.wait_stable(self.page, wp.SEL["chat"])
        self.times[f"{name}_click_to_reply_s"] = round(time.perf_counter() - t0, 2)
        after = wp.bot_texts(self.page)
        prose = wp.bot_prose(self.page)
        k = len(before) if after[: len(before)] == before else max(0, len(after) - 1)
        return after[k:], prose[k:] if len(prose) == len(after) else prose[-1:]

    def control(self, name: str):
        return wp.control(self.page, name, self.lang)


def _num(caption: str | None) -> int | None:
    m = re.search(r"#(\d+)", caption or "")
    return int(m[1]) if m else None


def walk(server: Server, browser, out_root: Path, lang: str, width: int, full: bool) -> Walk:
    from tutor import drills
    from tutor.answers import equivalent

    out = out_root / (f"{lang}-{width}" + ("" if full else "-short"))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    s = dict(STUDENT[lang])
    console: list[str] = []
    page = wp.open_page(browser, server.url, lang=lang, width=width, height=SIZES[width], console=console)
    w = Walk(page, server, out, lang, width)
    w.user = server.users[-1]
    dialogs: list[str] = []

    def on_dialog(d):
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", on_dialog)
    tutor_answer = None

    with w.step("load"):
        w.shot("loaded")
        w.check("5", "the page opens in the browser's language", page.locator(wp.SEL["solve"]).inner_text().strip()
                == t("ask", lang), page.locator(wp.SEL["solve"]).inner_text())
        w.language("page loaded")
        w.check("9", "no control is announced only by its type", not wp.generic_names(page), wp.generic_names(page))
        w.check("9", "no label wraps one character per line", not wp.labels_wrapped_per_char(page),
                wp.labels_wrapped_per_char(page))
        wp.open_history(page)
        hist = page.locator(wp.SEL["history"]).inner_text()
        w.check("9", "the empty history says there are no problems yet", t("history_empty", lang) in hist, hist[:200])
        w.shot("empty-history")
        page.locator(wp.SEL["history_toggle"]).first.click()

    with w.step("upload"):
        page.locator(wp.SEL["photo_input"]).first.set_input_files(str(EXAMPLES / s["photo"]))
        page.wait_for_function(f"() => !!document.querySelector('{wp.SEL['photo_loaded']}')")
        page.wait_for_timeout(500)
        w.shot("uploaded")
        ex = page.locator(wp.SEL["example_img"].format(name=s["photo"])).first
        ex.click()  # the same photo from the examples table, as the page offers it
        page.wait_for_timeout(1200)
        w.shot("example-clicked")
        w.language("after clicking an example")
        block = w.control("work_photo")
        clipped = wp.icons_clipped(block) if block.count() else ["work-photo block not found"]
        w.check("9", "the work-photo upload icon is not clipped", not clipped, clipped)

    with w.step("solve"):
        page.mouse.move(0, 0)
        t0 = time.perf_counter()
        page.locator(wp.SEL["solve"]).click()
        page.wait_for_function(f"() => document.querySelectorAll('{wp.SEL['bot_msg']}').length > 0", polling=20,
                               timeout=120_000)
        w.times["solve_click_to_first_reply_s"] = round(time.perf_counter() - t0, 2)
        view, took = wp.wait_in_view(page, wp.SEL["bot_msg"], 0, grace_s=2.0)
        w.times["solve_click_to_first_reply_in_view_s"] = (None if took is None else
                                                           round(w.times["solve_click_to_first_reply_s"] + took, 2))
        w.shot("solve-first-reply")
        w.check("1", "the first reply is on screen right after Solve", view["ok"], view)
        final = t("final", lang)
        while final not in page.locator(wp.SEL["answer"]).inner_text():
            if time.perf_counter() - t0 > 180:
                raise TimeoutError("no final answer in 180 s")
            page.wait_for_timeout(20)
        w.times["solve_click_to_final_answer_s"] = round(time.perf_counter() - t0, 2)
        wp.wait_stable(page, wp.SEL["chat"], quiet_ms=500)
        last, _ = wp.wait_in_view(page, wp.SEL["bot_msg"], -1, grace_s=1.5)
        panel = wp.in_view(page, wp.SEL["answer"])
        w.check("1", "the final answer is on screen when it arrives", last["ok"] or panel["ok"],
                {"last_reply": last, "answer_panel": panel})
        w.shot("solve-done")
        w.pid = server.problems(w.user)[0].id
        sol = [a for a in server.problem(w.user, w.pid).attempts if a.mode == "solve"]
        chosen = [c for c in sol[-1].candidates if c.chosen] if sol else []
        tutor_answer = (chosen[0].answer or None) if chosen else None
        covered = wp.covers(page, wp.SEL["chat_label"], f"{wp.SEL['bot_msg']}, {wp.SEL['user_msg']}")
        w.check("9", "the chat label does not cover a message", not covered, covered)
        w.language("after Solve")

    hint_prose: list[str] = []
    with w.step("hint"):
        texts, hint_prose = w.turn("hint", lambda: w.control("hint").click())
        bad = [x for x in texts if not x.strip() or re.search(r"answer is \?|答案是\s*\?|boxed\}", x)]
        w.check("4", "the hint is a usable step", texts and not bad, texts)
        w.reply_language("hint", hint_prose)
        w.shot("hint")

    def check_answer(name: str, answer: str) -> dict | None:
        box = w.control("my_answer")
        box.fill(answer)
        texts, prose = w.turn(name, lambda: w.control("check").click())
        w.shot(name)
        w.reply_language(name, prose)
        if not texts:
            w.check("3", f"{name}: a verdict is shown", False, "no reply")
            return None
        v = wp.verdict_of("\n\n".join(texts), lang)
        v["text"] = "\n\n".join(texts)[:300]
        return v

    verdicts: dict[str, dict | None] = {}
    with w.step("check right"):
        v = verdicts["right"] = check_answer("check_right", s["right"])
        if v:
            w.check("3", "the right answer is not called wrong", not v["negative"], v)
            w.check("3", "the verdict on the right answer states the tutor's confidence", v["confidence"], v)
    # the wrong answer is neither the right one nor the tutor's own (that case is checked on its own)
    s["wrong"] = next(x for x in s["wrongs"] if not (tutor_answer and equivalent(tutor_answer, x.split("=")[-1].strip())))
    with w.step("check wrong"):
        v = verdicts["wrong"] = check_answer("check_wrong", s["wrong"])
        if v:
            w.check("3", "a wrong answer is not called correct", v["negative"] or v["unsure"] or not v["positive"], v)
            w.check("3", "the verdict on a wrong answer states the tutor's confidence", v["confidence"], v)
            given = re.escape(s["wrong"].split("=")[-1].strip())
            # "the answer is <their answer>" said by the tutor (not "your answer is ...", which echoes them)
            says_it = re.search(rf"((?<!your )answer is|(?<!你的)答案是)\W*(x\s*=\s*)?(\\boxed\{{)?{given}(?!\d)",
                                v["text"])
            w.check("3", "the verdict does not contradict itself", not (v["negative"] and says_it), v)
    own_differs = bool(tutor_answer) and not equivalent(tutor_answer, s["right"].split("=")[-1].strip()) \
        and not equivalent(tutor_answer, s["wrong"].split("=")[-1].strip())
    if full and own_differs:
        with w.step("check own answer"):
            v = verdicts["own"] = check_answer("check_own", tutor_answer)
            if v:
                # unless the tutor says in the same reply that the answer it showed was wrong (it knows the
                # exact answer now): that is a correction, not a contradiction
                retracted = bool(re.search(wp.RETRACTS, v["text"]))
                w.check("3", "the tutor's own answer is not called wrong (unless it takes that answer back)",
                        not v["negative"] or retracted, v)
                w.check("3", "the verdict on the tutor's own answer states its confidence", v["confidence"], v)

    with w.step("follow-up"):
        box = w.control("followup")
        box.fill(s["followup"])
        texts, prose = w.turn("followup", lambda: w.control("send").click())
        w.check("4", "the follow-up gets a reply", bool(texts) and all(x.strip() for x in texts), texts)
        w.check("4", "the follow-up reply has no broken LaTeX", not any(re.search(r"\\boxed\}|\\boxed$", x)
                                                                        for x in texts), texts)
        w.reply_language("followup", prose)
        left = w.control("followup").input_value()
        w.check("9", "the follow-up box is empty after Send", left == "", repr(left))
        w.shot("followup")

    practice_text = ""
    with w.step("practice"):
        texts, prose = w.turn("practice", lambda: w.control("practice").click())
        practice_text = "\n".join(texts)
        w.reply_language("practice", prose)
        prob = drills.recognize(practice_text, lang)
        w.check("4", "a practice problem of the mini's kind is given", prob is not None, practice_text[:200])
        w.shot("practice")
        if prob is not None:
            w.control("my_answer").fill(prob.answer)
            texts, prose = w.turn("answer_practice", lambda: w.control("answer_practice").click())
            v = wp.verdict_of("\n\n".join(texts), lang)
            w.check("4", "the practice answer (right) is called correct", v["positive"] and not v["negative"], texts)
            w.reply_language("answer_practice", prose)
            w.shot("practice-answered")
        w.language("after the tutor's modes")
        covered = wp.covers(page, wp.SEL["chat_label"], f"{wp.SEL['bot_msg']}, {wp.SEL['user_msg']}")
        w.check("9", "the chat label does not cover a message (long chat)", not covered, covered)

    with w.step("feedback"):
        up, down = w.control("up"), w.control("down")
        page.mouse.move(0, 0)
        before, other = wp.pressed_state(up), wp.pressed_state(down)
        status0 = page.locator(wp.SEL["status"]).inner_text()
        t0 = time.perf_counter()
        up.click()
        while page.locator(wp.SEL["status"]).inner_text() == status0 and time.perf_counter() - t0 < 15:
            page.wait_for_timeout(100)
        page.mouse.move(0, 0)
        page.wait_for_timeout(400)
        after = wp.pressed_state(up)
        saved = any(f.up for a in server.problem(w.user, w.pid).attempts for f in a.feedback)
        w.check("9", "the 👍 is saved", saved, "no feedback in the store")
        w.check("9", "👍 shows it is selected", after != before and after != wp.pressed_state(down) or
                after.get("pressed") == "true", {"before": before, "after": after, "other": other})
        w.shot("feedback")

    reopen_pid, deleted_num = w.pid, None
    with w.step("history"):
        wp.open_history(page)
        page.wait_for_function(f"() => document.querySelectorAll('{wp.SEL['history_item']}').length > 0")
        page.locator(wp.SEL["history_item"]).first.scroll_into_view_if_needed()
        page.wait_for_timeout(600)
        w.shot("history")
        items = wp.history_items(page)
        it = items[0]
        w.check("2", "the history card is large enough to see", it["card"]["w"] >= 96 and it["card"]["h"] >= 72, it["card"])
        img = it["img"] or {"w": 0, "h": 0}
        w.check("2", "the card's picture is visible", img["w"] >= 64 and img["h"] >= 48, img)
        ink = wp.ink_share(page.locator(wp.SEL["history_item"]).first.screenshot())
        w.check("2", "the card shows the problem, not blank paper", ink >= 0.01, f"ink share {ink:.4f}")
        w.check("2", "the caption is wholly inside the visible card", it["caption_inside"], it)
        cap = it["caption"] or ""
        w.check("2", "the caption is readable (font >= 10 px)", (it["caption_font_px"] or 0) >= 10, it)
        w.check("2", "the caption names the subject in the page language", t("math", lang) in cap, cap)
        w.check("2", "the caption has the date", bool(re.search(r"\d{4}-\d{2}-\d{2}|\d{1,2}月\d{1,2}日|\d{1,2}/\d{1,2}",
                                                              cap)), cap)
        if tutor_answer:
            w.check("2", "the caption has the answer", tutor_answer[:6] in cap, f"{cap!r} lacks {tutor_answer!r}")
        w.check("8", "a new visitor's first problem is #1", _num(cap) == 1, cap)
        deleted_num = _num(cap)
        w.language("history open")

    with w.step("reopen"):
        if full:
            page.reload(wait_until="load")
            page.wait_for_function(f"() => (document.querySelector('{wp.SEL['banner']}')?.innerText || '')"
                                   ".includes('mini')")
            wp.open_history(page)
            page.wait_for_function(f"() => document.querySelectorAll('{wp.SEL['history_item']}').length > 0")
        page.locator(wp.SEL["history_item"]).first.click()
        page.wait_for_function(f"() => document.querySelectorAll('{wp.SEL['bot_msg']}').length > 0")
        chat = wp.wait_stable(page, wp.SEL["chat"])
        page.wait_for_timeout(300)
        chat = wp.wait_stable(page, wp.SEL["chat"])
        w.shot("reopened")
        first_line = practice_text.strip().splitlines()[-1] if practice_text.strip() else ""
        w.check("9", "the reopened problem keeps its practice turn", bool(first_line) and
                re.sub(r"\s", "", first_line) in re.sub(r"\s", "", chat), f"{first_line!r} not in the chat")
        w.check("9", "the reopened problem keeps its follow-up", s["followup"] in chat, chat[-300:])
        w.check("1", "the reopened answer panel has the final answer", t("final", lang) in
                page.locator(wp.SEL["answer"]).inner_text(), page.locator(wp.SEL["answer"]).inner_text())
        w.language("reopened problem")

    with w.step("export"):
        w.control("export").click()
        link = page.locator(wp.SEL["export_link"]).first
        link.wait_for(state="visible", timeout=30_000)
        html = page.request.get(link.get_attribute("href")).text()
        (out / "export.html").write_text(html, encoding="utf-8")
        text = wp.export_text(html)
        flat = re.sub(r"\s", "", text)
        w.shot("exported")
        hint_part = re.sub(r"\s", "", hint_prose[0])[:12] if hint_prose else "?hint?"
        w.check("6", "the export has the hint", hint_part in flat, f"{hint_part!r} not in the export")
        for key in ("right", "wrong"):
            ans = re.sub(r"\s", "", s[key])
            w.check("6", f"the export has the checked {key} answer", ans in flat, f"{ans!r} not in the export")
        w.check("6", "the export has the follow-up", re.sub(r"\s", "", s["followup"]) in flat, "follow-up missing")
        prac_line = re.sub(r"\s", "", practice_text.strip().splitlines()[-1]) if practice_text.strip() else "?"
        w.check("6", "the export has the practice problem", prac_line in flat, f"{prac_line!r} missing")
        raw = re.findall(r"(?<![A-Za-z\\])(math|physics|chemistry|biology)(?![A-Za-z])", text)
        w.check("5", "the export shows no raw subject key", not raw, raw)

    with w.step("delete"):
        dialogs.clear()
        hist_box = page.locator("body")  # a confirmation may appear anywhere on the page
        buttons0 = {b.inner_text() for b in hist_box.get_by_role("button").all() if b.is_visible()}
        w.control("delete").click()
        page.wait_for_timeout(1200)
        gone_at_once = not any(p.id == reopen_pid for p in server.problems(w.user))
        asked = bool(dialogs) or not gone_at_once
        w.check("9", "Delete asks for confirmation first", asked, "deleted on the first click, nothing asked")
        w.shot("delete-asked")
        if not dialogs and not gone_at_once:  # an in-page confirmation: the button that appeared
            new = [b for b in hist_box.get_by_role("button").all() if b.is_visible() and
                   b.inner_text() not in buttons0 and not re.search(r"cancel|取消|keep|保留", b.inner_text(), re.I)]
            if new:
                new[0].click()
        t0 = time.perf_counter()
        while any(p.id == reopen_pid for p in server.problems(w.user)) and time.perf_counter() - t0 < 15:
            page.wait_for_timeout(100)
        page.wait_for_timeout(800)
        w.check("9", "the problem is deleted after confirming",
                not any(p.id == reopen_pid for p in server.problems(w.user)), "still in the store")
        link_left = page.locator(wp.SEL["export_link"])
        w.check("9", "the deleted problem's export link is gone",
                not (link_left.count() and link_left.first.is_visible()), "export link still shown")
        w.shot("deleted")
        w.language("after Delete")

    if full:
        with w.step("new problem after delete"):
            n0 = len(server.problems(w.user))
            page.locator(wp.SEL["photo_input"]).first.set_input_files(str(EXAMPLES / s["photo"]))  # after the reload
            page.wait_for_function(f"() => !!document.querySelector('{wp.SEL['photo_loaded']}')")
            page.wait_for_timeout(500)
            page.locator(wp.SEL["solve"]).scroll_into_view_if_needed()
            page.locator(wp.SEL["solve"]).click()
            t0 = time.perf_counter()
            while len(server.problems(w.user)) <= n0 and time.perf_counter() - t0 < 60:
                page.wait_for_timeout(100)
            w.pid = server.problems(w.user)[0].id
            while t("final", lang) not in page.locator(wp.SEL["answer"]).inner_text() and time.perf_counter() - t0 < 180:
                page.wait_for_timeout(100)
            wp.open_history(page)
            page.wait_for_function(f"() => document.querySelectorAll('{wp.SEL['history_item']}').length > 0")
            page.wait_for_timeout(500)
            cap = wp.history_items(page)[0]["caption"] or ""
            w.check("8", "a new problem does not take the deleted number", _num(cap) not in (None, deleted_num),
                    f"{cap!r} after deleting #{deleted_num}")
            w.shot("renumbered")

    w.check("9", "no props_invalid_value in the console", not any("props_invalid_value" in c for c in console),
            [c for c in console if "props_invalid_value" in c][:2])
    w.shot("end-full-page", full=True)
    page.context.close()
    return w


def _report(w: Walk, out_root: Path, key: str | None = None) -> None:
    key = key or f"{w.lang}-{w.width}"
    path = out_root / "walk.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = {"times": w.times, "checks": w.checks, "shots": w.shots,
                 "failed": [f"[{c['point']}] {c['check']}" for c in w.checks if not c["ok"]]}
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"\nwalk {key}: {len(w.checks) - len(data[key]['failed'])}/{len(w.checks)} checks passed; times {w.times};"
          f" screenshots and walk.json in {out_root}")
    for c in w.checks:
        if not c["ok"]:
            print(f"  FAIL [{c['point']}] {c['check']}: {c['detail'][:300]}")


def _run(server, browser, out_root, lang, width, full):
    w = walk(server, browser, out_root, lang, width, full)
    _report(w, out_root, key=w.out.name)
    failed = [f"[{c['point']}] {c['check']}: {c['detail'][:200]}" for c in w.checks if not c["ok"]]
    assert not failed, f"{len(failed)} of {len(w.checks)} checks failed ({lang}, {width}px):\n" + "\n".join(failed)


def test_walkthrough_phone_en(server, browser, out_root):
    """The default run: the English page on a phone, the shorter walk."""
    _run(server, browser, out_root, "en", 390, full=False)


@pytest.mark.slow
@pytest.mark.parametrize("lang,width", [("zh", 1280), ("zh", 390), ("en", 1280), ("en", 390)])
def test_walkthrough_full(server, browser, out_root, lang, width):
    """The whole session in both languages at desktop and phone width."""
    _run(server, browser, out_root, lang, width, full=True)


def test_bad_inputs_told_at_once(server, browser, out_root, tmp_path):
    """Issue 18 point 7, as a student meets it on the English desktop page: a text file named .png is
    refused with the intake's reason (on upload, or at the latest on Solve, never "Add a photo"), a
    12000x12000 PNG is refused within 10 s, and HTML typed into the question is shown as text."""
    from PIL import Image

    out = out_root / "inputs-en-1280"
    out.mkdir(parents=True, exist_ok=True)
    page = wp.open_page(browser, server.url, lang="en", width=1280, height=800)
    w = Walk(page, server, out, "en", 1280)
    w.user = server.users[-1]
    fake = tmp_path / "homework.png"
    fake.write_text("this is a text file, not a photo\n", encoding="utf-8")
    msg = wp.INPUT_MESSAGES

    with w.step("text file named .png"):
        t0 = time.perf_counter()
        page.locator(wp.SEL["photo_input"]).first.set_input_files(str(fake))
        took = wp.wait_text(page, msg["not_an_image"]["en"], 5)
        w.times["fake_png_upload_to_message_s"] = None if took is None else round(took, 2)
        w.shot("fake-png-uploaded")
        w.check("7", "a text file named .png is refused on upload", took is not None, "nothing shown in 5 s")
        if took is None:
            page.locator(wp.SEL["solve"]).click()
            took = wp.wait_text(page, msg["not_an_image"]["en"], 15)
            w.times["fake_png_solve_to_message_s"] = None if took is None else round(took, 2)
            w.shot("fake-png-solve")
        shown = page.locator(wp.SEL["status"]).inner_text()
        w.check("7", "the refusal gives the reason, not 'Add a photo'", took is not None and
                t("need_input", "en") not in shown, f"status {shown!r}")

    with w.step("12000x12000 PNG"):
        page.reload(wait_until="load")
        page.wait_for_function(f"() => (document.querySelector('{wp.SEL['banner']}')?.innerText || '').includes('mini')")
        big = tmp_path / "huge.png"
        Image.new("1", (12000, 12000), 1).save(big, optimize=True)
        t0 = time.perf_counter()
        page.locator(wp.SEL["photo_input"]).first.set_input_files(str(big))
        took = wp.wait_text(page, msg["too_many_pixels"]["en"], 10)
        if took is None:  # not on upload: as the issue did, press Solve
            page.locator(wp.SEL["solve"]).click()
            wp.wait_text(page, msg["too_many_pixels"]["en"], 30)  # main took 35-77 s here: the test stops at 40
        total = time.perf_counter() - t0
        found = wp.wait_text(page, msg["too_many_pixels"]["en"], 0.2) is not None
        w.times["huge_png_upload_to_refusal_s"] = round(total, 2) if found else None
        w.shot("huge-png")
        w.check("7", "a 12000x12000 PNG is refused within 10 s", found and total <= 10, f"{total:.1f} s, shown={found}")

    with w.step("HTML in the question"):
        page.reload(wait_until="load")
        page.wait_for_function(f"() => (document.querySelector('{wp.SEL['banner']}')?.innerText || '')"
                               ".includes('mini')")
        typed = "<img src=x> is x<y>z true?"
        page.locator(wp.SEL["question"]).fill(typed)
        page.locator(wp.SEL["solve"]).click()
        page.wait_for_function(f"() => document.querySelectorAll('{wp.SEL['user_msg']}').length > 0")
        page.wait_for_timeout(800)
        echo = " ".join(page.locator(wp.SEL["user_msg"]).all_inner_texts())
        broken = page.evaluate("() => [...document.querySelectorAll('#r1v-chat img, #r1v-answer img')]"
                               ".filter(i => i.getAttribute('src') === 'x').length")
        w.shot("html-question")
        w.check("7", "HTML typed into the question is shown as text", "<img src=x>" in echo and "x<y>z" in echo,
                f"chat shows {echo!r}")
        w.check("7", "no element is made from the student's HTML", broken == 0, f"{broken} <img src=x>")
        page.locator(wp.SEL["stop"]).click()
        page.wait_for_timeout(500)

    page.context.close()
    _report(w, out_root, key="inputs-en-1280")
    failed = [f"[{c['point']}] {c['check']}: {c['detail'][:200]}" for c in w.checks if not c["ok"]]
    assert not failed, f"{len(failed)} of {len(w.checks)} checks failed:\n" + "\n".join(failed)
