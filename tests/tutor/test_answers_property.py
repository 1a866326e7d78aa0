"""Property tests for tutor.answers: reflexivity, symmetry, extraction round trips, no crashes.

All generated cases stay on the fast paths (no math-verify pool), so the file runs in seconds.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tutor import answers
from tutor.answers import equivalent, extract_all, extract_final
from tutor.reasoning import split_reasoning


@pytest.fixture(autouse=True)
def no_pool(monkeypatch):
    def boom(*a, **k):
        raise AssertionError(f"pool used for {a}")

    monkeypatch.setattr(answers, "math_equal", boom)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ints = st.integers(min_value=-10**9, max_value=10**9)
decimals = st.decimals(min_value=-10**6, max_value=10**6, places=4, allow_nan=False, allow_infinity=False)
fractions = st.builds(Fraction, st.integers(-1000, 1000), st.integers(1, 1000))
letter_sets = st.sets(st.sampled_from("ABCDEFG"), min_size=1, max_size=4)
separators = st.sampled_from(["", ",", "、", ", ", " ", "，"])


def frac_forms(f: Fraction) -> list[str]:
    sign = "-" if f < 0 else ""
    a, b = abs(f.numerator), f.denominator
    return [f"{sign}{a}/{b}", f"{sign}\\frac{{{a}}}{{{b}}}", f"{sign}\\dfrac{{{a}}}{{{b}}}", f"\\frac{{{f.numerator}}}{{{b}}}"]


def letters_text(letters, sep: str, parens: bool) -> str:
    items = [f"({c})" if parens else c for c in letters]
    return sep.join(items)


@SETTINGS
@given(ints)
def test_integer_reflexive(n):
    assert equivalent(str(n), str(n))


@SETTINGS
@given(decimals)
def test_decimal_reflexive_and_trailing_zero(d):
    s = str(d)
    assert equivalent(s, s)
    assert equivalent(s, s + "0" if "." in s else s + ".0")


@SETTINGS
@given(fractions)
def test_fraction_forms_all_agree(f):
    forms = frac_forms(f)
    for a in forms:
        assert equivalent(a, a)
        for b in forms:
            assert equivalent(a, b), (a, b)


@SETTINGS
@given(fractions, fractions)
def test_number_symmetry(a, b):
    x, y = frac_forms(a)[1], f"{float(b):.6f}"
    assert equivalent(x, y) == equivalent(y, x)


@SETTINGS
@given(st.integers(1, 999))
def test_percent_matches_fraction(n):
    assert equivalent(f"{n}%", str(Fraction(n, 100)))
    assert equivalent(str(Fraction(n, 100)), f"{n}\\%")


@SETTINGS
@given(letter_sets, st.permutations(list("ABCDEFG")), separators, st.booleans())
def test_letter_sets_reflexive_and_order_free(letters, order, sep, parens):
    ordered = [c for c in order if c in letters]
    a = "".join(sorted(letters))
    b = letters_text(ordered, sep, parens)
    assert equivalent(a, a)
    assert equivalent(a, b), (a, b)
    assert equivalent(b, a), (b, a)


@SETTINGS
@given(letter_sets, letter_sets, separators)
def test_letter_sets_symmetric_and_exact(x, y, sep):
    a, b = sep.join(sorted(x)), "".join(sorted(y))
    assert equivalent(a, b) == equivalent(b, a) == (x == y)


# brace-balanced answer strings with no characters that extraction trims at the ends
_atom = st.text(alphabet="abcxyz0123456789+-^_=()[]<>|'αβ中文", min_size=1, max_size=6)


def _balanced(inner):
    return st.one_of(inner, st.builds(lambda s: "{" + s + "}", inner), st.builds(lambda a, b: a + b, inner, inner),
                     st.builds(lambda s: "\\frac{" + s + "}{2}", inner))


balanced = st.recursive(_atom, _balanced, max_leaves=8)


@SETTINGS
@given(balanced, st.text(alphabet="abc .,\n", max_size=30))
def test_boxed_round_trip(s, prefix):
    assert extract_final(f"{prefix}...\\boxed{{{s}}}") == s
    assert extract_final(f"thinking \\boxed{{zzz}}</think>{prefix}\\boxed{{{s}}}。") == s


@SETTINGS
@given(st.text(max_size=400))
def test_extraction_never_raises(text):
    result = extract_final(text)
    assert result is None or isinstance(result, str)
    assert isinstance(extract_all(text), list)
    r = split_reasoning(text)
    assert isinstance(r.thinking, str) and isinstance(r.answer, str)
    assert "</think>" not in r.answer


@SETTINGS
@given(st.text(alphabet="\\{}$boxed()[]答案是选故ABC123.。;；</think>* ", max_size=120))
def test_extraction_never_raises_on_latexish_noise(text):
    extract_final(text)
    extract_all(text)
