"""Accuracy on a benchmark-format JSONL: Pass@1 over k samples, best-of-n per rerank strategy.

    python -m training eval --model tiny-random --data assets/bench/sample.jsonl --n 4 --k 4 \\
        --max-new-tokens 32 --reward tiny-reward --out runs/eval-tiny
    python -m training eval --server http://gpu-box:30000 --data mmmu_val.jsonl --n 8 --k 4
    python -m training eval --config my_eval.yaml n=8 rerank=[vote,reward+vote]

    from training.eval import load_problems, score_problem, summarize
    problems = load_problems("assets/bench/sample.jsonl")
    result = score_problem(problems[0], candidates, n=4, k=1, strategies=["first", "vote"])

One JSON object per line, in the shape of MathVista / MMMU / OlympiadBench exports::

    {"id": "p1", "question": "...", "images": ["img/p1.png"], "options": ["1/4", "1/3"],
     "answer": "B", "answer_type": "multiple_choice", "subject": "math", "lang": "en"}

``answer_type`` is one of multiple_choice, integer, float, text, expression (aliases such as
MathVista's ``question_type: multi_choice`` or OlympiadBench's ``Numerical`` are read too);
``images`` are paths relative to the JSONL file (``image``: one path); ``options`` a list (letters
A, B, ... in order) or a ``{"A": ...}`` mapping; ``answer`` a string, a number, or a list (one per
blank, compared in order). A multiple-choice gold given as an option's text is turned into its
letter. Optional: ``id`` (default: the line number), ``lang`` (default: zh if the question has
Chinese characters), ``problem_type`` (a ``tutor.prompts`` type; default from the answer type).
A malformed record is an ``InputError`` naming the file and line.

Per problem the engine draws ``max(n, k)`` candidates in one batched call (``rerank="first"``, so
the engine chooses nothing itself). Pass@1 is the share of correct among the first k; each strategy
of ``engine.rerank`` (``first``, ``vote``; ``reward`` and ``reward+vote`` when ``--reward`` gives a
reward model, whose scores come from ``engine.reward``) chooses among the first n; pass@n counts a
problem when any of the first n is right (the ceiling for reranking). Grading is
``tutor.answers.equivalent`` with the answer type's kind. Also reported: the share of samples cut
at ``max_new_tokens`` (truncated), that never closed their thinking, and that have no final answer;
all of it overall, per subject and per answer type, in ``results.md`` and ``results.json`` under
``--out``, with every sample's answer in ``samples.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import subprocess
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tutor.errors import InputError

log = logging.getLogger(__name__)

ANSWER_TYPES = ("multiple_choice", "integer", "float", "text", "expression")
KIND_OF_TYPE = {"multiple_choice": "choice", "integer": "number", "float": "number", "text": "auto",
                "expression": "expr"}
TYPE_ALIASES = {"multi_choice": "multiple_choice", "choice": "multiple_choice", "mc": "multiple_choice",
                "single_choice": "multiple_choice", "numerical": "float", "number": "float", "numeric": "float",
                "int": "integer", "str": "text", "string": "text", "expr": "expression", "equation": "expression",
                "interval": "expression", "tuple": "expression", "list": "expression"}
SUBJECT_ALIASES = {"mathematics": "math", "maths": "math", "chem": "chemistry", "bio": "biology", "phys": "physics"}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CJK = re.compile(r"[\u4e00-\u9fff]")
_MMMU_IMAGE = re.compile(r"<image \d+>\s*")
_LETTERS_ONLY = re.compile(r"^[\sA-Z,;、()（）]+$")


@dataclass(frozen=True)
class Where:
    """A record's place, for error messages: ``sample.jsonl line 3`` / ``sample.jsonl 第 3 行``."""

    file: str = "record"
    line: int = 0

    @property
    def en(self) -> str:
        return f"{self.file} line {self.line}" if self.line else self.file

    @property
    def zh(self) -> str:
        return f"{self.file} 第 {self.line} 行" if self.line else self.file


def _bad(where: Where, en: str, zh: str, detail: str = "") -> InputError:
    return InputError("bad_bench_record", f"{where.en}: {en}", f"{where.zh}：{zh}", detail)


# ------------------------------------------------------------------------------------------ loading


