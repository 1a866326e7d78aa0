"""Tests for the shipped example problems (assets/examples) and their generator, tutor.examples."""

from __future__ import annotations

import io
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from tutor import examples
from tutor._example_problems import PROBLEMS
from tutor.examples import EXAMPLES_DIR, Example, FontMissingError, load_examples
from tutor.prompts import LANGS, PROBLEM_TYPES, SUBJECTS, build_messages, render_text_prompt

FIELDS = {"id", "subject", "problem_type", "lang", "question", "answer", "source"}


@pytest.fixture(scope="module")
def loaded() -> list[Example]:
    return load_examples()


def test_at_least_twelve_examples_load_as_images(loaded: list[Example]) -> None:
    assert len(loaded) >= 12
    total = 0
    for ex in loaded:
        data = ex.image_bytes()
        total += len(data)
        assert len(data) <= examples.MAX_IMAGE_BYTES, ex.id
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG"
            im.load()
            assert im.width >= 800 and im.height >= 150
    assert total <= 3_000_000
    assert len({ex.id for ex in loaded}) == len(loaded)


def test_sidecars_have_valid_fields(loaded: list[Example]) -> None:
    for ex in loaded:
        meta = json.loads((EXAMPLES_DIR / f"{ex.id}.json").read_text(encoding="utf-8"))
        assert set(meta) == FIELDS, ex.id
        assert ex.image_path.stem == meta["id"] == ex.id
        assert meta["subject"] in SUBJECTS
        assert meta["problem_type"] in PROBLEM_TYPES and meta["problem_type"] != "auto"
        assert meta["lang"] in LANGS
        assert meta["source"] == "made by R1V Tutor"
        question, answer, ptype = meta["question"], meta["answer"], meta["problem_type"]
        assert question.strip()
        has_cjk = bool(re.search(r"[\u4e00-\u9fff]", question))
        assert has_cjk == (meta["lang"] == "zh"), ex.id
        if ptype == "single_choice":
            assert isinstance(answer, str) and re.fullmatch(r"[A-D]", answer)
            assert all(f"{k}." in question for k in "ABCD")
        elif ptype == "multiple_choice":
            assert isinstance(answer, str) and re.fullmatch(r"[A-D]{2,4}", answer)
            assert list(answer) == sorted(set(answer))
        elif ptype == "fill_blank":
            blanks = len(re.findall(r"_{4,}", question))
            assert blanks >= 1
            assert (len(answer) if isinstance(answer, list) else 1) == blanks, ex.id
        else:
            subs = re.findall(r"^\((\d)\)", question, flags=re.M)
            assert subs == [str(k) for k in range(1, len(subs) + 1)] and len(subs) >= 2
            assert isinstance(answer, list) and len(answer) == len(subs), ex.id
        parts = answer if isinstance(answer, list) else [answer]
        assert all(isinstance(a, str) and a.strip() for a in parts)


def test_subjects_types_and_languages_are_all_covered(loaded: list[Example]) -> None:
    assert {ex.subject for ex in loaded} == set(SUBJECTS)
    assert {ex.problem_type for ex in loaded} == set(PROBLEM_TYPES) - {"auto"}
    assert {ex.lang for ex in loaded} == set(LANGS)
    assert any(ex.problem_type == "fill_blank" and isinstance(ex.answer, list) for ex in loaded)
    for subject in SUBJECTS:  # every subject in both languages
        assert {ex.lang for ex in loaded if ex.subject == subject} == set(LANGS)


def test_committed_files_match_the_generator(loaded: list[Example]) -> None:
    assert [ex.id for ex in loaded] == [p.id for p in PROBLEMS]
    for spec in PROBLEMS:
        meta = json.loads((EXAMPLES_DIR / f"{spec.id}.json").read_text(encoding="utf-8"))
        assert meta == examples.sidecar(spec)


def test_gold_joins_blanks(loaded: list[Example]) -> None:
    by_id = {ex.id: ex for ex in loaded}
    assert by_id["physics-en-projectile"].gold == "2; 30; 25"
    assert by_id["math-zh-set-intersection"].gold == "B"


def test_every_example_makes_a_prompt(loaded: list[Example]) -> None:
    for ex in loaded:
        msgs = build_messages(
            "solve", question=ex.question, subject=ex.subject, problem_type=ex.problem_type, lang=ex.lang
        )
        text = render_text_prompt(msgs)
        assert text.count("<image>") == 1 and ex.question in text


