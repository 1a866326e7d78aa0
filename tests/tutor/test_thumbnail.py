"""tutor.thumbnail: the history cards are the right size, show the photo's content (not its blank
paper), carry legible text where the caption band is, and are made once (cached by content)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from tutor import thumbnail as th

EXAMPLE = Path(__file__).resolve().parents[2] / "assets" / "examples" / "math-en-cubic-graph.jpg"


def _blank_page(tmp_path: Path) -> Path:
    """A 2400x3200 photo of paper with the problem, small, in one corner region."""
    page = Image.new("RGB", (2400, 3200), (246, 244, 239))
    d = ImageDraw.Draw(page)
    d.rectangle((1500, 2100, 2100, 2500), fill=(30, 30, 30))  # the "ink": a dark block
    page.paste(Image.new("RGB", (3, 3), (120, 120, 120)), (100, 100))  # a speck of dust
    path = tmp_path / "page.png"
    page.save(path)
    return path


def _dark_fraction(img: Image.Image, box: tuple[int, int, int, int]) -> float:
    g = img.convert("L").crop(box)
    return sum(1 for v in g.getdata() if v < 100) / (g.width * g.height)


def test_content_box_trims_the_blank_paper(tmp_path):
    img = Image.open(_blank_page(tmp_path))
    left, top, right, bottom = th.content_box(img)
    assert 1400 <= left <= 1500 and 2000 <= top <= 2100  # a small margin around the ink, the speck ignored
    assert 2100 <= right <= 2200 and 2500 <= bottom <= 2600
    blank = Image.new("RGB", (500, 400), (250, 250, 250))
    assert th.content_box(blank) == (0, 0, 500, 400)  # nothing stands out: the whole image


def test_card_size_content_and_text(tmp_path):
    path = th.card(_blank_page(tmp_path), tmp_path / "cache", title="Math | #3", answer="x = 2",
                   date="2026-12-03 14:56")
    card = Image.open(path)
    assert card.size == th.SIZE
    w, h = card.size
    photo_area = (0, 0, w, h - th.BAND)
    # The dark block fills a good share of the photo area (a plain resize would make it ~3 % of it).
    assert _dark_fraction(card, photo_area) > 0.3
    # The band holds text: its rows differ from the empty band, in the title line and the answer line.
    empty = Image.new("RGB", (w, th.BAND), th.BAND_BG)
    band = card.crop((0, h - th.BAND + 1, w, h))
    diff = ImageChops.difference(band, empty.crop((0, 1, w, th.BAND))).convert("L")
    rows = [any(diff.getpixel((x, y)) > 60 for x in range(w)) for y in range(diff.height)]
    assert any(rows[2:18]) and any(rows[22:50])
    # Text with and without an answer differs exactly in the answer line.
    other = Image.open(th.card(_blank_page(tmp_path), tmp_path / "cache", title="Math | #3", answer=None,
                               date="2026-12-03 14:56"))
    d2 = ImageChops.difference(card, other).convert("L")
    assert d2.crop((0, h - th.BAND + 24, w, h)).getbbox() is not None
    assert d2.crop((0, 0, w, h - th.BAND + 20)).getbbox() is None


def test_real_photo_card_is_not_blank(tmp_path):
    card = Image.open(th.card(EXAMPLE, tmp_path, title="Math | #1", answer="BD", date="2026-12-03"))
    assert card.size == th.SIZE
    top = card.crop((0, 0, th.SIZE[0], th.SIZE[1] - th.BAND)).convert("L")
    assert ImageStat.Stat(top).stddev[0] > 20  # the problem's text, not an empty page


def test_cache_hit_and_key(tmp_path):
    photo = _blank_page(tmp_path)
    cache = tmp_path / "cache"
    a = th.card(photo, cache, title="Math | #3", answer="2", date="d")
    mtime = a.stat().st_mtime_ns
    b = th.card(photo, cache, title="Math | #3", answer="2", date="d")
    assert a == b and b.stat().st_mtime_ns == mtime  # found, not drawn again
    assert len(list(cache.glob("*.png"))) == 1
    c = th.card(photo, cache, title="Math | #3", answer="3", date="d")
    assert c != a and len(list(cache.glob("*.png"))) == 2  # another answer: another card


def test_text_only_problem_shows_the_question(tmp_path):
    q = th.card(None, tmp_path, title="Physics | #4", question="A ball is thrown upward at 20 m/s.", date="d")
    blank = th.card(None, tmp_path, title="Physics | #4", question="", date="d")
    img, empty = Image.open(q), Image.open(blank)
    area = (0, 0, th.SIZE[0], th.SIZE[1] - th.BAND)
    diff = ImageChops.difference(img.crop(area), empty.crop(area)).convert("L")
    box = diff.getbbox()
    assert box is not None and box[1] < 40  # the question's first words at the top of the card


def test_font_coverage_and_fallbacks(tmp_path):
    assert th.covers("DejaVuSans.ttf", "Math 12")
    assert not th.covers("DejaVuSans.ttf", "数学")  # the shipped fonts are subsets
    assert th._choose(["数学 | #1", "Math | #1"], th.REGULAR) == "Math | #1"  # no font has 数: English
    assert th._choose(["物理", "Physics"], th.REGULAR) == "物理"  # the CJK subset has these two
    assert "..." in th._drawable("已知集合 A={1,2}", th.REGULAR) and "A={1,2}" in th._drawable("已知集合 A={1,2}",
                                                                                                  th.REGULAR)
    # A photo that is not an image gives a question card, not an error.
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert Image.open(th.card(bad, tmp_path / "c", title="Math", question="x+1=2")).size == th.SIZE


@pytest.mark.parametrize("src, want", [(r"$\boxed{\frac{1}{2}}$", "1/2"), (r"\frac{x+1}{2}", "(x+1)/2"),
                                       (r"x \le 3 \cdot \pi", "x <= 3 * pi"), (r"\left( a \right)", "( a )")])
def test_plain(src, want):
    assert th.plain(src) == want


def test_content_box_finds_the_text_under_uneven_light():
    """A photo lit unevenly (dark at the top, bright at the bottom, as the shipped drill photos are):
    the box is the text's rows, not the shadow."""
    from PIL import ImageDraw

    from tutor.thumbnail import content_box

    img = Image.new("L", (300, 200))
    img.putdata([int(90 + 150 * y / 199) for y in range(200) for _ in range(300)])
    ImageDraw.Draw(img).rectangle((60, 120, 240, 140), fill=20)  # a line of "ink" in the lower half
    left, top, right, bottom = content_box(img.convert("RGB"))
    assert 100 <= top <= 120 and 140 <= bottom <= 160, (top, bottom)
    assert 40 <= left <= 60 and 240 <= right <= 260, (left, right)
