"""Comparing two cleaned answers: cheap pure-Python checks, and math-verify in a process pool.

``tutor.answers.equivalent`` cleans the answers (phrases, ``$``, punctuation) and then uses this module.

Cheap checks, in the calling process (no sympy): ``choice_letters`` (option letters as a set),
``parse_number`` / ``numbers_equal`` (integers, decimals, fractions, ``3\\times10^{8}``, percentages,
trailing units, relative tolerance), ``text_key`` / ``looks_like_text`` (text compared ignoring case,
spaces and punctuation).

Everything else goes to math-verify through ``math_equal``. math-verify's own timeouts use ``signal.alarm``, which fails off
the main thread (the Gradio worker threads, a training loop's reward threads), so we switch them off
(``parsing_timeout=None``, ``timeout_seconds=None``) and run every comparison in a small pool of
worker processes instead, waiting on ``future.result(timeout=...)``. A worker that overruns is
killed and the pool is rebuilt; the comparison counts as "not equal".

    from tutor.mathcheck import math_equal
    math_equal(r"2\\sqrt{2}", r"\\sqrt{8}", rel_tol=1e-4, timeout=5.0)   # -> True

On top of math-verify the worker fixes its known false positives:

* both sides written as equations must both parse as equations (a bare ``3x-y+13=0`` is otherwise
  read as the number 0 and any two such equations "match");
* two equations are equal when they share the left side (``y = ...``, ``f(x) = ...``) and their right
  sides are equal, or when ``lhs - rhs`` of one is a non-zero constant multiple of the other's
  (``y=2x+1`` == ``2x+1=y`` == ``y-2x-1=0``); math-verify's "solve both" step calls two equations with
  no solutions (``x=x+1`` and ``x=x+2``) equal, and we never reach it;
* finite sets of different sizes are never equal ("find all" answers: a subset is wrong);
* numbers (anything without free symbols) are compared with a relative tolerance.

The pool has ``R1V_CHECK_WORKERS`` workers (default 2) and starts on first use, or in the background
when ``warm_up()`` is called (the app does at start-up); ``shutdown()`` stops it.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import re
import threading
import time
import unicodedata
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

WORKERS = max(1, int(os.environ.get("R1V_CHECK_WORKERS", "2")))
STARTUP_TIMEOUT_S = 120.0  # first start imports sympy in each worker; not counted in a call's timeout

_EQUATION_RE = re.compile(r"(?<![<>!=\\])=(?!=)")
CJK = "\u3400-\u9fff"
LETTERS = r"[\(（]?[A-Ga-g][\)）]?(?:\s*(?:[,，、;；/]|和|与|及|and)?\s*[\(（]?[A-Ga-g][\)）]?)*"


# --------------------------------------------------------------------------- cheap checks: choice letters

_CHOICE_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|rm)\s*\{([^{}]*)\}")


def choice_letters(s: str) -> frozenset[str] | None:
    """Set of option letters in ``s`` (``AB``, ``B,A``, ``(C)``, ``选C``, ``C. 3``), or None."""
    t = _CHOICE_WRAP.sub(r"\1", s).strip()
    t = re.sub(r"^(?:选项|选|options?|choices?)\s*[:：]?\s*", "", t, flags=re.I)
    m = re.match(r"^[\(（]?([A-G])[\)）]?\s*[.．:：、]\s*\S", t)
    if m and not re.fullmatch(LETTERS, t):
        return frozenset(m.group(1))
    if not re.fullmatch(LETTERS, t):
        return None
    letters = re.findall(r"[A-Ga-g]", t)
    return frozenset(c.upper() for c in letters) if letters else None


def has_upper_choice(s: str) -> bool:
    """Whether ``s`` holds an upper-case option letter (so ``c`` alone is not taken for a choice)."""
    t = _CHOICE_WRAP.sub(r"\1", s)
    return bool(re.search(r"[A-G]", t))


# --------------------------------------------------------------------------- cheap checks: numbers

_UNIT_ALIASES = {
    "米": "m", "厘米": "cm", "毫米": "mm", "千米": "km", "公里": "km", "千克": "kg", "公斤": "kg", "克": "g",
    "秒": "s", "分钟": "min", "小时": "h", "牛": "N", "牛顿": "N", "焦": "J", "焦耳": "J", "瓦": "W",
    "瓦特": "W", "伏": "V", "伏特": "V", "安": "A", "安培": "A", "欧": "Ω", "欧姆": "Ω", "摩尔": "mol",
    "升": "L", "毫升": "mL", "帕": "Pa", "赫兹": "Hz", "度": "°", "deg": "°", "^\\circ": "°", "^{\\circ}": "°",
    "\\circ": "°", "℃": "°C", "^\\circC": "°C", "米/秒": "m/s", "千米/时": "km/h", "ohm": "Ω", "\\Omega": "Ω",
}
_ASCII_UNITS = (
    "km/h|m/s\\^\\{?2\\}?|m/s²|m/s|N/m|J/mol|kg/m\\^\\{?3\\}?|g/mol|mol/L|cm\\^\\{?[23]\\}?|m\\^\\{?[23]\\}?|"
    "cm²|cm³|m²|m³|km|cm|mm|kg|mg|mol|mL|ml|kW|kJ|kPa|MPa|Pa|Hz|eV|min|ohm|deg|rad|[mgsNJWVAΩLKhT]"
)
_UNIT_RE = re.compile(
    r"\s*(?:\\[,;:!]|\\ |~)*\s*(?P<unit>"
    r"\\(?:text|mathrm|rm|mbox)\s*\{[^{}]*\}(?:\s*\\?[/·]\s*\\(?:text|mathrm|rm)\s*\{[^{}]*\})*"
    r"|\^\s*\{?\\circ\}?\s*[CF]?|°[CF]?|℃"
    r"|[" + CJK + r"]{1,4}(?:/[" + CJK + r"]{1,3})?"
    r"|(?:" + _ASCII_UNITS + r")(?![A-Za-z])"
    r")\s*$"
)
_VARIABLE_LIKE_UNITS = set("mgsALKhT")
_DEC = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
_NUM_RES = [
    re.compile(r"(?P<sign>[+-]?)\s*\\frac\s*\{\s*(?P<a>[+-]?(?:" + _DEC + r"))\s*\}\s*\{\s*(?P<b>[+-]?(?:" + _DEC + r"))\s*\}"),
    re.compile(r"(?P<sign>[+-]?)\s*\\frac\s*(?P<a>\d)\s*(?P<b>\d)"),
    re.compile(r"(?P<sign>[+-]?)\s*(?P<a>" + _DEC + r")\s*/\s*(?P<b>" + _DEC + r")"),
    re.compile(r"(?P<sign>[+-]?)\s*(?P<m>" + _DEC + r")\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*(?P<e>[+-]?\d+)\s*\}?"),
    re.compile(r"(?P<sign>[+-]?)\s*(?P<m>" + _DEC + r")[eE](?P<e>[+-]?\d+)"),
    re.compile(r"(?P<sign>[+-]?)\s*(?P<m>" + _DEC + r")"),
]


_TRAILING_UNIT_RE = re.compile(
    r"(?:\s|\\[,;: ]|~)*\\(?:text|mathrm|mbox|rm)\s*\{[^{}]*\}(?:\^\{?\d\}?)?\s*$"
    r"|\s+(?:" + _ASCII_UNITS + r")(?![A-Za-z])\s*$"
)


def strip_units(s: str) -> str:
    """``s`` without a trailing unit (``2\\sqrt{2}\\,\\text{m}``, ``3\\pi cm``); bare one-letter
    units stay unless separated by a space, since ``2m`` may be twice a variable ``m``."""
    out = _TRAILING_UNIT_RE.sub("", s).strip()
    return out if out and re.search(r"[0-9}]", out) else s


def _to_fraction(s: str) -> Fraction:
    return Fraction(s.replace(",", ""))


def parse_number(s: str) -> tuple[list[Fraction], str | None] | None:
    """Candidate values and unit of a plain number (``50%`` -> [1/2, 50]), or None if not a number."""
    t = s.strip()
    unit = None
    pct = False
    if re.search(r"(?:\\%|%)\s*$", t):
        pct, t = True, re.sub(r"(?:\\%|%)\s*$", "", t).strip()
    else:
        m = _UNIT_RE.search(t)
        if m and m.start() > 0:
            unit, t = m.group("unit"), t[: m.start()].strip()
            if unit in _VARIABLE_LIKE_UNITS and m.group(0)[:1] not in (" ", "\\", "~"):
                return None  # "2m", "3g": a multiple of a variable unless written "2 m"
            if re.search(r"(?:\\%|%)\s*$", t):
                pct, t = True, re.sub(r"(?:\\%|%)\s*$", "", t).strip()
    t = re.sub(r"\\[,;:!]|\\ |~|\{,\}", "", t).replace(" ", "")
    for rx in _NUM_RES:
        m = rx.fullmatch(t)
        if not m:
            continue
        try:
            if "a" in m.groupdict():
                b = _to_fraction(m.group("b"))
                if b == 0:
                    return None
                value = _to_fraction(m.group("a")) / b
            elif "e" in m.groupdict() and m.groupdict().get("e") is not None:
                exp = int(m.group("e"))
                if abs(exp) > 400:
                    return None
                value = _to_fraction(m.group("m")) * Fraction(10) ** exp
            else:
                value = _to_fraction(m.group("m"))
        except (ValueError, ZeroDivisionError):
            return None
        if m.group("sign") == "-":
            value = -value
        return ([value / 100, value] if pct else [value]), _canonical_unit(unit)
    return None


def _canonical_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    u = _CHOICE_WRAP.sub(r"\1", unit).replace(" ", "").replace("\\", "\\")
    u = u.replace("{", "").replace("}", "") if not u.startswith("^") else u
    return _UNIT_ALIASES.get(u, _UNIT_ALIASES.get(unit.strip(), u))


def _close_fraction(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    if a == b:
        return True
    return abs(a - b) <= Fraction(rel_tol) * max(abs(a), abs(b))


def numbers_equal(g: tuple[list[Fraction], str | None], p: tuple[list[Fraction], str | None],
                   rel_tol: float) -> bool:
    """Parsed numbers agree within ``rel_tol``; known, different units (``m`` vs ``kg``) never do."""
    (gv, gu), (pv, pu) = g, p
    known = set(_UNIT_ALIASES.values()) | {"m/s", "km/h"}
    if gu and pu and gu != pu and gu in known and pu in known:
        return False
    return any(_close_fraction(a, b, rel_tol) for a in gv for b in pv)


# --------------------------------------------------------------------------- cheap checks: text

_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{([^{}]*)\}")


def text_key(s: str) -> str:
    """``s`` without ``\\text{}`` wrappers, case, spaces and punctuation (``增大。`` -> ``增大``)."""
    s = _TEXT_WRAP.sub(r"\1", s)
    s = unicodedata.normalize("NFKC", s).casefold()
    return "".join(c for c in s if not (c.isspace() or unicodedata.category(c)[0] in "PZ" or c in "$"))


def looks_like_text(s: str) -> bool:
    """Whether ``s`` is words (Chinese, or English words) rather than mathematics."""
    t = _TEXT_WRAP.sub(r"\1", s)
    if re.search(f"[{CJK}]", t):
        return True
    if re.search(r"[\\=<>^_{}+*/0-9]", t):
        return False
    words = re.findall(r"[A-Za-z]+", t)
    return bool(words) and (len(words) >= 2 or len(words[0]) >= 3)


def number_latex(n: tuple[list[Fraction], str | None]) -> str:
    """LaTeX of a parsed number (its first value), for math-verify."""
    v = n[0][0]
    return str(v.numerator) if v.denominator == 1 else f"\\frac{{{v.numerator}}}{{{v.denominator}}}"


# --------------------------------------------------------------------------- worker side


def _watch_owner(owner: int, every: float = 1.0) -> None:
    """Exit this worker once the process that started the pool is gone. A worker's parent is the fork
    server, not the app, so a SIGKILLed app would otherwise leave its workers running for ever."""
    while True:
        time.sleep(every)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # alive, under another user
            pass


def _init_worker(owner: int | None = None) -> None:
    """Import the heavy modules once per worker, run one comparison (math-verify's parser sets itself up
    on first use) and quieten math-verify's 'timeout disabled' note; watch the pool's owner process."""
    if owner is not None:
        threading.Thread(target=_watch_owner, args=(owner,), daemon=True, name="owner-watch").start()
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import math_verify  # noqa: F401

    try:  # the parser builds its grammar on first use (seconds): do it now, not in a caller's first check
        compare("x^2+1", "1+x^2")
    except Exception:  # noqa: BLE001 - a real call reports any failure
        pass


def _ready() -> int:
    return os.getpid()


def _sleep(seconds: float) -> bool:
    """Test hook: a comparison that hangs."""
    time.sleep(seconds)
    return True


def _parse(text: str) -> list[Any]:
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    # math-verify's unit stripping knows "c", "d", "m", "ab", "increase"...: "3ab" would read as 3.
    # Units are removed on our side (strip_units) instead.
    norm = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True, nits=True,
                               boxed="all", equations=False)
    config = [LatexExtractionConfig(normalization_config=norm), ExprExtractionConfig()]
    return parse(f"${text}$", extraction_config=config, parsing_timeout=None)


def _as_number(expr: Any):
    """A real sympy number for ``expr`` when it has no free symbols, else None."""
    import sympy

    if not isinstance(expr, sympy.Expr) or isinstance(expr, sympy.Set) or expr.free_symbols:
        return None
    try:
        value = sympy.N(expr, 30)
    except Exception:  # noqa: BLE001 - sympy raises many kinds here
        return None
    if not value.is_number or value.is_real is not True or not value.is_finite:
        return None
    return value


def _close(a, b, rel_tol: float) -> bool:
    if a == b:
        return True
    return bool(abs(a - b) <= rel_tol * max(abs(a), abs(b)))


def _sets_of_different_size(g: Any, p: Any) -> bool:
    import sympy

    def unwrap(e: Any) -> Any:
        if isinstance(e, sympy.Eq) and isinstance(e.rhs, sympy.FiniteSet):
            return e.rhs
        return e

    g, p = unwrap(g), unwrap(p)
    if isinstance(g, sympy.FiniteSet) and isinstance(p, sympy.FiniteSet):
        return len(g) != len(p)
    # one side lists several values, the other a single value
    if isinstance(g, sympy.FiniteSet) and len(g) > 1 and isinstance(p, sympy.Expr):
        return True
    if isinstance(p, sympy.FiniteSet) and len(p) > 1 and isinstance(g, sympy.Expr):
        return True
    return False


def _equations_equal(g: Any, p: Any, rel_tol: float) -> bool:
    import sympy
    from math_verify import verify

    if g.lhs == p.lhs:
        gv, pv = _as_number(g.rhs), _as_number(p.rhs)
        if gv is not None and pv is not None:
            return _close(gv, pv, rel_tol)
        if _sets_of_different_size(g.rhs, p.rhs):
            return False
        return bool(verify(g.rhs, p.rhs, timeout_seconds=None))
    dg, dp = g.lhs - g.rhs, p.lhs - p.rhs
    if isinstance(dg, sympy.Expr) and isinstance(dp, sympy.Expr):
        if dg == 0 or dp == 0:
            return dg == dp
        ratio = sympy.simplify(dg / dp)
        return bool(ratio.is_number and not ratio.free_symbols and ratio != 0 and ratio.is_finite)
    return False


def compare(gold: str, pred: str, rel_tol: float = 1e-4) -> bool:
    """Compare two cleaned answers (no ``$``) with math-verify plus the guards above.

    Runs in the calling process with no timeout: use ``math_equal`` unless you are a worker.
    """
    import sympy
    from math_verify import verify

    g_list, p_list = _parse(gold), _parse(pred)
    if not g_list or not p_list:
        return False
    g, p = g_list[0], p_list[0]
    if isinstance(g, str) or isinstance(p, str):
        return bool(verify(g_list, p_list, allow_set_relation_comp=True, timeout_seconds=None))
    if _EQUATION_RE.search(gold) and _EQUATION_RE.search(pred):
        is_rel = (sympy.core.relational.Relational, sympy.And, sympy.FiniteSet)
        if not (isinstance(g, is_rel) and isinstance(p, is_rel)):
            return False
    gv, pv = _as_number(g), _as_number(p)
    if gv is not None and pv is not None:
        return _close(gv, pv, rel_tol)
    if isinstance(g, sympy.Eq) and isinstance(p, sympy.Eq):
        return _equations_equal(g, p, rel_tol)
    if _sets_of_different_size(g, p):
        return False
    return bool(verify(g_list, p_list, allow_set_relation_comp=True, timeout_seconds=None))


# --------------------------------------------------------------------------- caller side


class _Pool:
    """A lazily started ProcessPoolExecutor that can be rebuilt when a worker hangs."""

    def __init__(self, workers: int):
        self.workers = workers
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers)
        self._executor: cf.ProcessPoolExecutor | None = None

    def _context(self):
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            # workers fork from a server that has sympy loaded: a restart after a timeout is quick
            ctx.set_forkserver_preload(["math_verify"])
            return ctx
        return mp.get_context("spawn")

    def executor(self) -> cf.ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                started = time.monotonic()
                ex = cf.ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=self._context(), initializer=_init_worker,
                    initargs=(os.getpid(),),
                )
                # wait until the workers have imported sympy, so the first call's timeout is fair
                for fut in [ex.submit(_ready) for _ in range(self.workers)]:
                    fut.result(timeout=STARTUP_TIMEOUT_S)
                logger.info("math checker pool started (%d workers, %.1fs)", self.workers,
                            time.monotonic() - started)
                self._executor = ex
            return self._executor

    def kill(self, ex: cf.ProcessPoolExecutor) -> None:
        """Stop ``ex``'s worker processes (a stuck sympy call cannot be interrupted otherwise)."""
        with self._lock:
            if self._executor is ex:
                self._executor = None
        procs = list((getattr(ex, "_processes", None) or {}).values())
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        ex.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.join(timeout=5)

    def shutdown(self) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)

    def run(self, fn, *args, timeout: float) -> tuple[bool, Any]:
        """(finished, result) of ``fn(*args)`` in a worker; finished is False on a timeout."""
        with self._slots:  # waiting for a free worker is not counted in the timeout
            for attempt in (1, 2):
                ex = self.executor()
                try:
                    fut = ex.submit(fn, *args)
                    return True, fut.result(timeout=timeout)
                except cf.TimeoutError:
                    logger.warning("math check timed out after %.1fs; restarting the pool", timeout)
                    self.kill(ex)
                    return False, None
                except (BrokenProcessPool, RuntimeError) as e:
                    # another thread's timeout killed this pool under us, or a worker crashed
                    logger.warning("math checker pool broken (%s), attempt %d", e, attempt)
                    self.kill(ex)
            return False, None


