"""Confidence-aware "Check my answer" (tutor.verdict): the rules on hand-built candidate lists, and
Tutor.check on the real tiny-random engine."""

import itertools
import re
import threading
from types import SimpleNamespace

import pytest
from PIL import Image, ImageDraw

from tutor import verdict
from tutor.intake import load_image
from tutor.session import TurnResult, Tutor
from tutor.store import Store
from tutor.verdict import Cand, judge, model_check, reference_pool, show_answer, words

CJK = re.compile(r"[\u3400-\u9fff]")
VERDICT_WORDS = {lang: {k: words(k, lang) for k in verdict.VERDICTS} for lang in ("en", "zh")}


def pool(*answers, shown=0, rewards=None):
    """Candidates with these final answers ("" = none); the ``shown`` one is the answer the tutor showed."""
    return [Cand(a, None if rewards is None else rewards[i], i == shown) for i, a in enumerate(answers)]


def test_an_answer_equal_to_the_tutors_own_is_never_wrong():
    """Every pool of up to 5 candidates over {2, 5, 7, none}: the shown answer is never called wrong."""
    seen = set()
    for n in range(1, 6):
        for answers in itertools.product(("2", "5", "7", ""), repeat=n):
            if not answers[0]:
                continue
            v = judge(pool(*answers), answers[0])
            assert v.verdict != "incorrect", answers
            seen.add(v.verdict)
            if v.student_group == 0:  # equal to the reference: never wrong either
                assert v.verdict in ("correct", "unsure")
    assert seen == {"correct", "unsure"}
    v = judge(pool("2", "x=2", "2"), "x = 2")  # the project's equivalence: x = 2 is 2
    assert (v.verdict, v.confidence.level, v.student_group) == ("correct", "strong", 0)
    v = judge(pool("2", "5", "5", "5"), "x=2")  # the majority moved away from what was shown
    assert v.verdict == "unsure" and v.confidence.level == "strong" and "showed earlier" in v.headline("en")


def test_a_minority_match_with_a_weak_reference_is_unsure():
    v = judge(pool("2", "5", "7", "5", "2"), "5")  # 2 of 5 each: no majority
    assert v.verdict == "unsure" and v.confidence.level == "weak" and "no_majority" in v.confidence.reasons
    assert v.student_group is not None
    head = v.headline("en")
    assert head.startswith("I'm not sure — let's check it step by step.") and "2 of 5" in head
    assert judge(pool("2", "5", "7", "5", "2"), "9").verdict == "unsure"  # matches none, but no majority
    assert judge(pool("2"), "5").verdict == "unsure"  # one candidate: weak, never a sure "wrong"
    assert judge(pool("2"), "5").confidence.reasons == ("single",)
    assert judge(pool("", ""), "5").confidence.level == "none"
    assert judge(pool("2", "2", "2"), "").verdict == "unsure"  # nothing to read in the student's answer


def test_a_strong_majority_gives_a_certain_verdict():
    v = judge(pool("2", "2", "5", "2", ""), "2")
    assert (v.verdict, v.confidence.level, v.confidence.agree, v.confidence.n) == ("correct", "strong", 3, 5)
    v = judge(pool("2", "2", "5", "2"), "5")  # a minority of a strong majority: wrong, surely
    assert v.verdict == "incorrect" and v.reference == "2" and v.student_group == 1
    assert "only 1 of 4" in v.headline("en")
    assert judge(pool("2", "2", "2"), "7").verdict == "incorrect"
    assert judge(pool("2", "2"), "2").verdict == "unsure"  # two agreeing are still too few


def test_reward_scores_count_and_a_disagreeing_reward_weakens():
    v = judge(pool("2", "5", "5", "2", rewards=[3.0, -1.0, -1.0, 2.0]), "5")
    assert v.reference == "2" and v.confidence.margin is not None and v.confidence.margin > 3
    assert v.verdict == "unsure"  # 2 of 4: no majority, whatever the reward says
    v = judge(pool("5", "2", "5", "5", rewards=[-2.0, 4.0, -2.0, -2.0], shown=1), "5")
    assert v.reference == "2" and "reward_disagrees" in v.confidence.reasons and v.verdict == "unsure"
    v = judge(pool("2", "2", "2", "5", rewards=[1.0, 1.0, 1.0, 0.5]), "2")
    assert v.verdict == "correct" and v.confidence.margin > 0 and "margin" in v.to_json()


def test_a_gold_answer_wins_and_says_the_shown_answer_was_wrong():
    v = judge(pool("21"), "x = 2", gold="2", gold_source="drill")
    assert (v.verdict, v.confidence.level, v.source, v.shown_wrong) == ("correct", "strong", "drill", True)
    assert "($21$) was wrong" in v.headline("en") and "（$21$）是错的" in v.headline("zh")
    assert judge(pool("2"), "5", gold="2").verdict == "incorrect"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_headline_agrees_with_the_verdict_in_one_language(lang):
    other = "zh" if lang == "en" else "en"
    cases = [pool("2", "2", "5", "2"), pool("2"), pool("2", "5", "7"), pool("", ""), pool("2", "5", "5", "5")]
    for cands, student in itertools.product(cases, ("2", "5", "x = 7", "")):
        v = judge(cands, student)
        head = v.headline(lang)
        first = head.split("\n\n")[0]
        assert first == VERDICT_WORDS[lang][v.verdict]  # the words say the verdict given, nothing else
        assert not any(w in head for k, w in VERDICT_WORDS[lang].items() if k != v.verdict)
        assert not any(w in head for w in VERDICT_WORDS[other].values())
        if lang == "en":
            assert not CJK.search(head), head
        else:
            assert CJK.search(head.split("\n\n")[-1]), head
        if v.reference:  # the reference is a clean answer, never the model's sentence
            assert "\\boxed" not in head and "答案是" not in head.replace("正确答案是", "")
    assert set(verdict._WORDS["en"]) == set(verdict._WORDS["zh"])
    for key in verdict._WORDS["en"]:
        assert set(re.findall(r"\{(\w+)", verdict._WORDS["en"][key])) == \
            set(re.findall(r"\{(\w+)", verdict._WORDS["zh"][key])), key