def test_answers_recomputed() -> None:
    """The gold answers, worked out again from the numbers in the problems."""
    gold = {p.id: p.answer for p in PROBLEMS}
    # x^2 - 4x + 3 < 0 on (1, 3); intersect with (2, 5).
    a_set = [x / 100 for x in range(-500, 1000) if (x / 100) ** 2 - 4 * x / 100 + 3 < 0]
    both = [x for x in a_set if 2 < x < 5]
    assert (min(a_set), max(a_set)) == (1.01, 2.99) and (min(both), max(both)) == (2.01, 2.99)
    assert gold["math-zh-set-intersection"] == "B"  # B. (2, 3)
    # Cosine rule and area.
    bc = math.sqrt(5**2 + 3**2 - 2 * 5 * 3 * math.cos(math.radians(120)))
    area = 0.5 * 5 * 3 * math.sin(math.radians(120))
    assert math.isclose(bc, 7) and math.isclose(area, 15 * math.sqrt(3) / 4)
    assert gold["math-en-triangle-cosine-rule"] == ["7", "\\frac{15\\sqrt{3}}{4}"]
    # Arithmetic sequence: a2 = 3, a5 = 9 -> a_n = 2n - 1; T_n = n / (2n + 1).
    d = Fraction(9 - 3, 5 - 2)
    a = [3 + (n - 2) * d for n in range(1, 12)]
    assert a[:4] == [1, 3, 5, 7]
    for n in range(1, 10):
        assert sum(1 / (a[k] * a[k + 1]) for k in range(n)) == Fraction(n, 2 * n + 1)
    # f(x) = x^3 - 3x: odd, local max at -1, not increasing on (0, 1), max 2 on [-2, 2].
    f = [x / 1000 for x in range(-2000, 2001)]
    assert max(x**3 - 3 * x for x in f) == pytest.approx(2)
    assert (0.5**3 - 1.5) < (0.1**3 - 0.3)  # decreasing somewhere on (0, +inf): C is false
    assert gold["math-en-cubic-graph"] == "ABD"
    assert max(math.sin(t / 1000) + math.sqrt(3) * math.cos(t / 1000) for t in range(6284)) == pytest.approx(
        2
    )
    # Circuit: I = E / (R1 + R2 + r); voltmeter across R2.
    assert 6 / (2 + 3 + 1) * 3 == 3 and gold["physics-zh-circuit-voltmeter"] == "C"
    # Projectile: h = g t^2 / 2.
    t = math.sqrt(2 * 20 / 10)
    assert [t, 15 * t, math.hypot(15, 10 * t)] == [2, 30, 25]
    # Uniform acceleration from rest, a = 2: v(3) and the displacement during the third second.
    assert (2 * 3, 0.5 * 2 * 3**2 - 0.5 * 2 * 2**2) == (6, 5)
    # Fe + H2SO4 -> FeSO4 + H2.
    n_fe = 5.6 / 56
    assert math.isclose(n_fe * 22.4, 2.24) and math.isclose(n_fe / 0.2, 0.5)
    # C2H6O + x O2 -> 2 CO2 + 3 H2O: oxygen atoms 1 + 2x = 4 + 3.
    assert (2 * 2 + 3 - 1) / 2 == 3
    # Dd x Dd: tall = DD + 2 Dd; homozygous share among tall.
    assert Fraction(1, 1 + 2) == Fraction(1, 3) and gold["biology-en-pea-genetics"] == "B"
    # Chargaff: A = T = 20 %, G = C.
    assert (100 - 2 * 20) / 2 == 30
    # Rr x Rr -> rr is 1 in 4.
    assert Fraction(sum(1 for p in "Rr" for q in "Rr" if p + q == "rr"), 4) == Fraction(1, 4)


def test_generator_is_deterministic() -> None:
    from tutor.thumbnail import covers

    # one the project's font subsets can draw (regenerating the others needs R1V_LATIN_FONT / R1V_CJK_FONT)
    spec = next(p for p in PROBLEMS if p.lang == "en" and p.figure is None and covers("DejaVuSans.ttf", p.text))
    first = examples.render_example(spec, seed=3)
    assert first == examples.render_example(spec, seed=3)
    assert first != examples.render_example(spec, seed=4)
    with Image.open(io.BytesIO(first)) as im:
        assert im.format == "JPEG" and im.width == 1000


def test_missing_cjk_font_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1V_CJK_FONT", "/nonexistent/font.ttc")
    with pytest.raises(FontMissingError, match="R1V_CJK_FONT=/nonexistent/font.ttc is not a font file"):
        examples.find_font("cjk", "数学")
    monkeypatch.delenv("R1V_CJK_FONT")
    # the shipped subset has the mini's characters only: a character it lacks is named, with the fix
    with pytest.raises(FontMissingError, match="lacks 鑫.*R1V_CJK_FONT.*fonts-wqy-microhei"):
        examples.find_font("cjk", "鑫")


def test_fonts_come_from_the_project_not_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("R1V_CJK_FONT", raising=False)
    monkeypatch.delenv("R1V_LATIN_FONT", raising=False)
    root = Path(examples.__file__).resolve().parents[1] / "assets" / "fonts"
    assert Path(examples.find_font("latin", "Compute 47+38")).parent == root
    assert Path(examples.find_font("cjk", "解方程")).parent == root
