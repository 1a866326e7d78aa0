"""Tests for tutor.answers (extraction, equivalence, rewards) and tutor.mathcheck (pool, timeouts)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tutor import answers, mathcheck
from tutor.answers import (
    accuracy_reward,
    equivalent,
    extract_all,
    extract_final,
    format_reward,
)
from tutor.errors import InputError, TutorError


@pytest.fixture(scope="module", autouse=True)
def _stop_pool():
    yield
    mathcheck.shutdown()


@pytest.fixture
def no_pool(monkeypatch):
    """Fail the test if the math-verify pool is used."""

    def boom(*a, **k):
        raise AssertionError(f"pool used for {a}")

    monkeypatch.setattr(answers, "math_equal", boom)


# ----------------------------------------------------------------------------- extraction

EXTRACT = [
    # boxed, nested braces, fbox, thinking split
    (r"think... \boxed{1}</think> so $x=\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"思考</think>所以 $x=\boxed{\dfrac{\sqrt{3}}{2}}$。", r"\dfrac{\sqrt{3}}{2}"),
    (r"the set is \boxed{\{1,2\}}", r"\{1,2\}"),
    (r"\fbox{4}", "4"),
    (r"\boxed 5", "5"),
    (r"We get \boxed{2}. After a long further argument about many other things we see \boxed{5}", "5"),
    # several blanks / sub-questions
    ("(1) first part ... \\boxed{3}\n(2) second part ... \\boxed{5}", "3; 5"),
    (r"x = \boxed{2}, y = \boxed{3}", "2; 3"),
    (r"\boxed{1} 和 \boxed{2}", "1; 2"),
    (r"\boxed{7}\n\n**Final answer:** \boxed{7}", "7"),
    ("答案：(1) 3；(2) 5", "3; 5"),
    # Chinese phrases
    ("计算得答案是 $\\frac{1}{2}$。其余略", r"\frac{1}{2}"),
    ("答案为3", "3"),
    ("答案：AB", "AB"),
    ("综上，故选C", "C"),
    ("选C", "C"),
    ("所以选 B。", "B"),
    ("故选：A、D", "A、D"),
    # English phrases
    ("So the answer is $5$.", "5"),
    ("Therefore the answer is 3.5. This is because...", "3.5"),
    ("Answer: 12", "12"),
    ("Final answer: $x=2$", "x=2"),
    ("**Answer**: 5", "5"),
    ("The correct option is (C).", "(C)"),
    ("答案是 3，理由如下：略", "3"),
    ("The answer is 5, which is prime.", "5"),
    ("The answer is 1, 2", "1, 2"),
    ("所以正确的选项是 B 和 D。", "B 和 D"),
    # markdown bold, punctuation
    ("So the final answer is **73**.", "73"),
    ("Working...\n\n**73**", "73"),
    ("42。", "42"),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT)
def test_extract_final(text, expected):
    assert extract_final(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "   ",
    "</think>",
    "I keep thinking about this problem but I never finish. " * 10,
    r"unfinished \boxed{3",
    r"\boxed{}",
    "<think>only thinking, no close tag and a rather long text " * 8,
])
def test_extract_final_none(text):
    assert extract_final(text) is None
    assert extract_all(text) == []


def test_extract_all_order():
    text = "(1) ... \\boxed{a}\n(2) ... \\boxed{b}\n(3) ... \\boxed{c}"
    assert extract_all(text) == ["a", "b", "c"]


def test_extract_ignores_boxes_in_thinking():
    assert extract_final(r"maybe \boxed{1} or \boxed{2}</think>The answer is \boxed{3}") == "3"


def test_extract_rejects_non_text():
    with pytest.raises(InputError) as e:
        extract_final(None)  # type: ignore[arg-type]
    assert e.value.code == "answer_not_text" and e.value.message("zh") != e.value.message("en")


# ----------------------------------------------------------------------------- equivalence tables
# Each category has cases that must be True and cases that must be False.

CHOICE = [
    ("AB", "B,A", True), ("AB", "B、A", True), ("AB", "BA", True), ("(A)", "A", True), ("C", "c", True),
    ("c", "C", True), (r"\text{C}", "C", True), ("C", "C. 3", True), ("ACD", "A, C 和 D", True),
    ("AB", "A", False), ("C", "D", False), ("ABC", "AB", False), ("A", "x=2", False), ("B", "AB", False),
]
NUMBER = [
    ("3.0", "3", True), ("1", "1.00001", True), ("0.5", "1/2", True), ("1,000", "1000", True),
    ("-0.5", r"-\frac{1}{2}", True), (r"3\times10^{8}", "3e8", True), (r"\frac13", "0.33333", True),
    ("1", "1.001", False), ("2", "-2", False), ("0.5", "0.05", False), ("3e8", "3e9", False),
    ("0", "0.0001", False),
]
UNITS = [
    ("5 m/s", "5", True), ("5米", "5", True), (r"5\text{ m/s}", "5", True), (r"5\,\mathrm{kg}", "5 kg", True),
    ("5 m", "5米", True), (r"30^\circ", "30", True), ("0.5", "50%", True), ("50%", "0.5", True),
    (r"50\%", r"\frac12", True), ("50", "50%", True), (r"1.5\times 10^{3}\ \text{J}", "1500", True),
    ("2", "2 m", True), (r"2\sqrt{2}\,\text{m}", r"\sqrt{8}", True), ("10N", "10", True),
    ("2", "2m", False),  # "2m" may be twice a variable m
    ("5 m/s", "6", False), ("5 m", "5 kg", False), ("5米", "50", False), ("5%", "0.5", False),
    ("0.5", "5%", False),
]
FRACTION = [
    (r"\frac{1}{2}", r"\dfrac12", True), ("1/2", r"\tfrac{1}{2}", True), (r"\frac{2}{4}", "0.5", True),
    (r"\frac{-3}{4}", "-0.75", True),
    (r"\frac{1}{3}", "0.33", False), (r"\frac{3}{2}", r"\frac{2}{3}", False), ("1/2", "2/1", False),
]
RADICAL = [
    (r"2\sqrt{2}", r"\sqrt{8}", True), (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt3}{2}", True),
    (r"\sqrt{2}", "1.41421", True), (r"3\sqrt{3}", r"\sqrt{27}", True),
    (r"2\sqrt{2}", r"\sqrt{6}", False), (r"\sqrt{2}", "1.41", False), (r"\sqrt{3}", r"\sqrt{2}", False),
]
INTERVAL = [
    ("(1,2]", r"x\in(1,2]", True), (r"(-\infty,1)\cup(2,+\infty)", r"(2,+\infty)\cup(-\infty,1)", True),
    ("[1,2)", "[1, 2)", True), (r"x\in[0,+\infty)", r"[0,\infty)", True),
    ("(1,2)", "1<x<2", True), ("1<x<2", "(1,2)", True), (r"(1,+\infty)", "x>1", True),
    (r"\{x|x>1\}", r"(1,+\infty)", True), ("[-1,3]", r"-1\le x\le 3", True), ("(1,2]", "x的取值范围是(1,2]", True),
    ("(1,2]", "(1,2)", False), ("[1,2]", "[1,2)", False), ("x>1", r"(-\infty,1)", False), (r"(-\infty,1)\cup(2,+\infty)", r"(2,+\infty)", False),
]
SETS = [
    (r"\{1,2\}", r"\{2,1\}", True), (r"\{1,2,3\}", r"\{3,2,1\}", True), (r"\{-1,1\}", r"\{1,-1\}", True),
    (r"\{1,2\}", r"\{1,3\}", False), (r"\{1,2\}", r"\{1,2,3\}", False),
]
EQUATION = [
    ("y=2x+1", "2x+1=y", True), ("y=2x+1", "y-2x-1=0", True),
    (r"\frac{x^2}{4}+\frac{y^2}{3}=1", "3x^2+4y^2=12", True), ("2x+4y-3=0", r"y=-\frac{1}{2}x+\frac{3}{4}", True),
    ("x=1", "1", True),  # documented: an assignment matches its value
    ("y=2x+1", "y=3x+1", False), ("x^2=1", "x=1", False), ("f(x)=2x", "f(x)=3x", False),
    ("x+y=1", "x+y=2", False), ("k=-1", "k=1", False), ("x=1", "y=1", False),
]
TEXT = [
    ("增大", "增大。", True), ("增 大", "增大", True), ("Increasing", "increasing.", True), ("yes", "Yes", True),
    (r"\text{增大}", "增大", True),
    ("增大", "减小", False), ("increasing", "decreasing", False), ("不变", "增大", False),
]
MULTI = [
    ("1; 2", "1；2", True), ("(1) 3 (2) 5", "(1)3；(2)5", True), (r"\frac12; 增大", "0.5；增大。", True),
    ("3; 5", "3, 5", True), ("AB; 2", "BA; 2.0", True),
    ("1; 2", "2; 1", False), ("1; 2", "1", False), ("1; 2; 3", "1; 2", False), ("3; 5", "3; 6", False),
]
KNOWN_FALSE_POSITIVES = [
    # math-verify reads bare equations as the number 0: two different lines must differ
    ("3*x-1*y+13=0", "3x + 4y + 14=0", False),
    # math-verify's "solve both" calls two unsolvable equations equal
    ("x=x+1", "x=x+2", False),
    # "find all": a subset is wrong
    (r"\{1,2,3\}", r"\{1,2\}", False), ("1,2,3", "1,2", False), ("x=1, x=2", "x=1", False),
    ("n=2,3,4", "n=1,2,3", False), (r"\pm 1", "1", False), ("x=1或x=2", "x=1", False),
    # tiny numbers: tolerance is relative
    (r"\frac{1}{2004!}", r"\frac{1}{2006!}", False),
    # math-verify strips "units" such as c, d, m, ab: "3ab" is not 3
    ("3", "3ab", False), ("2", "2c", False),
    # a superset is wrong too
    ("x=2", "x=2或x=-2", False),
    # markdown bold is not a power / factorial
    ("**73**", "73", True), ("74", "**73**", False),
    # the positives next to them still hold
    ("x=1或x=2", "x=2, x=1", True), (r"\{1,2,3\}", "3,1,2", True),
]
PHRASES = [
    ("答案是 3", "3", True), ("故选C", "C", True), ("最小值为3", "3", True), ("The answer is $5$.", "5", True),
    (r"解得 $x=\boxed{2}$", "2", True), ("答案为 4", "5", False),
]

CATEGORIES = {
    "choice": CHOICE, "number+tolerance": NUMBER, "units/percent": UNITS, "fraction": FRACTION,
    "radical": RADICAL, "interval": INTERVAL, "set": SETS, "equation": EQUATION, "text": TEXT,
    "multi-blank": MULTI, "known false positives": KNOWN_FALSE_POSITIVES, "answer phrases": PHRASES,
}
ALL_CASES = [pytest.param(g, p, exp, id=f"{cat}:{g}|{p}") for cat, rows in CATEGORIES.items() for g, p, exp in rows]


@pytest.mark.parametrize(("gold", "pred", "expected"), ALL_CASES)
def test_equivalent(gold, pred, expected):
    assert equivalent(gold, pred) is expected


def test_every_category_has_both_directions():
    for cat, rows in CATEGORIES.items():
        assert {exp for _, _, exp in rows} == {True, False}, cat


@pytest.mark.parametrize(("gold", "pred"), [
    ("AB", "B,A"), ("C", "D"), ("0.5", "50%"), ("5 m/s", "5"), (r"\frac{1}{2}", r"\dfrac12"), ("3.0", "3"),
    ("增大", "增大。"), ("Increasing", "increasing"), ("1; 2", "1；2"), ("1", "2"), ("x^2+1", "x^2+1"),
])
def test_fast_paths_do_not_use_pool(no_pool, gold, pred):
    equivalent(gold, pred)


def test_tolerance_parameter():
    assert not equivalent("1", "1.005")
    assert equivalent("1", "1.005", rel_tol=1e-2)
    assert equivalent(r"\sqrt{2}", "1.414", rel_tol=1e-3)
    assert not equivalent(r"\sqrt{2}", "1.414", rel_tol=1e-6)


def test_kind_forces_the_path(no_pool):
    assert equivalent("ab", "AB", kind="text")
    assert equivalent("c", "C", kind="choice")
    assert not equivalent("c", "x", kind="choice")
    assert not equivalent("x=1", "2", kind="choice")


def test_kind_number_and_expr_use_math():
    assert equivalent(r"2\sqrt{2}", "2.828427", kind="number")
    assert equivalent("(x+1)^2", "x^2+2x+1", kind="expr")
    assert not equivalent("(x+1)^2", "x^2+1", kind="expr")


@pytest.mark.parametrize(("gold", "pred"), [("", "1"), ("1", ""), ("1", "   "), ("1", "x" * 50_000)])
def test_empty_or_huge_answers_are_false(gold, pred):
    assert equivalent(gold, pred) is False


def test_bad_arguments_raise_tutor_errors():
    with pytest.raises(InputError) as e:
        equivalent(1, "1")  # type: ignore[arg-type]
    assert e.value.code == "answer_not_text"
    with pytest.raises(InputError) as e:
        equivalent("1", "1", kind="fraction")
    assert e.value.code == "bad_answer_kind" and "fraction" in e.value.message("en")
    assert "类型" in e.value.message("zh")
    with pytest.raises(TutorError):
        equivalent("1", "1", rel_tol=-1)
    with pytest.raises(TutorError):
        equivalent("1", "1", timeout=0)


# ----------------------------------------------------------------------------- pool, threads, timeouts


def test_warm_up_starts_the_pool_in_the_background():
    """The app starts the checker at start-up, so the first answer check does not wait for sympy."""
    mathcheck.shutdown()
    assert not mathcheck.pool_started()
    t = mathcheck.warm_up()
    t.join(120)
    assert mathcheck.pool_started() and not t.is_alive()
    assert equivalent(r"\frac{1}{2}x", "0.5x")  # math-verify in the warm pool
    mathcheck.shutdown()


def test_equivalent_from_non_main_threads():
    cases = [(r"2\sqrt{2}", r"\sqrt{8}", True), (r"\{1,2\}", r"\{2,1\}", True), ("y=2x+1", "y=3x+1", False),
             ("(1,2]", r"x\in(1,2]", True)]
    results: list[bool] = []
    mathcheck.shutdown()  # the pool must also start from a non-main thread
    assert not mathcheck.pool_started()
    t = threading.Thread(target=lambda: results.append(equivalent(cases[0][0], cases[0][1])))
    t.start()
    t.join(60)
    assert results == [True]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda c: equivalent(c[0], c[1]), cases * 2))
    assert got == [c[2] for c in cases] * 2


def test_stuck_worker_is_killed_and_pool_restarts():
    start = time.monotonic()
    finished, result = mathcheck.run_in_pool(mathcheck._sleep, 60, timeout=0.5)
    assert (finished, result) == (False, None)
    assert time.monotonic() - start < 10
    assert equivalent(r"2\sqrt{2}", r"\sqrt{8}")  # the rebuilt pool works


def test_slow_comparison_times_out_as_false():
    equivalent(r"2\sqrt{2}", r"\sqrt{8}")  # pool warm
    start = time.monotonic()
    assert equivalent("(x+1)^{90}", "(x+2)^{90}-x", timeout=0.2) is False
    assert time.monotonic() - start < 8


def test_mathcheck_guards_in_a_worker():
    def run(g, p):
        return mathcheck.run_in_pool(mathcheck.compare, g, p, 1e-4, timeout=20)

    assert run("x=x+1", "x=x+2") == (True, False)
    assert run("2x=2", "x=1") == (True, True)
    assert run("x=1", "y=1") == (True, False)
    assert mathcheck.math_equal(r"\sqrt{2}", "1.4142", rel_tol=1e-4, timeout=20)


# ----------------------------------------------------------------------------- rewards

GOOD = "Let me compute 1+1.\n</think>\nThe sum is \\boxed{2}."


def test_format_reward():
    completions = [
        GOOD,
        "<think>thinking</think>\\boxed{2}",  # a stray opening tag is tolerated, never required
        "no close tag \\boxed{2}",
        "</think>\\boxed{2}",  # empty thinking
        "a</think>b</think>\\boxed{2}",  # two close tags
        "thinking</think>The answer is 2.",  # no box
        "thinking</think>\\boxed{2",  # truncated box
        "thinking \\boxed{2}</think>nothing here",  # box only inside the thinking
    ]
    assert format_reward(completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_format_reward_chat_messages():
    chat = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "x"}]]
    assert format_reward(chat) == [1.0, 0.0]


def test_accuracy_reward():
    completions = [
        GOOD,
        "hmm</think>\\boxed{3}",
        "hmm</think>故选 C",
        "hmm</think>(1) \\boxed{1} (2) \\boxed{增大}",
        "hmm</think>no answer here at all, just a long rambling paragraph " * 5,
        "hmm</think>\\boxed{2}",
    ]
    solutions = [
        "$2$",
        "Since ... we get \\boxed{2}.",
        "C",
        "(1) 1 (2) 增大",
        "2",
        "a long solution with no final answer marked anywhere in it at all, " * 40,
    ]
    assert accuracy_reward(completions, solutions) == [1.0, 0.0, 1.0, 1.0, 0.0, None]


def test_accuracy_reward_trl_style_keywords_and_chat():
    chat = [[{"role": "assistant", "content": "t</think>\\boxed{\\frac12}"}]]
    assert accuracy_reward(chat, solution=["0.5"], prompts=["p"]) == [1.0]
    assert accuracy_reward(chat, answer=["AB"], answer_kind=["choice"]) == [0.0]
    assert accuracy_reward(["t</think>\\boxed{AB}"], answer=["B,A"]) == [1.0]


def test_accuracy_reward_bad_batch():
    with pytest.raises(InputError) as e:
        accuracy_reward(["a", "b"], ["1"])
    assert e.value.code == "reward_bad_batch"


def test_workers_exit_when_the_app_is_killed(tmp_path):
    """SIGKILL the process that started the pool: its workers (children of the fork server, not of
    the app) must not outlive it; before, every killed app left its math-check workers running."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    pids = tmp_path / "pids"
    code = ("import sys; from tutor import mathcheck as m; m.math_equal('x^2', 'x*x'); "
            "ex = m._POOL.executor(); open(sys.argv[1], 'w').write(' '.join(str(p) for p in ex._processes)); "
            "import time; time.sleep(600)")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code, str(pids)], cwd=root)
    try:
        deadline = time.monotonic() + 120
        while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p) for p in pids.read_text().split()]
        assert workers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie waiting for its parent is gone for our purpose
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 15
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers still running after the app was killed: {left}"