@dataclass
class Problem:
    """One benchmark problem, checked and normalised."""

    id: str
    question: str
    images: list[Path]
    options: list[str]
    answer: str  # several blanks joined with "; " (tutor.answers compares them in order)
    answer_type: str  # one of ANSWER_TYPES
    subject: str  # as given (lower case); the prompt's subject is ``prompt_subject``
    lang: str
    problem_type: str  # tutor.prompts problem type
    line: int = 0

    @property
    def prompt_subject(self) -> str:
        from tutor.prompts import SUBJECTS

        return self.subject if self.subject in SUBJECTS else "math"

    def prompt_question(self) -> str:
        """The question with its options as lines ``A. ...`` (the way the tutor's examples write them)."""
        lines = [self.question.strip()] if self.question.strip() else []
        lines += [f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options)]
        return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _first(rec: dict, *names: str) -> Any:
    for n in names:
        if rec.get(n) not in (None, ""):
            return rec[n]
    return None


def _answer_type(rec: dict, where: Where) -> str:
    raw = _first(rec, "answer_type")
    if _first(rec, "question_type") in ("multi_choice", "multiple-choice", "multiple_choice"):
        raw = "multiple_choice"  # MathVista / MMMU: the question type decides, answer_type is the value's
    if raw is None:
        raise _bad(where, f"'answer_type' is missing (one of {', '.join(ANSWER_TYPES)}).",
                   f"缺少“answer_type”（可选：{'、'.join(ANSWER_TYPES)}）。")
    t = str(raw).strip().lower().replace("-", "_").replace(" ", "_")
    t = TYPE_ALIASES.get(t, t)
    if t not in ANSWER_TYPES:
        raise _bad(where, f"'answer_type' must be one of {', '.join(ANSWER_TYPES)} (got {raw!r}).",
                   f"“answer_type”只能是 {'、'.join(ANSWER_TYPES)}（收到 {raw!r}）。")
    return t


def _options(rec: dict, where: Where) -> list[str]:
    raw = _first(rec, "options", "choices")
    if raw is None:
        return []
    if isinstance(raw, dict):
        keys = [str(k).strip().upper() for k in raw]
        if keys != list(LETTERS[: len(keys)]):
            raise _bad(where, "'options' keys must be the letters A, B, C, ... in order.",
                       "“options”的键必须依次是字母 A、B、C……")
        raw = list(raw.values())
    if not isinstance(raw, list) or not all(isinstance(o, (str, int, float)) for o in raw):
        raise _bad(where, "'options' must be a list of texts (or a mapping from letters).",
                   "“options”必须是文字列表（或从字母到文字的映射）。")
    if len(raw) > len(LETTERS):
        raise _bad(where, f"Too many options ({len(raw)}).", f"选项太多（{len(raw)} 个）。")
    return [_text(o) for o in raw]


def _choice_gold(answer: str, options: list[str], where: Where) -> str:
    """The gold letters of a choice question; an option's text is turned into its letter."""
    answer = answer.strip().upper() if len(answer.strip()) == 1 else answer.strip()  # "b" -> "B"
    letters = re.sub(r"[\s,;、()（）]", "", answer)
    if options and answer in options and not (len(letters) == 1 and letters in LETTERS[: len(options)]):
        return LETTERS[options.index(answer)]
    if not letters or not _LETTERS_ONLY.match(answer):
        raise _bad(where, f"A multiple-choice answer must be option letters or an option's text (got {answer!r}).",
                   f"选择题的答案必须是选项字母或某个选项的原文（收到 {answer!r}）。")
    if options and any(c not in LETTERS[: len(options)] for c in letters):
        raise _bad(where, f"Answer {answer!r} names an option that does not exist ({len(options)} options).",
                   f"答案 {answer!r} 指向不存在的选项（共 {len(options)} 个选项）。")
    return "".join(sorted(set(letters)))