def test_answers_are_shown_clean():
    assert show_answer("\\boxed{2}") == "$2$"
    assert show_answer("$x=2$。") == "$x=2$"
    assert show_answer("2：7") == "$2:7$"
    assert show_answer("北京") == "北京" and show_answer("") == ""


def test_the_models_check_never_contradicts_a_sure_verdict():
    sure_wrong = judge(pool("2", "2", "2"), "5")
    assert model_check("Step 2 is wrong. \\boxed{incorrect}", "incorrect", sure_wrong, "en") == \
        "Step 2 is wrong. **incorrect**"
    assert model_check("Looks fine. \\boxed{correct}", "correct", sure_wrong, "en") is None
    assert model_check("答案是 \\boxed{5}。", "5", sure_wrong, "zh") is None  # states another answer
    assert model_check("答案是 \\boxed{2}。", "2", sure_wrong, "zh") == "答案是 \\boxed{2}。"
    unsure = judge(pool("2"), "5")
    assert model_check("It is \\boxed{correct}", "correct", unsure, "zh") == "It is **正确**"  # an opinion
    assert model_check("题目x=12=27x=12 B.", "", unsure, "en") is None  # Chinese in an English reply


def test_the_reference_pool_is_the_latest_solve_and_the_checks_extra_solves():
    def att(mode, answers, chosen=0, purpose=None):
        cands = [SimpleNamespace(answer=a, reward=None, text=f"… {a}", chosen=i == chosen) for i, a in enumerate(answers)]
        return SimpleNamespace(mode=mode, candidates=cands, sampling={"purpose": purpose} if purpose else {})

    old, new = att("solve", ["9"]), att("solve", ["2", "3"], chosen=1)
    extra = att("check", ["2", "2", "3", "2"], purpose=verdict.RESOLVE)
    cands, resolved = reference_pool([old, new, att("check", ["correct"]), extra])
    assert [c.answer for c in cands] == ["2", "3", "2", "2", "3", "2"] and resolved
    assert [c.shown for c in cands] == [False, True, False, False, False, False]
    assert reference_pool([old]) == ([Cand("9", None, True, "… 9")], False)
    assert reference_pool([]) == ([], False)


# ---------------------------------------------------------------- Tutor.check on the real tiny engine


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'h.db'}", image_dir=tmp_path / "img")
    yield s
    s.close()


def _drawn(text="3x + 1 = 10"):
    im = Image.new("RGB", (600, 300), "white")
    ImageDraw.Draw(im).text((20, 20), text, fill="black")
    return load_image(im)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_check_on_tiny_random_solves_again_and_says_how_sure_it_is(store, lang):
    """The real model path: tiny-random's single candidate is a weak reference, so the check solves
    again with RESOLVE_N more before its verdict; the verdict carries a confidence, is stored on the
    check's attempt, and every word of the tutor's is in the reply language."""
    from engine.core import Engine, Sampling

    t = Tutor(Engine("tiny-random"), store)
    question = "求圆的面积" if lang == "zh" else "Find the area of the circle"
    pid = t.new_problem("u1", [_drawn()], question, lang=lang)
    sampling = Sampling(max_new_tokens=8, seed=0)
    list(t.solve("u1", pid, n=1, sampling=sampling))
    events = list(t.check("u1", pid, "x = 2", sampling=sampling, stop=threading.Event()))
    res = events[-1]
    assert isinstance(res, TurnResult) and res.verdict in verdict.VERDICTS
    assert res.extra["confidence"] in verdict.LEVELS and res.extra["verdict"]["resolved"] == verdict.RESOLVE_N
    assert all(ev.index >= 1000 for ev in events[:-1])  # the extra solve streams, but not as the reply
    attempts = store.get_problem("u1", pid).attempts
    extra = [a for a in attempts if a.sampling.get("purpose") == verdict.RESOLVE]
    assert len(extra) == 1 and len(extra[0].candidates) == verdict.RESOLVE_N and extra[0].model == "tiny-random"
    (mine,) = [a for a in attempts if a.id == res.attempt_id]
    assert mine.mode == "check" and mine.sampling["verdict"]["verdict"] == res.verdict
    assert mine.sampling["verdict"]["confidence"] == res.extra["confidence"]
    assert res.text.startswith(VERDICT_WORDS[lang][res.verdict])
    said = words("resolved", lang, k=verdict.RESOLVE_N)
    assert said in res.text  # it says it solved again
    tutors_words = res.text.split(said)[0]
    if lang == "en":
        assert not CJK.search(tutors_words), tutors_words
    else:
        assert not re.search(r"\b(?:Correct|Not correct|I'm not sure|Your answer|The answer)\b", tutors_words)
    again = list(t.check("u1", pid, "x = 2", sampling=sampling))[-1]  # the extra solve is not repeated
    assert again.extra["verdict"]["n"] == 1 + verdict.RESOLVE_N and not again.extra["verdict"]["resolved"]
