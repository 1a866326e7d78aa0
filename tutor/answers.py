"""Final answers: split thinking from answer, extract the final answer, decide if two answers agree.

The model (and a student) writes answers in many shapes: ``\\boxed{...}``, ``答案是…``, ``故选C``,
``The answer is …``, ``**73**``, several boxed answers for several blanks. This module reads them and
compares them with a gold answer, and provides the reward functions used in GRPO training.

    from tutor.answers import extract_final, equivalent, accuracy_reward, format_reward
    extract_final("...</think>所以 $x=\\boxed{\\dfrac12}$。")   # -> "\\dfrac12"
    equivalent("0.5", "50%")                                       # -> True
    equivalent("AB", "B、A")                                        # -> True
    accuracy_reward(["...</think> \\boxed{2}"], ["$2$"])            # -> [1.0]

How ``equivalent(gold, pred)`` decides (``kind="auto"``), cheapest first:

1. both are cleaned: an outer ``\\boxed{}``, ``$``, answer phrases (``答案是``, ``the answer is``),
   markdown bold, full-width punctuation, trailing ``。.,`` are removed;
2. choice letters when both sides are letter sets and one is upper case: compared as sets
   (``AB`` == ``B,A`` == ``B、A``, ``(A)`` == ``A``; a subset is wrong);
3. several blanks (``;``/``；``-separated, or ``(1) … (2) …``): compared blank by blank, in order;
4. identical strings;
5. plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, ``3\\times10^{8}``, percentages,
   trailing units such as ``m/s``, ``\\text{kg}`` or ``米``) with a relative tolerance; ``50%`` equals
   ``0.5`` and ``50``; units are ignored (not converted) unless both sides carry known, different
   units; a one-letter unit glued to the number (``2m``, ``3g``) is read as a variable, ``2 m`` as
   a unit;
6. text (Chinese, or English words) compared ignoring case, spaces and punctuation;
7. everything else goes to math-verify in a worker process (``tutor.mathcheck``), with guards
   against its false positives. Equations are equal when they describe the same relation
   (``y=2x+1`` == ``2x+1=y`` == ``y-2x-1=0``); different equations never are. ``x=1`` matches ``1``.
   Intervals match inequalities (``(1,2)`` == ``1<x<2``) and set-builder ``\\{x|x>1\\}``; finite
   sets ("find all") must have the same elements, a subset or superset is wrong.

Steps 1-6 never start the worker pool. ``kind`` forces one path: "choice", "number", "expr"
(skips the text step) or "text".

The worker pool uses ``forkserver``/``spawn``: a script calling ``equivalent`` at import time must
keep the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tutor import mathcheck
from tutor.errors import InputError
from tutor.mathcheck import (
    CJK,
    LETTERS,
    choice_letters,
    has_upper_choice,
    looks_like_text,
    math_equal,
    number_latex,
    numbers_equal,
    parse_number,
    strip_units,
    text_key,
)

logger = logging.getLogger(__name__)

__all__ = [
    "KINDS",
    "accuracy_reward",
    "equivalent",
    "extract_all",
    "extract_final",
    "format_reward",
]

KINDS = ("auto", "choice", "number", "expr", "text")
MAX_ANSWER_CHARS = 2000  # longer "answers" are not answers; equivalent() says False
THINK_END = "</think>"

# ----------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_CHOICE_PHRASE = re.compile(r"(?:故|所以|因此|则|应|答案)?\s*选(?:项)?\s*(?:为|是)?\s*[:：]?\s*(?P<ans>" + LETTERS + r")")
_PHRASES = [
    re.compile(r"(?:最终|最后的?)?答案\s*(?:应该?是|应为|是|为)\s*[:：]?\s*"),
    re.compile(r"(?:最终|最后的?)?答案\s*[:：]\s*"),
    re.compile(r"(?<![\w\u4e00-\u9fff])答\s*[:：]\s*"),
    re.compile(r"(?i)final\s+answer\s*(?:is|:|：)\s*[:：]?\s*"),
    re.compile(r"(?i)\bthe\s+(?:correct\s+|final\s+)?answer\s+is\s*[:：]?\s*"),
    re.compile(r"(?i)\banswer\s*[:：]\s*"),
    re.compile(r"(?i)\b(?:correct\s+)?(?:option|choice)\s+is\s*[:：]?\s*"),
]
_SENTENCE_END = re.compile(
    r"\n|。|\.\s+(?=[A-Z" + CJK + r"])|(?<=[" + CJK + r"])\.\s*"
    r"|[,，]\s*(?=[" + CJK + r"]|[A-Za-z]{3,}\b)"
)
_BOLD_RE = re.compile(r"\*\*(.+?)\*\*")
# sub-question markers: (1) （2） ① (I) (ii), or "1." / "2、" at a line start
_SUBQ_RE = re.compile(
    r"(?<![A-Za-z0-9)\]}^_])[\(（]\s*(?:[1-9]|1[0-9]|I{1,3}|IV|VI{0,3}|i{1,3}|iv|vi{0,3})\s*[\)）]|[①-⑩]"
    r"|(?m:^\s*(?:[1-9][.、．](?!\d)|第[一二三四五六]问|Part\s*\(?[a-dA-D1-9]\)?[:：.]?))"
)
_GLUE_RE = re.compile(r"(?i)[\s$,，;；、:：.。]|\\q?quad|\\[,;!]|\\text\{[^{}]*\}|and|or|和|或|及|与|以及")


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete ``\\boxed{...}``/``\\fbox{...}``, nested braces allowed."""
    found: list[tuple[int, int, str]] = []
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                c = text[j]
                if c == "\\":
                    j += 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth != 0 or j >= len(text):  # truncated box: skip it
                pos = m.end()
                continue
            found.append((m.start(), j + 1, text[i + 1 : j]))
            pos = j + 1
        else:  # "\boxed 5"
            tok = re.match(r"[^\s$]+", text[i:]) if i > m.end() else None
            if tok:
                found.append((m.start(), i + tok.end(), tok.group(0)))
                pos = i + tok.end()
            else:
                pos = m.end()
    return found


