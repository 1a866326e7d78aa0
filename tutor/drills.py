"""The drill family: small gaokao-style math problems the tutor can make, read back and teach itself.

    import random
    from tutor.drills import make_problem, recognize, hints, check_answer
    p = make_problem(random.Random(0), lang="en")   # Problem(kind, lang, lines, answer, solution, steps...)
    p.statement        # 'Compute 47+38'
    p.solution         # R1V2's format: 'Problem: Compute 47+38.\\nOnes: ...</think>\\n\\nThe answer is \\\\boxed{85}.'
    hints(p)           # the worked steps as hints, the final result blanked: [..., 'So 47+38=?.']
    q = recognize("解方程 4x+4=12", lang="en")       # the same family read back from text: q.answer == '2'
    check_answer(q, "x = 2")                         # True (exact: the generator's gold answer)

Kinds: multi-digit addition with carries (2 or 3 digits), linear equations ``ax+b=c``, fractions
with a common denominator (the sum simplified), evaluating ``f(x)=ax+b``, and multiple-choice (选择题)
variants of each (four options A-D, the gold answer is the letter). Chinese and English.

This is the task family the shipped ``mini`` model was trained on (``training/mini/tasks.py`` imports
the generator from here and adds the photo rendering), so the tutor can offer practice problems,
hints and examples of the kinds such a model can solve, without any model and without importing
``training/``. The generator's output for a seed is fixed: the mini's training data depends on it
(``tests/tutor/test_drills.py`` pins a hash of it).

Worked solutions use R1V2's format: they continue the assistant turn after the ``<think>\\n``
pre-fill, restate the problem, work it step by step, close ``</think>`` and box the final answer.
Each step is also kept structured (:class:`Step`, with the form a hint may show) in ``Problem.steps``.

Pure Python; run its tests with ``python -m pytest tests/tutor/test_drills.py -q``.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("add", "linear", "fraction", "function")
LANGS = ("en", "zh")
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "mini" / "examples"


@dataclass(frozen=True)
class Step:
    """One step of a worked solution: ``text`` as the solution writes it, ``hint`` as a hint may show
    it (the final answer blanked as ``?``; "" when the step only restates the answer)."""

    text: str
    hint: str


@dataclass
class Problem:
    """One drill problem: what the photo shows, the gold answer and a worked solution."""

    kind: str
    lang: str
    lines: list[str]  # the text lines of the statement (drawn in the photo)
    answer: str  # gold final answer (a number, a fraction, or a letter for multiple choice)
    solution: str  # the assistant turn after the <think>\n pre-fill
    choice: bool = False
    meta: dict = field(default_factory=dict)  # {"value": the number/fraction, also for a choice problem}
    steps: list[Step] = field(default_factory=list)

    @property
    def statement(self) -> str:
        return " ".join(self.lines)

    @property
    def problem_type(self) -> str:
        return "single_choice" if self.choice else "auto"


_WORDS = {
    "en": {"add": "Compute", "linear": "Solve", "fraction": "Compute", "find": "find", "problem": "Problem:",
           "so": "So", "answer": "The answer is", "option": "which is option", "same": "Same denominator",
           "simplify": "Simplify", "ones": "Ones", "tens": "Tens", "hundreds": "Hundreds", "carry": "carry 1",
           "write": "write", "front": "Write the carry 1 in front.",
           "pick": "Then find that value among the options A-D."},
    "zh": {"add": "计算", "linear": "解方程", "fraction": "计算", "find": "求", "problem": "题目：",
           "so": "所以", "answer": "答案是", "option": "对应选项", "same": "分母相同", "simplify": "约分",
           "ones": "个位", "tens": "十位", "hundreds": "百位", "carry": "进1", "write": "写",
           "front": "最高位进1，写在最前面。", "pick": "再在选项 A–D 中找出这个值。"},
}


def restatement_prefix(lang: str) -> str:
    """What a worked solution opens with before restating the problem it read ("Problem: ", "题目：")."""
    return _WORDS[lang]["problem"] + (" " if lang == "en" else "")


_RESTATED = re.compile(r"(?:Problem:|题目：)\s*(.*?)[.。]?\n")


def restated(text: str) -> str | None:
    """The problem as a worked solution restates it after ``restatement_prefix`` (its reading of the
    photo), or None when the text restates nothing."""
    m = _RESTATED.search(text)
    return m.group(1).strip() if m else None


# ------------------------------------------------------------------------------------ the kinds
# Each kind: ``_draw_<kind>(rng)`` draws its numbers, ``_<kind>_steps(numbers, w, lang)`` writes the
# statement head, the answer and the steps. Drawing and writing are split so that a problem read back
# from text (``recognize``) is written exactly as a generated one.


def _draw_add(rng: random.Random) -> tuple[int, int]:
    digits = rng.choice((2, 3))
    lo, hi = 10 ** (digits - 1), 10 ** digits - 1
    while True:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if any((a // 10**k) % 10 + (b // 10**k) % 10 >= 10 for k in range(digits)):
            return a, b  # at least one carry


def _add_steps(nums: tuple[int, ...], w: dict, lang: str) -> tuple[str, str, list[Step]]:
    a, b = nums
    digits = max(len(str(a)), len(str(b)))
    total = a + b
    steps, carry = [], 0
    names = [w["ones"], w["tens"], w["hundreds"]]
    for k in range(digits):
        da, db = (a // 10**k) % 10, (b // 10**k) % 10
        s = da + db + carry
        expr = f"{da}+{db}" + ("+1" if carry else "")
        if s >= 10:
            tail = f", {w['write']} {s - 10}, {w['carry']}." if lang == "en" else f"，{w['write']}{s - 10}{w['carry']}。"
        else:
            tail = "." if lang == "en" else "。"
        text = f"{names[k]}: {expr}={s}{tail}" if lang == "en" else f"{names[k]}：{expr}={s}{tail}"
        steps.append(Step(text, text))
        carry = 1 if s >= 10 else 0
    if carry:
        steps.append(Step(w["front"], w["front"]))
    head = f"{w['add']} {a}+{b}"
    end = "." if lang == "en" else "。"
    steps.append(Step(f"{w['so']} {a}+{b}={total}{end}", f"{w['so']} {a}+{b}=?{end}"))
    return head, str(total), steps


def _draw_linear(rng: random.Random) -> tuple[int, int, int]:
    a, x, b = rng.randint(2, 9), rng.randint(1, 9), rng.randint(1, 9)
    return a, b, a * x + b


def _linear_steps(nums: tuple[int, ...], w: dict, lang: str) -> tuple[str, str, list[Step]]:
    a, b, c = nums
    x = (c - b) // a
    end = "." if lang == "en" else "。"
    head = f"{w['linear']} {a}x+{b}={c}"
    first = f"{a}x={c}-{b}={c - b}{end}"
    steps = [Step(first, first), Step(f"x={c - b}÷{a}={x}{end}", f"x={c - b}÷{a}=?{end}")]
    return head, str(x), steps


def _draw_fraction(rng: random.Random) -> tuple[int, int, int]:
    d = rng.randint(3, 9)
    return rng.randint(1, d - 1), rng.randint(1, d - 1), d


def _fraction_steps(nums: tuple[int, ...], w: dict, lang: str) -> tuple[str, str, list[Step]]:
    p, q, d = nums
    s = p + q
    g = math.gcd(s, d)
    ans = str(s // g) if d // g == 1 else f"{s // g}/{d // g}"
    end = "." if lang == "en" else "。"
    sep = ": " if lang == "en" else "："
    first = (f"{w['same']} {d}{sep}{p}+{q}={s}, {s}/{d}{end}" if lang == "en" else
             f"{w['same']} {d}{sep}{p}+{q}={s}，得 {s}/{d}{end}")
    # the sum over the denominator is the final answer when it does not simplify: hint the idea only
    steps = [Step(first, first if g > 1 else f"{w['same']} {d}{sep}{p}/{d}+{q}/{d}=({p}+{q})/{d}=?{end}")]
    if g > 1:
        steps.append(Step(f"{w['simplify']}{sep}{s}/{d}={ans}{end}", f"{w['simplify']}{sep}{s}/{d}=?{end}"))
    head = f"{w['fraction']} {p}/{d}+{q}/{d}"
    return head, ans, steps


def _draw_function(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(2, 9), rng.randint(1, 9), rng.randint(1, 9)


def _function_steps(nums: tuple[int, ...], w: dict, lang: str) -> tuple[str, str, list[Step]]:
    a, b, k = nums
    v = a * k + b
    end = "." if lang == "en" else "。"
    head = f"f(x)={a}x+{b}, {w['find']} f({k})" if lang == "en" else f"已知 f(x)={a}x+{b}，{w['find']} f({k})"
    steps = [Step(f"f({k})={a}×{k}+{b}={a * k}+{b}={v}{end}", f"f({k})={a}×{k}+{b}=?{end}")]
    return head, str(v), steps


_KIND_FNS = {"add": (_draw_add, _add_steps), "linear": (_draw_linear, _linear_steps),
             "fraction": (_draw_fraction, _fraction_steps), "function": (_draw_function, _function_steps)}


def _distractors(answer: str, rng: random.Random) -> list[str]:
    """Three plausible wrong options (off by one, by ten, swapped digits...)."""
    out: set[str] = set()
    if "/" in answer:
        n, d = (int(t) for t in answer.split("/"))
        pool = [f"{n + 1}/{d}", f"{max(n - 1, 1)}/{d}", f"{n}/{d + 1}", f"{n + d}/{d}", f"{n}/{d * 2}"]
    else:
        v = int(answer)
        pool = [str(v + 1), str(max(v - 1, 0)), str(v + 10), str(abs(v - 10)), str(v + 2), str(v * 2)]
    rng.shuffle(pool)
    for cand in pool:
        if cand != answer and cand not in out:
            out.add(cand)
        if len(out) == 3:
            break
    return sorted(out)


def _assemble(kind: str, lang: str, nums: tuple[int, ...], options: list[str] | None) -> Problem:
    """The problem of ``kind`` with these numbers (and, for a choice problem, these four options)."""
    w = _WORDS[lang]
    head, answer, steps = _KIND_FNS[kind][1](nums, w, lang)
    lines, final = [head], answer
    if options is not None:
        letter = "ABCD"[options.index(answer)]
        lines.append(" ".join(f"{L}.{o}" for L, o in zip("ABCD", options, strict=True)))
        text = f"{answer}, {w['option']} {letter}." if lang == "en" else f"{answer}，{w['option']} {letter}。"
        steps.append(Step(text, ""))
        final = letter
    statement = " ".join(lines)
    intro = restatement_prefix(lang) + statement + ("." if lang == "en" else "。")
    think = "\n".join([intro, *(s.text for s in steps)])
    tail = f"{w['answer']} \\boxed{{{final}}}" + ("." if lang == "en" else "。")
    return Problem(kind=kind, lang=lang, lines=lines, answer=final, solution=f"{think}\n</think>\n\n{tail}",
                   choice=options is not None, meta={"value": answer}, steps=steps)


def make_problem(rng: random.Random, *, lang: str | None = None, kind: str | None = None,
                 choice: bool | None = None) -> Problem:
    """Draw one problem (kind, language and multiple-choice flag drawn too unless given)."""
    lang = lang or rng.choice(LANGS)
    kind = kind or rng.choice(KINDS)
    choice = rng.random() < 0.3 if choice is None else choice
    nums = _KIND_FNS[kind][0](rng)
    options = None
    if choice:
        answer = _KIND_FNS[kind][1](nums, _WORDS[lang], lang)[1]
        options = _distractors(answer, rng) + [answer]
        rng.shuffle(options)
    return _assemble(kind, lang, nums, options)


# ------------------------------------------------------------------------------------ reading back

_FUNCTION = re.compile(r"f\(x\)=(\d{1,3})x\+(\d{1,3})\D{0,8}?f\((\d{1,3})\)")
_LINEAR = re.compile(r"(?<![\d).])(\d{1,3})x\+(\d{1,3})=(\d{1,4})(?!\d)")
_FRACTION = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})\+(\d{1,2})/(\d{1,2})(?![\d/])")
_ADD = re.compile(r"(?<![\d/x.])(\d{1,3})\+(\d{1,3})(?![\d/x.=])")
_OPTIONS = re.compile(r"A[.．:：]([\d/]+)B[.．:：]([\d/]+)C[.．:：]([\d/]+)D[.．:：]([\d/]+)")


def _in_family(kind: str, nums: tuple[int, ...]) -> bool:
    """Whether these numbers are ones the generator draws (what a model trained on it can read)."""
    if kind == "add":
        a, b = nums
        n = len(str(a))
        return (n in (2, 3) and len(str(b)) == n
                and any((a // 10**k) % 10 + (b // 10**k) % 10 >= 10 for k in range(n)))
    if kind == "linear":
        a, b, c = nums
        return 2 <= a <= 9 and 1 <= b <= 9 and (c - b) % a == 0 and 1 <= (c - b) // a <= 9
    if kind == "fraction":
        p, q, d = nums
        return 3 <= d <= 9 and 1 <= p < d and 1 <= q < d
    a, b, k = nums
    return 2 <= a <= 9 and 1 <= b <= 9 and 1 <= k <= 9


def _writable(kind: str, nums: tuple[int, ...]) -> bool:
    """Whether the steps of ``kind`` can be written for these numbers (a typed problem may be larger)."""
    if kind == "add":
        return all(1 <= v <= 999 for v in nums)
    if kind == "linear":
        a, b, c = nums
        return a >= 1 and c >= b and (c - b) % a == 0
    if kind == "fraction":
        p, q, d = nums
        return d >= 2 and p >= 1 and q >= 1
    return True


def _find(text: str) -> tuple[str, tuple[int, ...]] | None:
    if m := _FUNCTION.search(text):
        return "function", tuple(map(int, m.groups()))
    if m := _LINEAR.search(text):
        return "linear", tuple(map(int, m.groups()))
    if (m := _FRACTION.search(text)) and m[2] == m[4]:
        return "fraction", (int(m[1]), int(m[3]), int(m[2]))
    if m := _ADD.search(text):
        return "add", (int(m[1]), int(m[2]))
    return None


def recognize(text: str, lang: str, *, strict: bool = False) -> Problem | None:
    """The drill problem ``text`` states (a typed question, a statement, a model's restatement of a
    photo), written in ``lang``; None when it states none. ``strict``: only numbers the generator
    draws (for a model's reading of a photo, which may be misread into nonsense); else any numbers the
    steps can be written for. Options ``A.. B.. C.. D..`` make it a choice problem when one of them is
    the answer (a strict reading whose options miss the answer is not taken)."""
    if lang not in LANGS or not isinstance(text, str):
        return None
    compact = re.sub(r"\s+", "", text.replace("＋", "+").replace("＝", "=").replace("（", "(").replace("）", ")"))
    found = _find(compact)
    if found is None:
        return None
    kind, nums = found
    if not (_in_family(kind, nums) if strict else _writable(kind, nums)):
        return None
    options = None
    if m := _OPTIONS.search(compact):
        opts = list(m.groups())
        value = _KIND_FNS[kind][1](nums, _WORDS[lang], lang)[1]
        if value in opts and len(set(opts)) == 4:
            options = opts
        elif strict:
            return None
    return _assemble(kind, lang, nums, options)


# ------------------------------------------------------------------------------------ teaching


def hints(problem: Problem) -> list[str]:
    """The hint ladder of a drill problem: its worked steps in order, the final result blanked, and for
    a choice problem a last nudge to find the value among the options."""
    out = [s.hint for s in problem.steps if s.hint]
    if problem.choice:
        out.append(_WORDS[problem.lang]["pick"])
    return out


def worked_solution(problem: Problem) -> str:
    """The worked solution to show a student: the steps, then the boxed answer (no ``</think>``)."""
    w = _WORDS[problem.lang]
    tail = f"{w['answer']} \\boxed{{{problem.answer}}}" + ("." if problem.lang == "en" else "。")
    return "\n".join([*(s.text for s in problem.steps), tail])


def check_answer(problem: Problem, given: str) -> bool:
    """Whether ``given`` is the gold answer (for a choice problem, its letter or the value it stands for)."""
    from tutor.answers import equivalent, extract_final

    given = (extract_final(given) or given or "").strip()
    if not given:
        return False
    golds = [problem.answer] + ([problem.meta["value"]] if problem.choice else [])
    if problem.choice and re.fullmatch(r"[A-Da-d]", given):
        return given.upper() == problem.answer
    return any(equivalent(g, given) for g in golds)


def _numbers(p: Problem) -> list[str]:
    return re.findall(r"\d+", p.lines[0])


def practice_like(problem: Problem | None, lang: str, rng: random.Random) -> Problem:
    """A new drill problem in ``lang``: the same kind (and choice form) as ``problem`` when given, never
    the same statement; any kind otherwise."""
    for _ in range(50):
        p = make_problem(rng, lang=lang, kind=problem.kind if problem else None,
                         choice=problem.choice if problem else None)
        if problem is None or _numbers(p) != _numbers(problem):
            return p
    return p  # pragma: no cover - fifty equal draws do not happen


# ------------------------------------------------------------------------------------ examples


def drill_examples(directory: Path | str | None = None) -> list:
    """The photos of drill problems shipped for the page (``assets/mini/examples/examples.json``), as
    ``tutor.examples.Example`` objects (subject math, the statement as the question, the gold answer)."""
    from tutor.examples import Example

    root = Path(directory) if directory is not None else EXAMPLES_DIR
    listing = json.loads((root / "examples.json").read_text(encoding="utf-8"))
    return [Example(id=f"drill-{Path(e['image']).stem}", subject="math", problem_type=e["problem_type"],
                    lang=e["lang"], question=e["statement"], answer=e["answer"], source="tutor.drills",
                    image_path=root / e["image"]) for e in listing]
