"""Tutoring modes: logic with a scripted model, and one end-to-end run on the real tiny engine."""

import re
import threading
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from engine.core import Candidate, Delta, Finished, Solution, choose_by_agreement
from tutor.errors import InputError
from tutor.intake import load_image
from tutor.reasoning import split_reasoning
from tutor.session import TurnResult, Tutor, parse_practice, strip_boxes
from tutor.store import Store


class ScriptedEngine:
    """Plays back fixed model outputs (thinking</think>answer) through the engine's event protocol.
    Used to test the tutor's own logic (verdicts, storage, parsing); the model path is tested elsewhere."""

    name = "scripted"

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.calls = []

    def stream(self, images, messages=None, n=1, stop=None, **kw):
        from tutor.answers import extract_final

        self.calls.append({"images": list(images), "messages": messages, "n": n, "kw": kw})
        raws = [self.outputs.pop(0) for _ in range(n)]
        cands = []
        for i, raw in enumerate(raws):
            yield Delta(i, raw)
            r = split_reasoning(raw)
            cands.append(Candidate(i, r.thinking, r.answer, extract_final(r.answer) or "", 10, "stop", r.truncated))
        yield Finished(Solution(cands, choose_by_agreement(cands), self.name, 100, {"total_s": 0.1}))


def _photo():
    im = Image.new("RGB", (600, 300), "white")
    ImageDraw.Draw(im).text((20, 20), "2x + 3 = 7", fill="black")
    return load_image(im)


def _last(events):
    events = list(events)
    assert isinstance(events[-1], TurnResult)
    return events[-1], events[:-1]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'h.db'}", image_dir=tmp_path / "img")
    yield s
    s.close()