def _tidy_extracted(s: str) -> str:
    """Trim an extracted answer: markdown bold, ``$``, surrounding space, trailing punctuation."""
    s = _BOLD_RE.sub(r"\1", s).replace("**", "")
    s = s.strip()
    for _ in range(3):
        s = re.sub(r"^(?:\$+|\\\(|\\\[)|(?:\$+|\\\)|\\\])$", "", s).strip()
        s = re.sub(r"[。．.，,;；:：!！?？\s]+$", "", s).strip()
    return s


def _box_answers(answer: str, boxes: list[tuple[int, int, str]]) -> list[str]:
    """The boxed answers that make up the final answer: one per sub-question, or the last cluster."""
    marks = [m.start() for m in _SUBQ_RE.finditer(answer)]
    if len(marks) >= 2:
        bounds = [0, *marks[1:], len(answer)]  # any preamble belongs to the first sub-question
        per_section = []
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            inside = [b for b in boxes if lo <= b[0] < hi]
            if inside:
                per_section.append(inside[-1][2])
        if len(per_section) >= 2:
            return per_section
    cluster = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        gap = answer[prev[1] : cluster[0][0]]
        glue = _GLUE_RE.sub("", gap)
        if len(glue) <= 6 and not re.search(r"\\boxed", gap):
            cluster.insert(0, prev)
        else:
            break
    items = [c[2] for c in cluster]
    half = len(items) // 2
    if len(items) % 2 == 0 and items[:half] == items[half:]:
        items = items[:half]
    if len(set(items)) == 1:
        items = items[:1]
    return items


def _phrase_answer(answer: str) -> str | None:
    best: tuple[int, str] | None = None
    for m in _CHOICE_PHRASE.finditer(answer):
        if best is None or m.start() >= best[0]:
            best = (m.start(), m.group("ans"))
    for pat in _PHRASES:
        for m in pat.finditer(answer):
            rest = answer[m.end() :]
            cut = _SENTENCE_END.search(rest)
            value = rest[: cut.start()] if cut else rest
            if value.strip() and (best is None or m.start() > best[0]):
                best = (m.start(), value)
    return best[1] if best else None