def parse_record(rec: Any, base: Path, where: Where = Where()) -> Problem:
    """One JSONL record as a :class:`Problem` (image paths relative to ``base``); ``where`` starts
    every error message."""
    from tutor.prompts import PROBLEM_TYPES

    if not isinstance(rec, dict):
        raise _bad(where, "each line must be a JSON object.", "每一行都必须是一个 JSON 对象。")
    question = rec.get("question", "")
    if not isinstance(question, str):
        raise _bad(where, "'question' must be text.", "“question”必须是文字。")
    question = _MMMU_IMAGE.sub("", question).strip()  # MMMU's "<image 1>" placeholders: the images come first
    imgs = _first(rec, "images", "image", "image_paths")
    imgs = [] if imgs is None else [imgs] if isinstance(imgs, str) else imgs
    if not isinstance(imgs, list) or not all(isinstance(i, str) and i for i in imgs):
        raise _bad(where, "'images' must be a list of paths.", "“images”必须是路径列表。")
    paths = [(base / i).resolve() for i in imgs]
    missing = [i for i, p in zip(imgs, paths, strict=True) if not p.is_file()]
    if missing:
        raise _bad(where, f"image not found: {missing[0]} (paths are relative to the JSONL file).",
                   f"找不到图片：{missing[0]}（路径相对于 JSONL 文件）。")
    if not question.strip() and not paths:
        raise _bad(where, "the record has neither a question nor images.", "该记录既没有题目文字也没有图片。")
    raw_answer = _first(rec, "answer", "final_answer", "gold")
    if isinstance(raw_answer, list):
        raw_answer = "; ".join(_text(a) for a in raw_answer if _text(a))
    if raw_answer is None or not isinstance(raw_answer, (str, int, float)) or not _text(raw_answer):
        raise _bad(where, "'answer' is missing or empty.", "缺少“answer”或它是空的。")
    answer = _text(raw_answer)
    atype = _answer_type(rec, where)
    options = _options(rec, where)
    if atype == "multiple_choice":
        if not options and not _LETTERS_ONLY.match(answer if len(answer) > 1 else answer.upper()):
            raise _bad(where, "a multiple-choice record needs 'options' (or option letters as the answer).",
                       "选择题记录需要“options”（或以选项字母作答案）。")
        answer = _choice_gold(answer, options, where)
    subject = str(rec.get("subject") or "math").strip().lower()
    subject = SUBJECT_ALIASES.get(subject, subject)
    lang = str(rec.get("lang") or ("zh" if _CJK.search(question) else "en")).lower()
    if lang not in ("zh", "en"):
        raise _bad(where, f"'lang' must be zh or en (got {lang!r}).", f"“lang”只能是 zh 或 en（收到 {lang!r}）。")
    ptype = rec.get("problem_type")
    if ptype is None:
        if atype == "multiple_choice":
            ptype = "multiple_choice" if len(answer) > 1 else "single_choice"
        else:
            ptype = "fill_blank" if ";" in answer else "auto"
    if ptype not in PROBLEM_TYPES:
        raise _bad(where, f"'problem_type' must be one of {', '.join(PROBLEM_TYPES)} (got {ptype!r}).",
                   f"“problem_type”只能是 {'、'.join(PROBLEM_TYPES)}（收到 {ptype!r}）。")
    pid = _text(_first(rec, "id", "pid", "question_id") or f"line-{where.line}")
    return Problem(id=pid, question=question, images=paths, options=options, answer=answer, answer_type=atype,
                   subject=subject, lang=lang, problem_type=ptype, line=where.line)


def load_problems(path: str | Path, limit: int = 0) -> list[Problem]:
    """Every record of a benchmark JSONL (blank lines skipped); errors name the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise InputError("bench_missing", f"Benchmark file not found: {p}", f"找不到评测文件：{p}")
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    with p.open(encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = Where(p.name, no)
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as e:
                raise _bad(where, f"not valid JSON ({e.msg}, column {e.colno}).",
                           f"不是合法的 JSON（{e.msg}，第 {e.colno} 列）。") from e
            prob = parse_record(rec, p.parent, where)
            if prob.id in seen:
                raise _bad(where, f"id {prob.id!r} is already used on line {seen[prob.id]}.",
                           f"编号 {prob.id!r} 已在第 {seen[prob.id]} 行用过。")
            seen[prob.id] = no
            problems.append(prob)
            if limit and len(problems) >= limit:
                break
    if not problems:
        raise InputError("bench_empty", f"{p} holds no problems.", f"{p} 中没有题目。")
    return problems


# ------------------------------------------------------------------------------------------ grading


def _as_letter(problem: Problem, pred: str) -> str:
    """A choice answer given as an option's text (not letters) becomes that option's letter."""
    if not problem.options or _LETTERS_ONLY.match(pred.strip() or "-"):  # upper-case letters: already a choice
        return pred
    from tutor.answers import equivalent

    for i, opt in enumerate(problem.options):
        if equivalent(opt, pred):
            return LETTERS[i]
    return pred


def grade(problem: Problem, pred: str) -> bool:
    """Whether ``pred`` (an extracted final answer) is right, by ``tutor.answers.equivalent``."""
    from tutor.answers import equivalent

    if not pred or not pred.strip():
        return False
    if problem.answer_type == "multiple_choice":
        pred = _as_letter(problem, pred)
    return equivalent(problem.answer, pred, kind=KIND_OF_TYPE[problem.answer_type])


@dataclass
class ProblemResult:
    """What one problem's candidates gave."""

    id: str
    subject: str
    answer_type: str
    gold: str
    answers: list[str]
    correct: list[bool]
    pass1: float  # share correct among the first k
    pass_n: bool  # any correct among the first n
    chosen: dict[str, int]  # strategy -> chosen position among the first n
    right: dict[str, bool]  # strategy -> chosen one correct
    truncated: int  # cut at max_new_tokens
    unfinished: int  # never closed the thinking
    no_answer: int  # no final answer extracted
    samples: int
    tokens: int
    scores: list[float] | None = None