def test_solve_saves_problem_attempt_candidates_and_messages(store):
    eng = ScriptedEngine(["think</think>x = \\boxed{2}", "hm</think>\\boxed{3}", "ok</think>so \\boxed{2}"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Solve 2x+3=7", lang="en")
    res, deltas = _last(t.solve("u1", pid, n=3))
    assert len(deltas) == 3 and res.answer == "2" and res.text == "x = \\boxed{2}"
    p = store.get_problem("u1", pid)
    (a,) = p.attempts
    assert a.mode == "solve" and a.status == "done" and len(a.candidates) == 3
    assert [c.chosen for c in a.candidates] == [True, False, False]
    assert [m.role for m in p.messages] == ["user", "assistant"]
    assert len(eng.calls[0]["images"]) == 1  # the stored photo went to the model


def test_hint_ladder_climbs_and_never_shows_the_answer(store):
    eng = ScriptedEngine(["s</think>\\boxed{2}", "h</think>Move 3 to the right: \\boxed{2}", "h</think>Now x = 2?"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Solve", lang="en")
    _last(t.solve("u1", pid))
    r1, _ = _last(t.hint("u1", pid))
    r2, _ = _last(t.hint("u1", pid))
    assert (r1.hint_level, r2.hint_level) == (1, 2)
    assert "\\boxed{2}" not in r1.text and "\\boxed{?}" in r1.text
    assert r2.text == "Now x = …?"  # the known answer is masked where it is stated
    prompt = eng.calls[2]["messages"][-1]["content"][-1]["text"]
    assert "2" in prompt  # level 2 was asked for


def test_check_correct_needs_no_model_and_wrong_asks_where(store):
    """One solve candidate is a weak reference: the first check solves again (n=4) before its verdict;
    a strong majority then gives a certain verdict, and only a wrong answer asks the model where."""
    from tutor import verdict

    half = "s</think>\\boxed{\\frac{1}{2}}"
    eng = ScriptedEngine([half, *[half] * 3, "t</think>p = \\boxed{0.5}",
                          "The error is in step 2.</think>Step 2 is wrong. \\boxed{incorrect}"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Find p", lang="en")
    _last(t.solve("u1", pid))
    ok, extra = _last(t.check("u1", pid, "0.5"))
    assert ok.verdict == "correct" and ok.extra["confidence"] == "strong" and len(eng.calls) == 2
    assert eng.calls[1]["n"] == verdict.RESOLVE_N and all(d.index >= 1000 for d in extra)
    assert ok.text.startswith("Correct!") and "5 of 5" in ok.text and "4 more solutions" in ok.text
    bad, _ = _last(t.check("u1", pid, "1/3"))  # no second extra solve
    assert bad.verdict == "incorrect" and "Step 2" in bad.text and len(eng.calls) == 3
    assert "1/3" in eng.calls[2]["messages"][-1]["content"][-1]["text"]
    assert bad.text.startswith("Not correct.\n\nThe answer is $\\frac{1}{2}$") and "\\boxed{incorrect}" not in bad.text
    stored = {a.id: a.sampling.get("verdict") for a in store.get_problem("u1", pid).attempts}
    assert stored[ok.attempt_id]["verdict"] == "correct" and stored[bad.attempt_id]["confidence"] == "strong"


def test_check_is_unsure_when_the_candidates_disagree_and_never_calls_the_tutors_answer_wrong(store):
    eng = ScriptedEngine(["s</think>\\boxed{2}", "a</think>\\boxed{5}", "b</think>\\boxed{7}", "c</think>\\boxed{5}",
                          "d</think>\\boxed{9}", "Looks right.</think>It is \\boxed{correct}",
                          "No.</think>Wrong at step 1. \\boxed{incorrect}"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Find the area of the circle", lang="zh")
    _last(t.solve("u1", pid))
    mine, _ = _last(t.check("u1", pid, "2"))  # the answer shown: 1 of 5 after solving again
    assert mine.verdict == "unsure" and mine.extra["confidence"] == "weak"
    assert mine.text.startswith("我不确定——我们一步一步来检查。") and "模型对你的解答的逐步检查" in mine.text
    assert "**正确**" in mine.text  # the model's opinion, in the reply language, under "not sure"
    other, _ = _last(t.check("u1", pid, "5"))  # the most supported answer, but 2 of 5: still unsure
    assert other.verdict == "unsure" and "5 个中的 2 个" in other.text


def test_check_cannot_tell_without_reference(store):
    eng = ScriptedEngine(["thinking only, never finished", *["still thinking"] * 4, "x</think>no verdict here"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Q", lang="zh")
    _last(t.solve("u1", pid))
    res, _ = _last(t.check("u1", pid, "5"))
    assert res.verdict == "unsure" and res.extra["confidence"] == "none"
    assert res.text.startswith("我不确定——我们一步一步来检查。") and "no verdict here" in res.text


def test_check_of_a_drill_problem_uses_the_exact_answer(store):
    """The drill family (typed 4x+4=12) gives the exact answer, whatever the model answered."""
    eng = ScriptedEngine(["s</think>\\boxed{21}"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "解方程 4x+4=12", lang="zh")
    _last(t.solve("u1", pid))
    ok, _ = _last(t.check("u1", pid, "x = 2"))
    assert ok.verdict == "correct" and ok.text.startswith("回答正确！") and "（$21$）是错的" in ok.text
    bad, _ = _last(t.check("u1", pid, "x = 5"))
    assert bad.verdict == "incorrect" and "正确答案是 $2$" in bad.text and "x=8÷4=2。" in bad.text
    assert len(eng.calls) == 1  # neither check ran the model


def test_check_refuses_empty_answer(store):
    t = Tutor(ScriptedEngine([]), store)
    pid = t.new_problem("u1", [_photo()], "Q", lang="en")
    with pytest.raises(InputError):
        list(t.check("u1", pid, "  "))


def test_followup_keeps_images_and_turns(store):
    eng = ScriptedEngine(["s</think>\\boxed{2}", "f</think>Because we subtract 3."])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Solve 2x+3=7", lang="en")
    _last(t.solve("u1", pid))
    res, _ = _last(t.followup("u1", pid, "Why subtract 3?"))
    msgs = eng.calls[1]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"][0] == {"type": "image"} and len(eng.calls[1]["images"]) == 1
    assert res.text == "Because we subtract 3."
    assert [m.role for m in store.get_problem("u1", pid).messages] == ["user", "assistant", "user", "assistant"]


def test_practice_hides_solution_and_checks_reply(store):
    from tutor.prompts import practice_markers

    pm, sm = practice_markers("en")
    eng = ScriptedEngine([f"t</think>{pm}\nSolve 3x = 15.\n{sm}\nDivide by 3: \\boxed{{5}}"])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Solve 2x+3=7", lang="en")
    res, _ = _last(t.practice("u1", pid))
    assert res.text == "Solve 3x = 15." and res.practice.answer == "5" and "Divide" not in res.text
    assert t.answer_practice("u1", pid, res.attempt_id, "5").verdict == "correct"
    wrong = t.answer_practice("u1", pid, res.attempt_id, "4")
    assert wrong.verdict == "incorrect" and "Divide by 3" in wrong.text


def test_other_users_cannot_use_a_problem(store):
    from tutor.errors import StoreError

    t = Tutor(ScriptedEngine(["s</think>\\boxed{1}"]), store)
    pid = t.new_problem("alice", [_photo()], "Q", lang="en")
    with pytest.raises(StoreError):
        list(t.solve("mallory", pid))


def test_engine_failure_keeps_the_question_and_marks_the_attempt(store):
    class Broken:
        name = "broken"

        def stream(self, *a, **k):
            raise RuntimeError("GPU on fire")
            yield  # pragma: no cover

    t = Tutor(Broken(), store)
    pid = t.new_problem("u1", [_photo()], "Q", lang="en")
    with pytest.raises(RuntimeError):
        list(t.solve("u1", pid))
    p = store.get_problem("u1", pid)
    assert p.messages[0].content == "Q" and p.attempts[0].status == "error"


def test_strip_boxes_and_parse_practice_edge_cases():
    assert strip_boxes("a \\boxed{\\frac{1}{2}} b \\boxed{3") == "a \\boxed{?} b \\boxed{?}"
    assert parse_practice("no markers at all", "en") is None


def test_end_to_end_on_tiny_engine(store):
    """The real model path: tiny-random through the tutor into the store."""
    from engine.core import Engine, Sampling

    eng = Engine("tiny-random")
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Solve 2x+3=7", lang="zh")
    stop = threading.Event()
    res, deltas = _last(t.solve("u1", pid, n=2, sampling=Sampling(max_new_tokens=6, seed=0), stop=stop))
    assert deltas and res.solution.candidates[0].tokens >= 1
    a = store.get_problem("u1", pid).attempts[0]
    assert a.status == "done" and len(a.candidates) == 2 and a.model == "tiny-random"


def test_reward_model_ranks_only_when_there_are_several_candidates(store):
    eng = ScriptedEngine(["a</think>\\boxed{2}"] * 3)
    t = Tutor(eng, store, reward="mini-reward")
    pid = t.new_problem("u1", [_photo()], "Solve 2x+3=7", lang="en")
    _last(t.solve("u1", pid, n=1))
    _last(t.solve("u1", pid, n=2))
    assert "reward" not in eng.calls[0]["kw"] and eng.calls[1]["kw"]["reward"] == "mini-reward"


def test_mini_with_its_reward_model_scores_every_candidate(store):
    """The real model path: the shipped mini policy and its reward model through the tutor."""
    from pathlib import Path

    from engine.core import Engine, Sampling

    photo = Path(__file__).resolve().parents[2] / "assets" / "mini" / "examples" / "00000.png"
    t = Tutor(Engine("mini"), store, reward="mini-reward")
    pid = t.new_problem("u1", [load_image(photo)], "", lang="en")
    res, _ = _last(t.solve("u1", pid, n=2, sampling=Sampling(max_new_tokens=48, seed=0)))
    scores = [c.reward for c in res.solution.candidates]
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    assert res.solution.strategy == "reward+vote"


# ------------------------------------------------------------------ small models and the drill family

MINI_EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "mini" / "examples"


class SmallScripted(ScriptedEngine):
    """A scripted engine declaring what the small presets declare (engine.presets: writes_problems=False)."""

    writes_problems = False


class CutScripted(ScriptedEngine):
    """Every reply ends at the token limit (finish_reason "length")."""

    def stream(self, *a, **kw):
        for ev in super().stream(*a, **kw):
            if isinstance(ev, Finished):
                for c in ev.solution.candidates:
                    c.finish_reason = "length"
            yield ev


def test_small_model_hints_walk_the_worked_steps_without_the_model(store):
    eng = SmallScripted([])
    t = Tutor(eng, store)
    pid = t.new_problem("u1", [_photo()], "Solve 4x+4=12", lang="en")
    first, _ = _last(t.hint("u1", pid))
    second, _ = _last(t.hint("u1", pid))
    third, _ = _last(t.hint("u1", pid))
    assert first.text == "Hint 1 of 2: 4x=12-4=8." and "x=8÷4=?" in second.text and "yourself" in third.text
    assert not eng.calls and all("2." not in r.text.split(":")[-1] for r in (first, second))
    assert [h.hint_level for h in (first, second, third)] == [1, 2, 3]


def test_small_model_practice_is_made_and_checked_by_the_tutor(store):
    t = Tutor(SmallScripted([]), store)
    pid = t.new_problem("u1", [_photo()], "计算 81+87 A.158 B.169 C.167 D.168", lang="zh")
    res, _ = _last(t.practice("u1", pid))
    assert res.practice and res.practice.answer in "ABCD" and "计算" in res.practice.problem
    assert res.text.startswith("同类练习题") and res.practice.problem in res.text
    value = re.search(rf"{res.practice.answer}\.(\S+)", res.practice.problem)[1]
    assert t.answer_practice("u1", pid, res.attempt_id, res.practice.answer).verdict == "correct"
    assert t.answer_practice("u1", pid, res.attempt_id, value).verdict == "correct"  # the option's value too
    wrong = next(L for L in "ABCD" if L != res.practice.answer)
    bad = t.answer_practice("u1", pid, res.attempt_id, wrong)
    assert bad.verdict == "incorrect" and "\\boxed" in bad.text  # the worked solution follows
    follow, _ = _last(t.followup("u1", pid, "为什么？"))  # two student turns in a row before it: still fine
    assert "个位：1+7=8。" in follow.text


def test_capable_model_practice_falls_back_or_says_why(store):
    t = Tutor(CutScripted(["t</think>Let me think of a problem"] * 2), store)
    drill = t.new_problem("u1", [_photo()], "Solve 4x+4=12", lang="en")
    res, _ = _last(t.practice("u1", drill))  # a drill problem: one of the same kind from the generator
    assert res.practice and "token limit" in res.text and res.practice.problem.startswith("Solve ")
    other = t.new_problem("u1", [_photo()], "Find the area of the circle", lang="en")
    res, _ = _last(t.practice("u1", other))
    assert res.practice is None and res.text == ("Could not make a practice problem: its reply stopped at "
                                                 "the token limit. Please try again.")


def test_unusable_hints_say_so(store):
    t = Tutor(ScriptedEngine(["t</think>The answer is \\boxed{2}."]), store)
    pid = t.new_problem("u1", [_photo()], "Find the area of the circle", lang="en")
    res, _ = _last(t.hint("u1", pid))
    assert res.text.startswith("The model's reply was not a usable hint")
    t = Tutor(SmallScripted(["t</think>答案是 \\boxed{2}。"]), store)
    pid = t.new_problem("u1", [_photo()], "求圆的面积", lang="zh")
    res, _ = _last(t.hint("u1", pid))
    assert res.text.startswith("这个小模型无法为这道题给出提示")


def test_followups_say_when_they_hit_the_token_limit(store):
    t = Tutor(CutScripted(["t</think>The area is", "t</think>Because we subtract"]), store)
    pid = t.new_problem("u1", [_photo()], "Find the area of the circle", lang="en")
    with pytest.raises(InputError, match="solve the problem first"):
        list(t.followup("u1", pid, "Why?"))  # nothing answered yet: a clear message, not "malformed history"
    _last(t.solve("u1", pid))
    res, _ = _last(t.followup("u1", pid, "Why?"))
    assert res.text == "Because we subtract\n\n(The reply stopped at the token limit, so it is incomplete.)"


def test_the_capability_is_read_from_the_preset_before_the_model_loads():
    from webui.config import LazyEngine

    assert LazyEngine("local", "mini").writes_problems is False
    assert LazyEngine("local", "tiny-random").writes_problems is False
    assert LazyEngine("local", "r1v2-38b-nf4").writes_problems is True
    assert LazyEngine("http", "http://localhost:1").writes_problems is True
    assert LazyEngine("local", "x", engine=ScriptedEngine([])).writes_problems is True


@pytest.fixture(scope="module")
def mini():
    from engine.core import Engine

    return Engine("mini")


def _mini_problem(t, name="00000.png", lang="zh"):
    return t.new_problem("u1", [load_image(MINI_EXAMPLES / name)], "", lang=lang)


def test_mini_practice_gives_a_problem_and_checks_its_answer(store, mini):
    """The real model path: the shipped mini on one of its page examples (解方程 4x+4=12)."""
    from engine.core import Sampling

    t = Tutor(mini, store)
    pid = _mini_problem(t)
    _last(t.solve("u1", pid, sampling=Sampling(seed=0)))
    res, _ = _last(t.practice("u1", pid, sampling=Sampling(seed=0)))
    assert res.practice is not None and res.practice.problem.startswith("解方程 ")  # the same kind
    gold = res.practice.answer
    assert t.answer_practice("u1", pid, res.attempt_id, f"x={gold}").verdict == "correct"
    assert t.answer_practice("u1", pid, res.attempt_id, str(int(gold) + 1)).verdict == "incorrect"


def test_mini_hints_are_steps_not_the_answer_is(store, mini):
    from engine.core import Sampling

    t = Tutor(mini, store)
    for name, lang in (("00000.png", "zh"), ("00001.png", "en")):
        pid = _mini_problem(t, name, lang)
        _last(t.solve("u1", pid, sampling=Sampling(seed=0)))
        res, _ = _last(t.hint("u1", pid, sampling=Sampling(seed=0)))
        assert "?." not in res.text.replace("=?", "") and not re.search(r"(answer is|答案是)\s*\\?boxed", res.text)
        assert res.text in ("提示 1/2：4x=12-4=8。", "Hint 1 of 3: 7x=46-4=42.")
    pid = t.new_problem("u1", [_photo()], "", lang="en")  # not a drill photo: the model's own hint, or why not
    res, _ = _last(t.hint("u1", pid, sampling=Sampling(seed=0)))
    assert res.text.startswith(("This small model cannot give hints", "I read the photo as")), res.text


def test_mini_followups_show_no_broken_latex(store, mini):
    from engine.core import Sampling
    from tutor.render import to_markdown

    t = Tutor(mini, store)
    pid = _mini_problem(t, "00002.png")
    _last(t.solve("u1", pid, sampling=Sampling(seed=0)))
    res, _ = _last(t.followup("u1", pid, "为什么？", sampling=Sampling(seed=0)))
    assert "个位：1+7=8。" in res.text and "\\boxed{D}" in res.text  # the worked solution of 81+87
    pid = t.new_problem("u1", [_photo()], "", lang="zh")  # not a drill: the model replies, with what it cannot do
    _last(t.solve("u1", pid, sampling=Sampling(seed=0)))
    for seed in range(3):
        res, _ = _last(t.followup("u1", pid, "为什么？", sampling=Sampling(seed=seed)))
        shown = to_markdown(res.text)
        assert "\\boxed}" not in shown and "这个小模型只会解自己练过的题型" in res.text