def _split_subquestions(s: str) -> list[str]:
    marks = list(_SUBQ_RE.finditer(s))
    if len(marks) < 2 or s[: marks[0].start()].strip(" :："):
        return [s]
    parts = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(s)
        parts.append(_tidy_extracted(s[m.end() : end]))
    return [p for p in parts if p] or [s]


def extract_all(text: str) -> list[str]:
    """Every final answer in ``text``, in order (one per blank or sub-question); [] when none.

    Looks only after the last ``</think>`` when there is one. Order of preference: boxed answers
    (one per sub-question section, or the last group of adjacent boxes), then answer phrases
    (``答案是…``, ``故选C``, ``The answer is …``, ``Answer: …``), then a bold last line, then a
    short one-line text taken as a bare answer.
    """
    _require_str(text, "text")
    try:
        return _extract_all(text)
    except Exception:  # noqa: BLE001 - extraction must never take a reward loop down
        logger.exception("answer extraction failed")
        return []


def _extract_all(text: str) -> list[str]:
    answer = text.rpartition(THINK_END)[2] if THINK_END in text else text
    answer = answer.strip()
    if not answer:
        return []
    boxes = _boxes(answer)
    if boxes:
        items = [_tidy_extracted(b) for b in _box_answers(answer, boxes)]
        return [i for i in items if i]
    phrase = _phrase_answer(answer.replace("**", ""))
    if phrase is not None:
        return [p for p in _split_subquestions(_tidy_extracted(phrase)) if p]
    lines = [ln for ln in answer.splitlines() if ln.strip()]
    bold = _BOLD_RE.findall(lines[-1]) if lines else []
    if bold:
        value = _tidy_extracted(bold[-1])
        return [value] if value else []
    if len(answer) <= 200 and len(lines) <= 4 and not _BOX_RE.search(answer):
        value = _tidy_extracted(" ".join(lines))
        return [p for p in _split_subquestions(value) if p] if value else []
    return []


def extract_final(text: str) -> str | None:
    """The final answer of ``text`` (several blanks joined with ``"; "``), or None when there is none."""
    items = extract_all(text)
    return "; ".join(items) if items else None


# ----------------------------------------------------------------------------- normalisation

_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_FULLWIDTH.update({ord(k): v for k, v in {
    "\u3000": " ", "。": ".", "【": "[", "】": "]", "−": "-", "×": "\\times ", "·": "\\cdot ", "÷": "/",
    "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "π": "\\pi ", "∞": "\\infty ", "∈": "\\in ",
    "√": "\\sqrt ",
}.items()})
CJK_LEAD = re.compile(r"^[^=<>]*?[" + CJK + r"][^=<>]*?(?:为|是|等于)\s*(?P<rest>.+)$")
CJK_CONJ = re.compile(r"\s*(?:或者|或|以及|及|和|与|且)\s*")
_TRAILCJK = re.compile(r"^(?P<math>.*[0-9A-Za-z}\])|])\s*[" + CJK + r"]{1,4}$")


def _has_anchor(s: str) -> bool:
    return bool(_BOX_RE.search(s) or THINK_END in s or _CHOICE_PHRASE.search(s)
                or any(p.search(s) for p in _PHRASES))


def _clean(s: str) -> str:
    """One answer string, ready to compare (still LaTeX; no ``$``, no phrases, ASCII punctuation)."""
    if _has_anchor(s):
        items = extract_all(s)
        s = "; ".join(items) if items else s
    s = unicodedata.normalize("NFC", s).translate(_FULLWIDTH)
    s = _BOLD_RE.sub(r"\1", s).replace("**", "")
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\[\(\)\[\]]", " ", s)
    s = re.sub(r"\\(?:displaystyle|left|right|big|Big|bigg|Bigg)(?![A-Za-z])", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"[.,;:!?\s]+$", "", s).strip()
    return s


_SET_BUILDER = re.compile(r"^\\\{\s*[A-Za-z]\s*(?:\||\\mid|:)\s*(?P<cond>.+?)"
                          r"(?:,\s*[A-Za-z]\s*\\in\s*(?:\\mathbb\{?R\}?|R))?\s*\\\}$")