def strategies_for(requested: Sequence[str], has_reward: bool) -> list[str]:
    """The strategies to report: the requested ones (checked), or all that apply."""
    from engine.rerank import STRATEGIES, check_strategy

    if not requested:
        return [s for s in STRATEGIES if has_reward or not s.startswith("reward")]
    return [check_strategy(s, has_reward=has_reward) for s in dict.fromkeys(requested)]


def score_problem(problem: Problem, candidates: Sequence, *, n: int, k: int, strategies: Sequence[str],
                  scores: Sequence[float] | None = None) -> ProblemResult:
    """Grade ``candidates`` (shaped like ``engine.core.Candidate``; at least ``max(n, k)``) and let each
    strategy choose among the first n (``scores``: one reward per first-n candidate, or None)."""
    from engine.rerank import rerank

    if len(candidates) < max(n, k):
        raise ValueError(f"need {max(n, k)} candidates, got {len(candidates)}")
    correct = [grade(problem, c.answer) for c in candidates]
    pool = list(candidates[:n])
    chosen: dict[str, int] = {}
    for s in strategies:
        chosen[s] = rerank(pool, s, list(scores) if scores is not None else None).chosen
    return ProblemResult(
        id=problem.id, subject=problem.subject, answer_type=problem.answer_type, gold=problem.answer,
        answers=[c.answer for c in candidates], correct=correct,
        pass1=sum(correct[:k]) / k, pass_n=any(correct[:n]),
        chosen=chosen, right={s: correct[i] for s, i in chosen.items()},
        truncated=sum(c.finish_reason == "length" for c in candidates),
        unfinished=sum(bool(c.truncated) for c in candidates),
        no_answer=sum(not c.answer for c in candidates),
        samples=len(candidates), tokens=sum(int(c.tokens) for c in candidates),
        scores=[float(x) for x in scores] if scores is not None else None,
    )


def _aggregate(results: Sequence[ProblemResult], strategies: Sequence[str]) -> dict[str, Any]:
    m = len(results)
    samples = sum(r.samples for r in results) or 1
    return {
        "problems": m,
        "pass@1": sum(r.pass1 for r in results) / m,
        "pass@n": sum(r.pass_n for r in results) / m,
        "best_of_n": {s: sum(r.right[s] for r in results) / m for s in strategies},
        "truncated_rate": sum(r.truncated for r in results) / samples,
        "unfinished_thinking_rate": sum(r.unfinished for r in results) / samples,
        "no_answer_rate": sum(r.no_answer for r in results) / samples,
        "samples": sum(r.samples for r in results),
        "mean_tokens": sum(r.tokens for r in results) / samples,
    }


def summarize(results: Sequence[ProblemResult], strategies: Sequence[str]) -> dict[str, Any]:
    """Overall, per-subject and per-answer-type numbers (shares in [0, 1])."""
    if not results:
        raise ValueError("no results to summarize")
    out: dict[str, Any] = {"overall": _aggregate(results, strategies)}
    for key, attr in (("by_subject", "subject"), ("by_type", "answer_type")):
        groups: dict[str, list[ProblemResult]] = defaultdict(list)
        for r in results:
            groups[getattr(r, attr)].append(r)
        out[key] = {g: _aggregate(rs, strategies) for g, rs in sorted(groups.items())}
    return out


