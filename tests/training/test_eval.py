"""training.eval: the benchmark loader (shapes, errors naming the line), grading through tutor.answers,
Pass@1 / best-of-n / rates from scripted candidates, the report files, and the CLI on tiny-random."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from engine.core import Solution, make_candidate
from training.config import EvalConfig, load_config
from training.eval import (
    ANSWER_TYPES,
    Problem,
    flags_to_overrides,
    grade,
    load_problems,
    run_eval,
    score_problem,
    summarize,
    to_markdown,
)
from tutor.errors import InputError

SAMPLE = Path("assets/bench/sample.jsonl")
IMAGE = Path("assets/examples/math-en-cubic-graph.jpg").resolve()


def _write(tmp_path: Path, lines: list, name: str = "b.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                 encoding="utf-8")
    return p


GOOD = {"id": "g1", "question": "What is 1+1?", "answer": "2", "answer_type": "integer", "subject": "math"}


def _problem(answer: str, answer_type: str, options: list[str] | None = None, subject: str = "math") -> Problem:
    return Problem(id=f"p-{answer}-{subject}", question="q", images=[], options=options or [], answer=answer,
                   answer_type=answer_type, subject=subject, lang="en", problem_type="auto")


def _cand(i: int, boxed: str | None, finish: str = "stop", tokens: int = 10):
    raw = "thinking" if boxed is None else f"thinking</think>So the answer is \\boxed{{{boxed}}}."
    return make_candidate(i, raw, tokens, finish)


# ------------------------------------------------------------------------------------------- loader


def test_the_shipped_sample_loads_with_every_answer_type_and_its_images():
    problems = load_problems(SAMPLE)
    assert len(problems) >= 20
    assert {p.answer_type for p in problems} == set(ANSWER_TYPES)
    assert {p.subject for p in problems} == {"math", "physics", "chemistry", "biology"}
    assert all(im.is_file() for p in problems for im in p.images)
    assert sum(bool(p.images) for p in problems) == len(problems)
    assert len({p.id for p in problems}) == len(problems)


def test_benchmark_shapes_mathvista_olympiadbench_mmmu(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(IMAGE.read_bytes())
    p = _write(tmp_path, [
        {"pid": "mv1", "question": "Which is largest?", "image": "img/a.jpg", "choices": ["7", "9", "3"],
         "question_type": "multi_choice", "answer_type": "text", "answer": "9"},
        {"id": "ob1", "question": "求最小值。", "images": [], "final_answer": ["$-1$", "$2$"],
         "answer_type": "Numerical", "subject": "Math"},
        {"id": "mmmu1", "question": "<image 1> Which organ?", "images": ["img/a.jpg"],
         "options": {"A": "heart", "B": "lung"}, "answer": "A", "answer_type": "multiple_choice",
         "subject": "Biology"},
        "",
        {"question": "Simplify.", "answer": 0.5, "answer_type": "float"},
    ])
    mv, ob, mmmu, last = load_problems(p)
    assert (mv.answer, mv.answer_type, mv.problem_type, mv.options) == ("B", "multiple_choice", "single_choice",
                                                                         ["7", "9", "3"])
    assert mv.images == [(tmp_path / "img" / "a.jpg").resolve()] and mv.lang == "en"
    assert (ob.answer, ob.answer_type, ob.subject, ob.lang, ob.problem_type) == ("$-1$; $2$", "float", "math", "zh",
                                                                                 "fill_blank")
    assert mmmu.question == "Which organ?" and mmmu.prompt_question() == "Which organ?\nA. heart\nB. lung"
    assert (last.id, last.answer, last.line) == ("line-5", "0.5", 5)
    assert load_problems(p, limit=2) == [mv, ob]


@pytest.mark.parametrize("line, needle", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "JSON object"),
    ({"question": "q", "answer_type": "integer"}, "'answer'"),
    ({"question": "q", "answer": "", "answer_type": "integer"}, "'answer'"),
    ({"question": "q", "answer": "2"}, "'answer_type' is missing"),
    ({"question": "q", "answer": "2", "answer_type": "number-ish"}, "'answer_type' must be one of"),
    ({"question": "q", "answer": "2", "answer_type": "integer", "images": ["nowhere.png"]}, "image not found"),
    ({"question": "q", "answer": "2", "answer_type": "integer", "images": [3]}, "list of paths"),
    ({"question": "", "answer": "2", "answer_type": "integer"}, "neither a question nor images"),
    ({"question": "q", "answer": "seven", "answer_type": "multiple_choice"}, "needs 'options'"),
    ({"question": "q", "answer": "E", "answer_type": "multiple_choice", "options": ["a", "b"]}, "does not exist"),
    ({"question": "q", "answer": "banana", "answer_type": "multiple_choice", "options": ["a", "b"]},
     "option letters or an option's text"),
    ({"question": "q", "answer": "A", "answer_type": "multiple_choice", "options": {"B": "x"}}, "letters A, B, C"),
    ({"question": "q", "answer": "2", "answer_type": "integer", "lang": "fr"}, "'lang' must be zh or en"),
    ({"question": "q", "answer": "2", "answer_type": "integer", "problem_type": "essay"}, "'problem_type'"),
    ({"id": "g1", "question": "q", "answer": "2", "answer_type": "integer"}, "already used on line 1"),
])
def test_malformed_records_are_refused_naming_the_line(tmp_path, line, needle):
    p = _write(tmp_path, [GOOD, "", line])  # the bad record is on line 3 (a blank line is skipped)
    with pytest.raises(InputError) as e:
        load_problems(p)
    assert e.value.code == "bad_bench_record"
    assert e.value.message("en").startswith("b.jsonl line 3: ") and needle in e.value.message("en")
    assert e.value.message("zh").startswith("b.jsonl 第 3 行：")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError) as e:
        load_problems(tmp_path / "none.jsonl")
    assert e.value.code == "bench_missing"
    with pytest.raises(InputError) as e:
        load_problems(_write(tmp_path, ["", "  "]))
    assert e.value.code == "bench_empty" and "没有题目" in e.value.message("zh")


# ------------------------------------------------------------------------------------------ grading


def test_grading_goes_through_tutor_answers(monkeypatch):
    half = _problem("\\frac12", "float")
    cand = _cand(0, "0.5")
    assert cand.answer == "0.5" and grade(half, cand.answer)
    assert grade(_problem("\\frac12", "expression"), "1/2") and not grade(half, "0.6")
    assert grade(_problem("AC", "multiple_choice", ["x", "y", "z"]), "C,A")
    assert not grade(_problem("AC", "multiple_choice", ["x", "y", "z"]), "A")
    assert grade(_problem("B", "multiple_choice", ["cat", "dog"]), "dog")  # the option's text counts as its letter
    assert grade(_problem("water", "text"), "Water") and not grade(half, "")
    import tutor.answers

    calls = []
    monkeypatch.setattr(tutor.answers, "equivalent", lambda g, p, **kw: calls.append((g, p, kw)) or False)
    assert not grade(half, "0.5") and calls == [("\\frac12", "0.5", {"kind": "number"})]


def test_pass_at_1_best_of_n_and_rates_from_scripted_candidates():
    prob = _problem("\\frac12", "float")
    cands = [_cand(0, "0.3"), _cand(1, "0.5"), _cand(2, "1/2"), _cand(3, "0.3"), _cand(4, None, "length"),
             _cand(5, "0.5")]
    # First n = 4: groups {0, 3} ("0.3") and {1, 2} ("0.5" = "1/2") tie in size, so vote takes the group
    # seen first (candidate 0, wrong); reward takes the top score (candidate 3, wrong); reward+vote scores the
    # groups log(e^0 + e^1.2) = 1.46 < log(e^0.9 + e^1) = 1.64 and takes that group's best (candidate 2, right).
    scores = [0.0, 0.9, 1.0, 1.2]
    r = score_problem(prob, cands, n=4, k=6, strategies=["first", "vote", "reward", "reward+vote"], scores=scores)
    assert r.correct == [False, True, True, False, False, True]
    assert r.pass1 == pytest.approx(3 / 6) and r.pass_n
    assert r.chosen == {"first": 0, "vote": 0, "reward": 3, "reward+vote": 2}
    assert r.right == {"first": False, "vote": False, "reward": False, "reward+vote": True}
    assert (r.truncated, r.unfinished, r.no_answer, r.samples, r.tokens) == (1, 1, 1, 6, 60)
    k1 = score_problem(prob, cands, n=2, k=1, strategies=["vote"])
    assert k1.pass1 == 0.0 and k1.chosen == {"vote": 0} and k1.pass_n
    with pytest.raises(ValueError):
        score_problem(prob, cands[:2], n=4, k=1, strategies=["first"])


def test_summary_breaks_down_by_subject_and_type_and_renders_markdown():
    a = score_problem(_problem("2", "integer"), [_cand(0, "2"), _cand(1, "3")], n=2, k=2, strategies=["first"])
    b = score_problem(_problem("B", "multiple_choice", ["x", "y"], "physics"), [_cand(0, "A"), _cand(1, None)],
                      n=2, k=2, strategies=["first"])
    s = summarize([a, b], ["first"])
    o = s["overall"]
    assert o["problems"] == 2 and o["pass@1"] == pytest.approx(0.25) and o["best_of_n"] == {"first": 0.5}
    assert o["no_answer_rate"] == pytest.approx(0.25) and o["samples"] == 4
    assert set(s["by_subject"]) == {"math", "physics"} and s["by_subject"]["physics"]["pass@1"] == 0.0
    assert set(s["by_type"]) == {"integer", "multiple_choice"} and s["by_type"]["integer"]["best_of_n"]["first"] == 1
    report = {"model": "m", "data": "d.jsonl", "settings": {"n": 2, "k": 2, "max_new_tokens": 0, "temperature": 0.6,
              "top_p": 0.95, "seed": 0, "reward": ""}, "strategies": ["first"], "commit": "abc", "machine": "cpu",
              "wall_s": 1.0, "load_s": 0.5, "command": "python -m training eval", "summary": s}
    md = to_markdown(report)
    assert "| Pass@1 (mean over k = 2) | 25.0 |" in md and "| best-of-2, first | 50.0 |" in md
    assert "| physics | 1 | 0.0 | 0.0 | 0.0 |" in md and "## By answer type" in md


# ------------------------------------------------------------------------------------------ running


class _ScriptedEngine:
    """Answers each problem with a fixed list of boxed answers, by the question text."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str | None]]):
        self.script, self.calls = script, []

    def solve(self, images, question="", *, n=1, sampling=None, messages=None, rerank="", reward=None, **kw):
        text = messages[-1]["content"][-1]["text"]
        key = next(k for k in self.script if k in text)
        self.calls.append((key, n, len(images), sampling.seed, rerank))
        answers = self.script[key][:n]
        return Solution([_cand(i, a) for i, a in enumerate(answers)], 0, self.name, 10)

    def reward_scorer(self, reward):
        return None


