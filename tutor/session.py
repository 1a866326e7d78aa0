"""Tutoring modes on top of the engine: solve, hints, check my answer, follow-up, practice.

    from tutor.session import Tutor, TurnResult
    tutor = Tutor(engine, store)                       # engine: engine.core.Engine (or the HTTP one)
    pid = tutor.new_problem("u1", images, "求 x", subject="math", lang="zh")
    for ev in tutor.solve("u1", pid, n=4):             # token deltas, then one TurnResult
        ...
    tutor.hint("u1", pid)            # next rung of the hint ladder; never the final answer
    tutor.check("u1", pid, "x=2")    # correct / incorrect / unsure, with its confidence (tutor.verdict)
    tutor.followup("u1", pid, "为什么取对数？")
    tutor.practice("u1", pid); tutor.answer_practice("u1", pid, attempt_id, "5")

Every mode streams: it yields the engine's delta events (objects with ``index`` and ``text``) as
the model writes, then one ``TurnResult``. Each turn is saved in the store as it happens: the
student's message first (so nothing they typed is lost if the model fails), then the attempt with
its candidates and the tutor's reply; a failed or stopped run is saved with that status (a run
that broke midway keeps the partial text it received, as candidates and as the tutor's message).
While a run streams, its reply so far is saved every few seconds (``tutor.live``), so a killed process
leaves that text; a reply is capped at ``tutor.live.MAX_REPLY_CHARS``, and ``delete_problem`` stops
the problem's runs before deleting it.

The engine is duck-typed (anything with ``stream(images, messages=..., n=..., sampling=...,
stop=...)`` yielding deltas and an event with ``.solution``), so this module stays free of torch.
Verdicts never trust the model alone: ``check`` compares the student's answer with the candidates'
final answers (or the problem's gold answer, or the drill family's exact one) through
``tutor.verdict``, which says how sure it is; a weak reference is first solved again with more
candidates, and the model is asked only to check the work step by step.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tutor import drills, replies, verdict
from tutor.answers import equivalent, extract_final
from tutor.errors import InputError, TutorError
from tutor.intake import IntakeImage, load_image
from tutor.live import Runs, deleted_error
from tutor.prompts import build_messages, practice_markers
from tutor.store import ProblemInfo, Store

log = logging.getLogger(__name__)

VERDICTS = ("correct", "incorrect", "unsure", "unknown")  # check: the first three; practice: no "unsure"
PIXEL_CACHE = 8  # decoded photos kept by content hash, so a turn does not re-read and decode the stored PNG
DRILL_MODEL = "tutor.drills"  # the attempts' model when the tutor answered from its drill family, not the model
VERDICT_MODEL = "tutor.verdict"  # a check's attempt when the tutor gave the verdict without running the model
RESOLVE_INDEX = 1000  # a check's extra solve streams its deltas with index RESOLVE_INDEX + candidate
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


@dataclass
class PracticeProblem:
    problem: str  # shown to the student
    solution: str  # kept back until they answer
    answer: str | None


@dataclass
class TurnResult:
    mode: str
    problem_id: int
    attempt_id: int | None
    text: str  # the reply to show (the chosen candidate's answer part, or the tutor's own words)
    thinking: str = ""
    answer: str | None = None
    verdict: str | None = None  # check: "correct" | "incorrect" | "unsure"; practice: ... | "unknown"
    hint_level: int | None = None
    practice: PracticeProblem | None = None
    solution: Any = None  # the engine's Solution, when the model ran
    extra: dict = field(default_factory=dict)


def strip_boxes(text: str, placeholder: str = "?") -> str:
    """Replace the content of every ``\\boxed{...}`` with ``placeholder`` (hints never give the answer)."""
    out, i = [], 0
    for m in _BOX.finditer(text):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        out.append(text[i:m.start()] + "\\boxed{" + placeholder + "}")
        i = j
    return "".join(out) + text[i:]


def mask_answer(text: str, answer: str) -> str:
    """Hide a known final answer where the text states it ("x = 2", "答案是 2"), keeping other uses
    of the same characters ("2x") intact."""
    pattern = re.compile(r"((?:=|\bis|为|是|:|：)\s*\$?\s*)" + re.escape(answer.strip()) + r"(?![\w.])")
    return pattern.sub(lambda m: m.group(1) + "…", text)


def parse_practice(text: str, lang: str) -> PracticeProblem | None:
    """Split the practice mode's reply at its headers into problem and solution."""
    p_mark, s_mark = practice_markers(lang)
    if p_mark not in text or s_mark not in text:
        return None
    after = text.split(p_mark, 1)[1]
    problem, _, solution = after.partition(s_mark)
    problem, solution = problem.strip(), solution.strip()
    if not problem:
        return None
    return PracticeProblem(problem, solution, extract_final(solution))