# ------------------------------------------------------------------------------------------ report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: settings, overall, strategies, per subject and per type."""
    s, o = report["settings"], report["summary"]["overall"]
    strategies = report["strategies"]
    lines = [
        f"# Eval: {report['model']} on {report['data']}",
        "",
        f"{o['problems']} problems; n = {s['n']} candidates for best-of-n, Pass@1 averaged over k = {s['k']}; "
        f"max_new_tokens = {s['max_new_tokens'] or 'preset default'}, temperature {s['temperature']}, "
        f"top_p {s['top_p']}, seed {s['seed']}; reward model: {s['reward'] or 'none'}. "
        f"Commit {report['commit']}, {report['machine']}, {report['wall_s']:.0f} s "
        f"({report['load_s']:.0f} s loading).",
        "",
        f"Command: `{report['command']}`",
        "",
        "| metric | % |",
        "| --- | ---: |",
        f"| Pass@1 (mean over k = {s['k']}) | {_pct(o['pass@1'])} |",
    ]
    lines += [f"| best-of-{s['n']}, {st} | {_pct(o['best_of_n'][st])} |" for st in strategies]
    lines += [
        f"| pass@{s['n']} (any of n right: the ceiling for reranking) | {_pct(o['pass@n'])} |",
        f"| samples cut at max_new_tokens | {_pct(o['truncated_rate'])} |",
        f"| samples that never closed their thinking | {_pct(o['unfinished_thinking_rate'])} |",
        f"| samples with no final answer | {_pct(o['no_answer_rate'])} |",
        "",
        f"Mean generated tokens per sample: {o['mean_tokens']:.1f} ({o['samples']} samples).",
    ]
    head = "| {} | problems | Pass@1 | " + " | ".join(f"best-of-n {st}" for st in strategies) + " | pass@n |"
    sep = "| --- | ---: | ---: | " + " | ".join("---:" for _ in strategies) + " | ---: |"
    for key, title in (("by_subject", "subject"), ("by_type", "answer type")):
        lines += ["", f"## By {title}", "", head.format(title), sep]
        for g, a in report["summary"][key].items():
            cells = [_pct(a["best_of_n"][st]) for st in strategies]
            lines.append(f"| {g} | {a['problems']} | {_pct(a['pass@1'])} | " + " | ".join(cells)
                         + f" | {_pct(a['pass@n'])} |")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {platform.machine()}"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def write_report(report: dict[str, Any], results: Sequence[ProblemResult], out: str | Path) -> Path:
    """``results.json``, ``results.md`` and ``samples.jsonl`` under ``out``; returns the Markdown path."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (d / "samples.jsonl").open("w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    md = d / "results.md"
    md.write_text(to_markdown(report), encoding="utf-8")
    return md


# ------------------------------------------------------------------------------------------ running


@dataclass
class EvalResult:
    out: Path  # results.md
    report: dict[str, Any]
    results: list[ProblemResult] = field(default_factory=list)


def check_config(cfg: Any) -> None:
    from engine.core import MAX_N

    checks = [
        (1 <= cfg.n <= MAX_N, f"n must be between 1 and {MAX_N}", f"n 须在 1 到 {MAX_N} 之间"),
        (1 <= cfg.k <= 64, "k must be between 1 and 64", "k 须在 1 到 64 之间"),
        (cfg.max_new_tokens >= 0 and cfg.limit >= 0 and cfg.max_tiles >= 0,
         "max_new_tokens, limit and max_tiles must be >= 0", "max_new_tokens、limit 和 max_tiles 不能为负"),
        (cfg.temperature >= 0 and 0 < cfg.top_p <= 1, "temperature must be >= 0 and top_p in (0, 1]",
         "temperature 不能为负，top_p 须在 (0, 1] 内"),
    ]
    for ok, en, zh in checks:
        if not ok:
            raise InputError("bad_config_value", en + ".", zh + "。")


def make_engine(cfg: Any):
    """``engine.http.HttpEngine`` for ``cfg.server`` (checked at once), else ``engine.core.Engine``."""
    if cfg.server:
        from engine.http import HttpEngine

        eng = HttpEngine(cfg.server, model=cfg.served_model or None, api_key=os.environ.get("R1V_API_KEY") or None)
        eng.check()
        return eng
    from engine.core import Engine

    return Engine(cfg.model)


def _user_text(messages: list[dict]) -> str:
    content = messages[-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content
                                                              if p.get("type") == "text")


def sample_problem(engine: Any, problem: Problem, cfg: Any, index: int) -> tuple[list, list, list[dict]]:
    """``max(n, k)`` candidates for one problem (batches of at most 16); also the images and the prompt."""
    from engine.core import MAX_N, Sampling
    from tutor.intake import load_image
    from tutor.prompts import build_messages

    images = [load_image(p).image for p in problem.images]
    messages = build_messages("solve", question=problem.prompt_question(), subject=problem.prompt_subject,
                              problem_type=problem.problem_type, lang=problem.lang, n_images=len(images))
    want, cands = max(cfg.n, cfg.k), []
    for chunk, start in enumerate(range(0, want, MAX_N)):
        sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                            max_new_tokens=cfg.max_new_tokens or None, seed=cfg.seed + index + 100_003 * chunk)
        sol = engine.solve(images, messages=messages, n=min(MAX_N, want - start), sampling=sampling,
                           max_tiles=cfg.max_tiles or None, rerank="first", reward=None)
        cands += sol.candidates
    return cands, images, messages


def evaluate(engine: Any, problems: Sequence[Problem], cfg: Any, scorer: Any = None) -> list[ProblemResult]:
    """Sample, score with the reward model (if any) and grade every problem."""
    strategies = strategies_for(cfg.rerank, scorer is not None)
    results = []
    for i, prob in enumerate(problems):
        t = time.perf_counter()
        cands, images, messages = sample_problem(engine, prob, cfg, i)
        scores = scorer.score(images, _user_text(messages), cands[: cfg.n]) if scorer is not None else None
        r = score_problem(prob, cands, n=cfg.n, k=cfg.k, strategies=strategies, scores=scores)
        results.append(r)
        log.info("[%d/%d] %s: pass@1 %.2f, %s (%.1f s)", i + 1, len(problems), prob.id, r.pass1,
                 ", ".join(f"{s} {'right' if ok else 'wrong'}" for s, ok in r.right.items()),
                 time.perf_counter() - t)
    return results


def run_eval(cfg: Any, engine: Any = None) -> EvalResult:
    """The ``eval`` stage: load, sample, grade, write ``results.{md,json}`` and ``samples.jsonl``."""
    check_config(cfg)
    strategies_for(cfg.rerank, bool(cfg.reward))  # refuse a bad strategy before loading anything
    problems = load_problems(cfg.data, cfg.limit)
    t0 = time.perf_counter()
    engine = engine or make_engine(cfg)
    scorer = engine.reward_scorer(cfg.reward) if cfg.reward else None
    strategies = strategies_for(cfg.rerank, scorer is not None)
    load_s = time.perf_counter() - t0
    results = evaluate(engine, problems, cfg, scorer)
    settings = asdict(cfg)
    report = {
        "model": getattr(engine, "name", cfg.model), "data": str(cfg.data), "settings": settings,
        "strategies": strategies, "commit": _commit(), "machine": _machine(),
        "load_s": round(load_s, 2), "wall_s": round(time.perf_counter() - t0, 2), "command": _command(settings),
        "summary": summarize(results, strategies),
    }
    md = write_report(report, results, cfg.out)
    o = report["summary"]["overall"]
    log.info("Pass@1 %.3f, %s; written to %s", o["pass@1"],
             ", ".join(f"{s} {v:.3f}" for s, v in o["best_of_n"].items()), md)
    return EvalResult(out=md, report=report, results=results)


def _command(settings: dict[str, Any]) -> str:
    from training.config import EvalConfig

    default = asdict(EvalConfig())
    parts = ["python -m training eval"]
    for key, value in settings.items():
        if value != default.get(key) or key in ("model", "data") and not (key == "model" and settings["server"]):
            v = ",".join(value) if isinstance(value, list) else value
            parts.append(f"--{key.replace('_', '-')} {v}")
    return " ".join(parts)


def flags_to_overrides(argv: Sequence[str]) -> list[str]:
    """``--max-new-tokens 32 --server=URL`` -> ``max_new_tokens=32 server=URL``; ``--config``, ``-h``
    and ``key=value`` pass through. A flag with no value is ``key=true``."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        a = items[i]
        if a in ("--config", "-h", "--help") or not a.startswith("--"):
            out.append(a)
            if a == "--config" and i + 1 < len(items):
                out.append(items[i + 1])
                i += 1
        else:
            key, sep, value = a[2:].partition("=")
            key = key.replace("-", "_")
            if key == "config" and sep:
                out += ["--config", value]
                i += 1
                continue
            if not sep:
                nxt = items[i + 1] if i + 1 < len(items) else None
                if nxt is None or nxt.startswith("--"):
                    value = "true"
                else:
                    value, i = nxt, i + 1
            out.append(f"{key}={value}")
        i += 1
    return out