def test_run_eval_with_a_scripted_engine_writes_md_json_and_samples(tmp_path):
    data = _write(tmp_path, [
        {"id": "q1", "question": "Alpha: compute half.", "answer": "\\frac12", "answer_type": "float"},
        {"id": "q2", "question": "Beta: pick.", "options": ["x", "y"], "answer": "B",
         "answer_type": "multiple_choice", "subject": "physics", "images": [str(IMAGE)]},
    ])
    eng = _ScriptedEngine({"Alpha": ["0.5", "0.4", "0.4", "1/2"], "Beta": ["A", "B", "B", None]})
    cfg = load_config("eval", None, [f"data={data}", f"out={tmp_path / 'out'}", "n=4", "k=2", "seed=7"])
    res = run_eval(cfg, engine=eng)
    assert [c[:3] for c in eng.calls] == [("Alpha", 4, 0), ("Beta", 4, 1)]
    assert [c[3] for c in eng.calls] == [7, 8] and {c[4] for c in eng.calls} == {"first"}
    o = res.report["summary"]["overall"]
    assert o["pass@1"] == pytest.approx((1 / 2 + 1 / 2) / 2)  # first k = 2: 0.5 0.4 | A B
    assert o["best_of_n"] == {"first": 0.5, "vote": 1.0} and o["pass@n"] == 1.0  # 0.5 = 1/2 outvote 0.4; B wins
    assert o["no_answer_rate"] == pytest.approx(1 / 8)
    out = tmp_path / "out"
    assert res.out == out / "results.md" and "| best-of-4, vote | 100.0 |" in res.out.read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["strategies"] == ["first", "vote"] and saved["settings"]["k"] == 2 and saved["model"] == "scripted"
    rows = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2"] and rows[1]["answers"] == ["A", "B", "B", ""]