def _words(lang: str) -> dict[str, str]:
    zh = lang.startswith("zh")
    return {
        "correct": "回答正确！" if zh else "Correct!",
        "incorrect": "答案不正确。" if zh else "Not correct.",
        "unknown": "无法判断对错：参考解答没有给出明确的最终答案。" if zh
        else "Cannot tell: the reference solution has no clear final answer.",
        "hint": "提示" if zh else "Hint",
        "my_answer": "我的答案：" if zh else "My answer: ",
        "no_practice": "没能生成练习题，请再试一次。" if zh else "Could not make a practice problem; please try again.",
        "photo": "（题目见图片）" if zh else "(problem in the photo)",
    }


class Tutor:
    """The tutoring modes for one engine and one store (thread-safe as the two are)."""

    def __init__(self, engine: Any, store: Store, *, backend: str = "transformers", reward: Any = None):
        """``reward``: the reward model that ranks a solve's candidates when there are several (a preset
        name such as ``mini-reward``, a checkpoint directory, or a loaded scorer; None: answer agreement)."""
        self.engine, self.store, self.backend, self.reward = engine, store, backend, reward
        self._pixels: OrderedDict[str, Any] = OrderedDict()  # sha256 -> PIL image (content-addressed)
        self._pixels_lock = threading.Lock()
        self._drill_photos: dict[str, str] | None = None  # sha256 of a shipped drill photo -> its statement
        self.rng = random.Random()  # draws the tutor's own practice problems
        self.runs = Runs(store)  # runs streaming now: their text saved as it grows, stopped by a delete

    # -- problems ---------------------------------------------------------------------------------

    def new_problem(self, user: str, images: Sequence[IntakeImage], question: str = "", *,
                    subject: str = "math", problem_type: str = "auto", lang: str = "zh",
                    gold_answer: str | None = None) -> int:
        """Validate and save a new problem (photos stored once by content hash); return its id."""
        build_messages("solve", question=question, subject=subject, problem_type=problem_type, lang=lang,
                       n_images=len(images))  # validates before anything is saved
        pid = self.store.add_problem(user, question=question, subject=subject, problem_type=problem_type,
                                     lang=lang, gold_answer=gold_answer, images=list(images))
        self.store.add_message(user, pid, "user", question or _words(lang)["photo"])
        for im in images:
            self._keep_pixels(im.sha256, im.image)
        return pid

    def _keep_pixels(self, sha256: str, image: Any) -> None:
        with self._pixels_lock:
            self._pixels[sha256] = image
            self._pixels.move_to_end(sha256)
            while len(self._pixels) > PIXEL_CACHE:
                self._pixels.popitem(last=False)

    def _images(self, p: ProblemInfo) -> list:
        """The problem's photos: from the cache when their hash is there (the same pixels: photos are
        stored by the hash of their pixels), else read back from the store."""
        out = []
        for img in p.images:
            with self._pixels_lock:
                hit = self._pixels.get(img.sha256)
            if hit is None:
                hit = load_image(img.path).image
                self._keep_pixels(img.sha256, hit)
            out.append(hit)
        return out

    def _reference(self, p: ProblemInfo) -> tuple[str | None, str]:
        """(final answer, solution text) of the latest chosen solve candidate; the gold answer wins."""
        for a in reversed(p.attempts):
            if a.mode == "solve":
                chosen = next((c for c in a.candidates if c.chosen), None)
                if chosen is not None:
                    return (p.gold_answer or chosen.answer or None), chosen.text
        return p.gold_answer, ""

    # -- the drill family (tutor.drills) ------------------------------------------------------------

    @property
    def writes_problems(self) -> bool:
        """The engine's declared capability (``engine.presets.Preset.writes_problems``): False for a small
        model whose practice problems, hints and explanations the tutor makes from its drill family."""
        return bool(getattr(self.engine, "writes_problems", True))

    def _known_photos(self) -> dict[str, str]:
        if self._drill_photos is None:
            known = {}
            for ex in drills.drill_examples():
                try:
                    known[load_image(ex.image_path).sha256] = ex.question
                except Exception:  # noqa: BLE001 - a missing example photo only means it is not recognised
                    log.warning("drill example %s unreadable", ex.image_path, exc_info=True)
            self._drill_photos = known
        return self._drill_photos

    def _drill(self, p: ProblemInfo) -> tuple[drills.Problem | None, str]:
        """The drill problem ``p`` is, and how that is known: "question" (typed), "example" (a shipped drill
        photo), "read" (the model's own restatement of the photo, generator ranges only); (None, "") else."""
        if p.question and (d := drills.recognize(p.question, p.lang)):
            return d, "question"
        known = self._known_photos()
        for img in p.images:
            if img.sha256 in known and (d := drills.recognize(known[img.sha256], p.lang)):
                return d, "example"
        for a in reversed(p.attempts):
            if a.model == DRILL_MODEL or a.mode in ("check", "practice"):
                continue
            for c in sorted(a.candidates, key=lambda c: not c.chosen):
                first = (c.thinking or "").strip().split("\n", 1)[0]
                if d := drills.recognize(first, p.lang, strict=True):
                    return d, "read"
        return None, ""

    def _tutor_turn(self, user: str, p: ProblemInfo, mode: str, text: str, *, stored: str | None = None,
                    answer: str | None = None, **kw: Any) -> TurnResult:
        """A turn the tutor answers itself (no model run): saved as an attempt of ``DRILL_MODEL`` with one
        candidate (``stored``, default ``text``), and ``text`` as the tutor's message."""
        attempt = self.store.add_attempt(user, p.id, mode=mode, model=DRILL_MODEL, backend="tutor", status="done")
        self.store.add_candidates(user, attempt, [{"index": 0, "text": stored or text, "thinking": "",
                                                   "answer": answer or "", "tokens": 0}], chosen=0)
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
        return TurnResult(mode, p.id, attempt, text, "", None, **kw)

    def _drill_practice(self, user: str, p: ProblemInfo, like: drills.Problem | None, note: str = "") -> TurnResult:
        """A practice problem from the generator (the kind of ``like`` when given); its worked solution and
        gold answer are stored with it (in the practice headers) for ``answer_practice``."""
        q = drills.practice_like(like, p.lang, self.rng)
        body, solution = "\n".join(q.lines), drills.worked_solution(q)
        p_mark, s_mark = practice_markers(p.lang)
        intro = note or replies.practice_intro(p.lang, like is not None)
        prac = PracticeProblem(body, solution, q.answer)
        return self._tutor_turn(user, p, "practice", f"{intro}\n\n{body}", stored=f"{p_mark}\n{body}\n{s_mark}\n{solution}",
                                answer=q.answer, practice=prac)

    # -- running the model --------------------------------------------------------------------------

    def _run(self, user: str, p: ProblemInfo, mode: str, messages: list[dict], images: list, *, n: int = 1,
             sampling: Any = None, stop: threading.Event | None = None, meta: dict | None = None) -> Iterator[Any]:
        """Stream the engine, then save the attempt and its candidates. Yields deltas; returns the solution.
        ``meta``: more keys for the attempt's ``sampling`` JSON (a check's verdict, an extra solve's purpose)."""
        attempt = self.store.add_attempt(user, p.id, mode=mode, model=getattr(self.engine, "name", "?"),
                                         backend=self.backend, sampling={**_sampling_dict(sampling, n), **(meta or {})},
                                         status="running")
        solution = None
        with self.runs.start(user, p.id, attempt, stop, lang=p.lang,
                             save=(meta or {}).get("purpose") != verdict.RESOLVE) as live:
            try:
                kw = {"sampling": sampling} if sampling is not None else {}
                if self.reward is not None and n > 1:
                    kw["reward"] = self.reward
                for ev in self.engine.stream(images, messages=messages, n=n, stop=live.stop, **kw):
                    if hasattr(ev, "solution"):
                        solution = ev.solution
                    else:
                        live.add(ev)
                        yield ev
            except GeneratorExit:  # the page went away or the student pressed Stop: the text so far stays
                live.save_now()
                self._set_status(user, attempt, "stopped")
                raise
            except BaseException as e:
                if live.cancelled:
                    raise deleted_error() from e
                if getattr(e, "candidates", None):
                    live.drop()  # the partial candidates carry the text
                else:
                    live.save_now()
                self._keep_partial(user, p.id, attempt, getattr(e, "candidates", None))
                self._set_status(user, attempt, "error")
                raise
        if live.cancelled:  # the problem was deleted while it ran
            raise deleted_error()
        if solution is None:  # the consumer stopped early
            live.save_now()
            self._set_status(user, attempt, "stopped")
            return attempt, None
        live.drop()
        live.cap(solution.candidates)
        self.store.add_candidates(user, attempt, solution.candidates, chosen=solution.chosen)
        self.store.update_attempt(user, attempt, status="stopped" if solution.stopped else "done",
                                  timings=solution.timings)
        return attempt, solution

    def _set_status(self, user: str, attempt: int, status: str) -> None:
        try:
            self.store.update_attempt(user, attempt, status=status)
        except TutorError as e:  # e.g. deleted meanwhile: the run's own error is what matters
            log.warning("attempt %s: could not set status %s: %s", attempt, status, e)

    def delete_problem(self, user: str, problem_id: int) -> None:
        """Stop the problem's runs (the model does not run on for a deleted problem), then delete it."""
        self.runs.cancel(user, problem_id)
        self.store.delete_problem(user, problem_id)

    def _keep_partial(self, user: str, problem_id: int, attempt: int, candidates: Any) -> None:
        """A run that failed midway (``engine.http.ServerStreamError``) keeps what was received: the
        partial candidates on the attempt and, as the tutor's message, the first one's text. Best
        effort: a store failure here must not hide the engine's error."""
        if not candidates:
            return
        try:
            self.store.add_candidates(user, attempt, candidates)
            first = candidates[0]
            text = (getattr(first, "text", "") or getattr(first, "thinking", "")).strip()
            if text:
                self.store.add_message(user, problem_id, "assistant", text, attempt_id=attempt)
        except Exception:  # noqa: BLE001 - logged; the engine error is what the student must see
            log.exception("could not keep the partial answer of attempt %s", attempt)

    @staticmethod
    def _prompt(mode: str, p: ProblemInfo, **kw: Any) -> list[dict]:
        """``build_messages`` for ``mode`` about the stored problem ``p``."""
        return build_messages(mode, question=p.question, subject=p.subject, problem_type=p.problem_type or "auto",
                              lang=p.lang, n_images=len(p.images), **kw)

    def _reply(self, user: str, p: ProblemInfo, mode: str, attempt: int, sol: Any, **kw: Any) -> TurnResult:
        """Save the chosen candidate's reply as the tutor's message; the turn's result."""
        best = sol.candidates[sol.chosen]
        text = best.text or best.thinking
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
        return TurnResult(mode, p.id, attempt, text, best.thinking, best.answer or None, solution=sol, **kw)

    def _history(self, p: ProblemInfo) -> list[dict]:
        """The conversation so far as alternating turns: consecutive messages of one role (a turn whose run
        failed, a mode the tutor answered without a reply of the model's) are joined; a last student turn
        that got no reply is left out."""
        out: list[dict] = []
        for m in p.messages:
            if m.role not in ("user", "assistant"):
                continue
            if out and out[-1]["role"] == m.role:
                out[-1]["content"] += "\n\n" + m.content
            else:
                out.append({"role": m.role, "content": m.content})
        while len(out) > 1 and out[-1]["role"] == "user":
            out.pop()
        return out

    # -- modes ------------------------------------------------------------------------------------

    def solve(self, user: str, problem_id: int, *, n: int = 1, sampling: Any = None,
              stop: threading.Event | None = None) -> Iterator[Any]:
        """The worked solution: n candidates, the chosen one shown and saved."""
        p = self.store.get_problem(user, problem_id)
        attempt, sol = yield from self._run(user, p, "solve", self._prompt("solve", p), self._images(p), n=n,
                                            sampling=sampling, stop=stop)
        if sol is not None:
            yield self._reply(user, p, "solve", attempt, sol)

    def hint(self, user: str, problem_id: int, *, sampling: Any = None,
             stop: threading.Event | None = None) -> Iterator[Any]:
        """The next hint of the ladder (level = hints given so far + 1), with any boxed answer removed."""
        p = self.store.get_problem(user, problem_id)
        level = 1 + sum(1 for a in p.attempts if a.mode == "hint" and a.status == "done")
        messages = self._prompt("hint", p, hint_level=level)
        w = _words(p.lang)
        self.store.add_message(user, p.id, "user", f"{w['hint']} {level}")
        drill, source = self._drill(p) if not self.writes_problems else (None, "")
        if drill is not None:  # a small model on a drill problem: the next worked step, from the generator
            yield self._tutor_turn(user, p, "hint", replies.drill_hint(drill, level, source, p.lang), hint_level=level)
            return
        attempt, sol = yield from self._run(user, p, "hint", messages, self._images(p), sampling=sampling, stop=stop)
        if sol is None:
            return
        best = sol.candidates[sol.chosen]
        text = strip_boxes(best.text or best.thinking)
        ref, _ = self._reference(p)
        if ref:
            text = mask_answer(text, ref)
        if not replies.usable_hint(text):  # e.g. "The answer is ?.": say so, or teach from its reading
            drill, source = self._drill(self.store.get_problem(user, problem_id)) if not self.writes_problems \
                else (None, "")
            text = (replies.drill_hint(drill, level, source, p.lang) if drill is not None else
                    replies.no_hint(p.lang, small=not self.writes_problems, truncated=best.finish_reason == "length"))
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
        yield TurnResult("hint", p.id, attempt, text, best.thinking, None, hint_level=level, solution=sol)

    def check(self, user: str, problem_id: int, student_answer: str, work_images: Sequence[IntakeImage] = (), *,
              sampling: Any = None, stop: threading.Event | None = None) -> Iterator[Any]:
        """Correct / incorrect / unsure, with the tutor's confidence (``tutor.verdict``): against the gold
        answer, the drill family's exact one, or the solve's candidates -- solved again with
        ``verdict.RESOLVE_N`` more when they are a weak reference (their deltas come with indices from
        ``RESOLVE_INDEX``, so a page counts them without showing them as the reply). Unless it is surely
        correct, a step-by-step check follows: the drill's worked solution, the model's check of the work
        (when the model can write one), or the tutor's own solution to compare with. The verdict is stored
        on the check's attempt as ``sampling["verdict"]`` (``Verdict.to_json``)."""
        p = self.store.get_problem(user, problem_id)
        student_answer = (student_answer or "").strip()
        if not student_answer and not work_images:
            raise InputError("empty_answer", "Please type your answer first.", "请先输入你的答案。")
        self._prompt("check", p, student_answer=student_answer or None, n_work_images=len(work_images))  # validates
        w = _words(p.lang)
        self.store.add_message(user, p.id, "user", w["my_answer"] + (student_answer or w["photo"]))
        drill, source = self._drill(p)
        drill = drill if source in ("question", "example") else None  # a model's reading is no gold answer
        gold, gold_source = (p.gold_answer, "gold") if p.gold_answer else (drill.answer if drill else None, "drill")
        pool, resolved = verdict.reference_pool(p.attempts)
        v = verdict.judge(pool, student_answer, gold=gold, gold_source=gold_source)
        if verdict.needs_resolve(v) and not resolved:  # a weak reference: more candidates first
            from tutor.limits import check_n

            n = check_n(verdict.RESOLVE_N)
            run = self._run(user, p, "check", self._prompt("solve", p), self._images(p), n=n, sampling=sampling,
                            stop=stop, meta={"purpose": verdict.RESOLVE})
            _, sol = yield from _in_background(run)
            if sol is None:
                return
            pool += verdict.cands_from(sol.candidates)
            v = verdict.judge(pool, student_answer)
            v.resolved = n
        stored = v.to_json()
        extra = {"verdict": stored, "confidence": v.confidence.level}
        head = v.headline(p.lang)
        if (v.verdict == "correct" and not work_images) or (drill is not None and not work_images):
            text = head if v.verdict == "correct" else \
                f"{head}\n\n{verdict.words('step_drill', p.lang)}\n\n{drills.worked_solution(drill)}"
            attempt = self.store.add_attempt(user, p.id, mode="check", model=VERDICT_MODEL, backend="tutor",
                                             sampling={"verdict": stored}, status="done")
            self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
            yield TurnResult("check", p.id, attempt, text, answer=v.reference, verdict=v.verdict, extra=extra)
            return
        sol, steps, attempt = None, None, None
        if self.writes_problems or work_images:  # the model checks the work (it is given only a sure reference)
            ref = None if v.confidence.level != "strong" else \
                v.reference if v.source != "candidates" else (verdict.solution_text(v, pool, p.lang) or v.reference)
            messages = self._prompt("check", p, student_answer=student_answer or None, reference=ref,
                                    n_work_images=len(work_images))
            images = self._images(p) + [im.image for im in work_images]
            attempt, sol = yield from self._run(user, p, "check", messages, images, sampling=sampling, stop=stop,
                                                meta={"verdict": stored})
            if sol is None:
                return
            best = sol.candidates[sol.chosen]
            steps = verdict.model_check(best.text or best.thinking, best.answer, v, p.lang)
            steps = steps and f"{verdict.words('step_model', p.lang)}\n\n{steps}"
        if steps is None and (own := verdict.solution_text(v, pool, p.lang)):
            steps = f"{verdict.words('step_solution', p.lang, r=verdict.show_answer(v.reference))}\n\n{own}"
        text = f"{head}\n\n{steps or verdict.words('step_none', p.lang)}"
        if attempt is None:
            attempt = self.store.add_attempt(user, p.id, mode="check", model=VERDICT_MODEL, backend="tutor",
                                             sampling={"verdict": stored}, status="done")
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
        yield TurnResult("check", p.id, attempt, text, sol.candidates[sol.chosen].thinking if sol else "",
                         v.reference, verdict=v.verdict, solution=sol, extra=extra)

    def followup(self, user: str, problem_id: int, message: str, *, sampling: Any = None,
                 stop: threading.Event | None = None) -> Iterator[Any]:
        """A conversation that keeps the photos and every earlier turn."""
        p = self.store.get_problem(user, problem_id)
        history = self._history(p)
        if not any(m["role"] == "assistant" for m in history):
            raise InputError("no_reply_yet", "There is no answer to follow up on yet: solve the problem first.",
                             "还没有可以追问的解答：请先求解这道题。")
        messages = build_messages("followup", question=message, subject=p.subject, lang=p.lang,
                                  n_images=len(p.images), history=history)
        self.store.add_message(user, p.id, "user", message.strip())
        drill, source = self._drill(p) if not self.writes_problems else (None, "")
        if drill is not None:  # a small model cannot discuss: the worked solution, from the generator
            yield self._tutor_turn(user, p, "followup", replies.drill_followup(drill, source, p.lang))
            return
        attempt, sol = yield from self._run(user, p, "followup", messages, self._images(p), sampling=sampling,
                                            stop=stop)
        if sol is None:
            return
        best = sol.candidates[sol.chosen]
        text = (best.text or best.thinking).strip()
        if best.finish_reason == "length":  # never shown as if it were the whole reply
            text = f"{text}\n\n{replies.truncated_note(p.lang)}".strip()
        if not self.writes_problems:
            text = f"{text}\n\n{replies.say('followup_small_note', p.lang)}".strip()
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
        yield TurnResult("followup", p.id, attempt, text, best.thinking, best.answer or None, solution=sol)

    def practice(self, user: str, problem_id: int, *, sampling: Any = None,
                 stop: threading.Event | None = None) -> Iterator[Any]:
        """A similar new problem; its solution and answer are kept back until the student answers."""
        p = self.store.get_problem(user, problem_id)
        messages = self._prompt("practice", p)
        self.store.add_message(user, p.id, "user", replies.say("practice_request", p.lang))
        if not self.writes_problems:  # a small model cannot write problems: the tutor makes one of its kinds
            yield self._drill_practice(user, p, self._drill(p)[0])
            return
        attempt, sol = yield from self._run(user, p, "practice", messages, self._images(p), sampling=sampling,
                                            stop=stop)
        if sol is None:
            return
        best = sol.candidates[sol.chosen]
        prac = parse_practice(best.text, p.lang)
        if prac is None:
            why = replies.practice_unusable(best, p.lang, practice_markers(p.lang))
            drill = self._drill(p)[0]
            if drill is not None:  # a drill problem: one of the same kind from the generator instead
                yield self._drill_practice(user, p, drill, replies.say("practice_fallback", p.lang, why=why))
                return
            text = replies.say("practice_bad", p.lang, why=why)
        else:
            text = prac.problem
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt)
        yield TurnResult("practice", p.id, attempt, text, best.thinking, None, practice=prac, solution=sol)

    def answer_practice(self, user: str, problem_id: int, attempt_id: int, student_answer: str) -> TurnResult:
        """Check the student's answer to a practice problem against the answer the model wrote with it."""
        p = self.store.get_problem(user, problem_id)
        a = next((a for a in p.attempts if a.id == attempt_id and a.mode == "practice"), None)
        if a is None:
            raise InputError("no_practice", "This practice problem was not found.", "找不到这道练习题。")
        chosen = next((c for c in a.candidates if c.chosen), None)
        prac = parse_practice(chosen.text, p.lang) if chosen else None
        w = _words(p.lang)
        given = extract_final(student_answer) or student_answer.strip()
        if not given:
            raise InputError("empty_answer", "Please type your answer first.", "请先输入你的答案。")
        verdict = "unknown"
        drill = drills.recognize(prac.problem, p.lang) if prac and a.model == DRILL_MODEL else None
        if drill is not None:  # the tutor's own problem: checked exactly against the generator's gold answer
            verdict = "correct" if drills.check_answer(drill, student_answer) else "incorrect"
        elif prac and prac.answer:
            verdict = "correct" if equivalent(prac.answer, given) else "incorrect"
        self.store.add_message(user, p.id, "user", w["my_answer"] + student_answer.strip(), attempt_id=attempt_id)
        text = w[verdict] + (f"\n\n{prac.solution}" if prac and verdict != "correct" else "")
        self.store.add_message(user, p.id, "assistant", text, attempt_id=attempt_id)
        return TurnResult("practice", p.id, attempt_id, text, verdict=verdict, answer=prac.answer if prac else None,
                          practice=prac)


@dataclass
class BackgroundDelta:
    """A delta of a run that is not the reply (a check's extra solve): ``index`` >= ``RESOLVE_INDEX``."""

    index: int
    text: str


def _in_background(run: Any) -> Iterator[Any]:
    """``run``'s deltas as ``BackgroundDelta``s; returns what ``run`` returns (and closes it if stopped)."""
    try:
        while True:
            try:
                ev = next(run)
            except StopIteration as done:
                return done.value
            yield BackgroundDelta(RESOLVE_INDEX + getattr(ev, "index", 0), getattr(ev, "text", ""))
    finally:
        run.close()


def _sampling_dict(sampling: Any, n: int) -> dict:
    from dataclasses import asdict, is_dataclass

    d = asdict(sampling) if is_dataclass(sampling) else dict(sampling or {})
    d["n"] = n
    return d