_POOL = _Pool(WORKERS)


def math_equal(gold: str, pred: str, *, rel_tol: float = 1e-4, timeout: float = 5.0) -> bool:
    """``compare(gold, pred)`` in a worker process; False when it takes longer than ``timeout`` s."""
    try:
        finished, result = _POOL.run(compare, gold, pred, rel_tol, timeout=timeout)
    except Exception:  # noqa: BLE001 - a checker failure must never take the caller down
        logger.exception("math check failed")
        return False
    return bool(result) if finished else False


def run_in_pool(fn, *args, timeout: float) -> tuple[bool, Any]:
    """Run a picklable module-level function in the checker pool (used by tests)."""
    return _POOL.run(fn, *args, timeout=timeout)


def shutdown() -> None:
    """Stop the worker pool (it restarts on the next call)."""
    _POOL.shutdown()


def warm_up() -> threading.Thread:
    """Start the worker pool in the background now (the app calls this at start-up): each worker
    imports sympy, which takes seconds, and the first answer check would otherwise wait for it."""

    def start() -> None:
        try:
            _POOL.executor()
        except Exception:  # noqa: BLE001 - the first real call retries and reports
            logger.warning("math checker pool did not start in the background", exc_info=True)

    thread = threading.Thread(target=start, name="r1v-mathcheck-warmup", daemon=True)
    thread.start()
    return thread


def pool_started() -> bool:
    """Whether the worker pool is running (tests use it to prove the fast paths skip it)."""
    return _POOL._executor is not None