def test_reward_strategy_needs_a_reward_model_and_bad_settings_are_refused(tmp_path):
    cfg = load_config("eval", None, [f"data={SAMPLE}", "rerank=[reward]"])
    with pytest.raises(InputError) as e:
        run_eval(cfg, engine=_ScriptedEngine({}))
    assert e.value.code == "no_reward_scores"
    with pytest.raises(InputError):
        run_eval(replace(EvalConfig(), n=0), engine=_ScriptedEngine({}))
    with pytest.raises(InputError):
        load_config("eval", None, ["n=four"])


def test_flags_become_overrides():
    assert flags_to_overrides(["eval", "--model", "tiny-random", "--max-new-tokens=8", "--rerank", "first,vote",
                               "--config", "e.yaml", "seed=3", "--limit", "2"]) == [
        "eval", "model=tiny-random", "max_new_tokens=8", "rerank=first,vote", "--config", "e.yaml", "seed=3",
        "limit=2"]
    assert flags_to_overrides(["eval", "--config=e.yaml", "--help"]) == ["eval", "--config", "e.yaml", "--help"]
    cfg = load_config("eval", None, flags_to_overrides(["--rerank", "first,vote", "--k", "3"]))
    assert cfg.rerank == ["first", "vote"] and cfg.k == 3