def _math_form(s: str) -> str:
    """Chinese glue removed from a mathematical answer: lead-ins, 或/和, trailing units, set-builder."""
    m = CJK_LEAD.match(s)
    if m and not re.search(f"[{CJK}]", m.group("rest")[:-4] or ""):
        s = m.group("rest")
    m = _TRAILCJK.match(s)
    if m:
        s = m.group("math")
    if re.search(r"[0-9=<>]", s):
        s = CJK_CONJ.sub(", ", s)
    m = _SET_BUILDER.match(s.strip())
    if m:  # {x | x > 1} -> x > 1
        s = m.group("cond")
    return s.strip()


def _split_blanks(s: str) -> list[str]:
    """Top-level ``;`` separated blanks, or ``(1) … (2) …`` sub-answers."""
    subs = _split_subquestions(s)
    if len(subs) > 1:
        return subs
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        if c == ";" and depth <= 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    parts = [p.strip() for p in parts if p.strip()]
    return parts or [s]


def _split_commas(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for c in s:
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        if c in ",、" and depth <= 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


# ----------------------------------------------------------------------------- equivalence


_ZH_NAMES = {"gold": "标准答案", "pred": "作答", "text": "文本"}


def _require_str(value: Any, name: str) -> None:
    if not isinstance(value, str):
        raise InputError("answer_not_text", f"The {name} must be text.",
                         f"{_ZH_NAMES.get(name, name)}必须是文字。", detail=f"{name} is {type(value).__name__}")


def equivalent(gold: str, pred: str, *, kind: str = "auto", rel_tol: float = 1e-4,
               timeout: float = 5.0) -> bool:
    """Whether ``pred`` is a correct answer when ``gold`` is (see the module docstring for the rules).

    ``gold`` and ``pred`` may be bare answers or texts with ``\\boxed{}``/answer phrases. Never
    raises on odd answer text; raises ``InputError`` for a non-string, an unknown ``kind`` or a
    negative tolerance/timeout. A comparison that runs past ``timeout`` seconds counts as False.
    """
    _require_str(gold, "gold")
    _require_str(pred, "pred")
    if kind not in KINDS:
        raise InputError("bad_answer_kind", f"Unknown answer type {kind!r}; use one of {', '.join(KINDS)}.",
                         f"未知的答案类型 {kind!r}，可选：{'、'.join(KINDS)}。")
    if not (rel_tol >= 0) or not (timeout > 0):
        raise InputError("bad_tolerance", "The tolerance must be >= 0 and the timeout > 0.",
                         "容差必须不小于 0，超时时间必须大于 0。", detail=f"rel_tol={rel_tol} timeout={timeout}")
    if len(gold) > MAX_ANSWER_CHARS * 20 or len(pred) > MAX_ANSWER_CHARS * 20:
        logger.info("answer too long to compare (%d, %d chars)", len(gold), len(pred))
        return False
    try:
        g, p = _clean(gold), _clean(pred)
    except Exception:  # noqa: BLE001
        logger.exception("answer normalisation failed")
        return False
    if not g or not p or len(g) > MAX_ANSWER_CHARS or len(p) > MAX_ANSWER_CHARS:
        return False
    return _equivalent(g, p, kind, rel_tol, timeout)


def _equivalent(g: str, p: str, kind: str, rel_tol: float, timeout: float) -> bool:
    # 1. choice letters
    if kind == "choice":
        gl, pl = choice_letters(g), choice_letters(p)
        return gl is not None and gl == pl
    if kind == "auto":
        gl, pl = choice_letters(g), choice_letters(p)
        if gl is not None and pl is not None and (has_upper_choice(g) or has_upper_choice(p)):
            return gl == pl
        if gl is not None and has_upper_choice(g) and len(g) <= 12 and re.fullmatch(r"[\sA-G,;、()（）]+", g):
            return False  # gold is clearly a choice, pred is not a letter set
    # 2. several blanks
    gb, pb = _split_blanks(g), _split_blanks(p)
    if len(gb) > 1 or len(pb) > 1:
        if len(pb) != len(gb) and len(pb) == 1:
            pb = _split_commas(p)
        if len(gb) != len(pb):
            return False
        return all(_equivalent(a, b, kind, rel_tol, timeout) for a, b in zip(gb, pb, strict=True))
    # 3. identical
    if g == p or g.replace(" ", "") == p.replace(" ", ""):
        return True
    # 4. text
    if kind == "text" or (kind == "auto" and looks_like_text(g) and looks_like_text(p)):
        return text_key(g) == text_key(p) and bool(text_key(g))
    gm, pm = _math_form(g), _math_form(p)
    if gm.replace(" ", "") == pm.replace(" ", "") and gm:
        return True
    # 5. plain numbers
    gn, pn = parse_number(gm), parse_number(pm)
    if gn is not None and pn is not None:
        return numbers_equal(gn, pn, rel_tol)
    if kind == "auto" and (looks_like_text(g) or looks_like_text(p)):
        if re.search(f"[{CJK}]", gm + pm):
            return text_key(g) == text_key(p)
    # 6. mathematics
    gm = number_latex(gn) if gn is not None else strip_units(gm)
    pm = number_latex(pn) if pn is not None else strip_units(pm)
    return math_equal(gm, pm, rel_tol=rel_tol, timeout=timeout)


# ----------------------------------------------------------------------------- rewards


def _completion_text(c: Any) -> str:
    """Plain text of a completion: a string, or chat messages ``[{"role", "content"}]``."""
    if isinstance(c, str):
        return c
    if isinstance(c, dict):
        return _completion_text(c.get("content", ""))
    if isinstance(c, Sequence):
        msgs = [m for m in c if isinstance(m, dict)]
        assistant = [m for m in msgs if m.get("role", "assistant") == "assistant"] or msgs
        parts = []
        for m in assistant:
            content = m.get("content", "")
            if isinstance(content, list):  # multimodal parts
                content = "".join(str(x.get("text", "")) for x in content if isinstance(x, dict))
            parts.append(str(content or ""))
        if not msgs and all(isinstance(x, str) for x in c):
            return "".join(c)
        return "".join(parts)
    return "" if c is None else str(c)


def accuracy_reward(completions: list[Any], solutions: list[str] | None = None,
                    **kw: Any) -> list[float | None]:
    """1.0 when a completion's final answer matches its gold solution, 0.0 when not, None when the
    gold itself has no answer to compare with.

    TRL style: extra dataset columns arrive as keywords; a column named ``solution`` or ``answer``
    is used when ``solutions`` is not given, and an optional ``answer_kind`` column selects ``kind``.
    """
    if solutions is None:
        solutions = kw.get("solution", kw.get("answer"))
    if solutions is None or len(solutions) != len(completions):
        raise InputError("reward_bad_batch", "Each completion needs one gold solution.",
                         "每个生成结果都需要一个标准答案。",
                         detail=f"{len(completions)} completions, "
                                f"{None if solutions is None else len(solutions)} solutions")
    kinds = kw.get("answer_kind") or ["auto"] * len(completions)

    def one(item: tuple[Any, Any, Any]) -> float | None:
        comp, sol, kind = item
        gold = extract_final(sol) if isinstance(sol, str) else None
        if gold is None:
            logger.warning("gold solution has no answer: %.80r", sol)
            return None
        pred = extract_final(_completion_text(comp))
        if pred is None:
            return 0.0
        try:
            return 1.0 if equivalent(gold, pred, kind=kind if kind in KINDS else "auto") else 0.0
        except InputError:
            return 0.0

    items = list(zip(completions, solutions, kinds, strict=False))
    if len(items) <= 1:
        return [one(i) for i in items]
    # comparisons that reach math-verify run in parallel, one thread per pool worker
    with ThreadPoolExecutor(max_workers=mathcheck.WORKERS, thread_name_prefix="reward") as ex:
        return list(ex.map(one, items))


def format_reward(completions: list[Any], **kw: Any) -> list[float]:
    """1.0 when a completion (generated text, starting inside the thinking) has exactly one
    ``</think>``, non-empty thinking before it and a complete ``\\boxed{}`` answer after it."""
    out = []
    for comp in completions:
        text = _completion_text(comp)
        ok = False
        if text.count(THINK_END) == 1:
            thinking, _, answer = text.partition(THINK_END)
            thinking = thinking.strip().removeprefix("<think>").strip()
            ok = bool(thinking) and "<think>" not in thinking and any(b[2].strip() for b in _boxes(answer))
        out.append(1.0 if ok else 0.0)
    return out