def test_cli_on_tiny_random_counts_rates_and_files(tmp_path, capsys):
    from training.__main__ import main

    data = _write(tmp_path, [
        {"id": "img", "question": "Which statements hold?", "images": [str(IMAGE)], "options": ["a", "b"],
         "answer": "A", "answer_type": "multiple_choice"},
        {"id": "txt", "question": "一个数的一半是 3，这个数是多少？", "answer": "6", "answer_type": "integer",
         "subject": "physics"},
    ])
    out = tmp_path / "out"
    rc = main(["eval", "--model", "tiny-random", "--data", str(data), "--n", "2", "--k", "3",
               "--max-new-tokens", "4", "--max-tiles", "1", "--out", str(out)])
    assert rc == 0 and str(out / "results.md") in capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    o = report["summary"]["overall"]
    assert report["strategies"] == ["first", "vote"] and o["problems"] == 2
    assert o["samples"] == 6 and o["mean_tokens"] <= 4  # max(n, k) = 3 samples per problem
    for rate in ("truncated_rate", "unfinished_thinking_rate", "no_answer_rate", "pass@1", "pass@n"):
        assert 0.0 <= o[rate] <= 1.0
    assert set(report["summary"]["by_subject"]) == {"math", "physics"}
    assert set(report["summary"]["by_type"]) == {"multiple_choice", "integer"}
    md = (out / "results.md").read_text()
    assert "| best-of-2, first |" in md and "| best-of-2, vote |" in md and "## By subject" in md
    assert report["command"].startswith("python -m training eval --model tiny-random --data ")
    assert len((out / "samples.jsonl").read_text().splitlines()) == 2
    assert main(["eval", "--data", str(data), "--rerank", "reward"]) == 2
    assert "reward" in capsys.readouterr().err
