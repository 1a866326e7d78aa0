"""Small picture cards for the history list: the problem's content, its subject, answer and date.

    from tutor.thumbnail import card
    path = card(photo_path, cache_dir, title=["数学 · #3", "Math · #3"], answer="x = 2",
                date="2026-12-03 14:56", question="Solve 4x+4=12")

A student's photo is mostly blank paper: the card crops it to its content (the bounding box of the
pixels clearly darker than the paper, found on a small copy, with sparse specks ignored), scales
that into the top of a ``SIZE`` card and writes a caption band under it: the title (subject, number)
with the date, and the answer in bold. A problem without a photo gets its question's first words
instead. Cards are PNGs named by a hash of everything drawn (photo bytes, texts, size, layout
version), so a card is made once and found again after a restart.

Fonts come from the project (``assets/fonts``, loaded by path; ``tutor`` never imports
``training``). Those files are subsets: a text is drawn in the first font that has a glyph for each
of its characters; ``title`` may list alternatives (the page language first, then English) and the
first one some font covers whole is used; a character no font has becomes "?". Pure: Pillow only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

log = logging.getLogger(__name__)

SIZE = (320, 200)
BAND = 58  # caption band height (px) at the bottom of the card
VERSION = "1"  # part of the cache key: bump when the drawing changes
FONT_DIR = Path(__file__).resolve().parents[1] / "assets" / "fonts"
REGULAR = ("DejaVuSans.ttf", "wqy-microhei.ttf", "wqy-zenhei.ttf")
BOLD = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "wqy-microhei.ttf", "wqy-zenhei.ttf")
PAPER, INK, BAND_BG, MUTED = (255, 255, 255), (20, 24, 33), (238, 242, 250), (70, 78, 96)
_NOTDEF = "\ue000"  # a private-use code point: no shipped font has it, so it draws the "missing" glyph
_MAX_PHOTO_PIXELS = 60_000_000  # the store's photos passed the intake; anything larger is not drawn


# -- fonts -------------------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.truetype(str(FONT_DIR / name), size)
    except OSError:
        log.warning("font %s missing from %s", name, FONT_DIR)
        return None


@lru_cache(maxsize=4096)
def _has_glyph(name: str, ch: str) -> bool:
    """Does the font draw ``ch`` as itself (not the "missing glyph" box every font falls back to)?"""
    if ch.isspace():
        return True
    font = _font(name, 24)
    if font is None:
        return False
    mask = font.getmask(ch)
    missing = font.getmask(_NOTDEF)
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def covers(name: str, text: str) -> bool:
    """Has font file ``name`` (in ``assets/fonts``) a glyph for every character of ``text``?"""
    return all(_has_glyph(name, ch) for ch in text)


def _pick(text: str, names: Sequence[str], size: int) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]:
    """The first font covering ``text`` whole; else the one covering most, missing characters as "?"."""
    names = [n for n in names if _font(n, size) is not None]
    for n in names:
        if covers(n, text):
            return _font(n, size), text  # type: ignore[return-value]
    if not names:
        return ImageFont.load_default(size), text.encode("ascii", "replace").decode()
    best = max(names, key=lambda n: sum(_has_glyph(n, c) for c in text))
    return _font(best, size), "".join(c if _has_glyph(best, c) else "?" for c in text)  # type: ignore[return-value]


def _choose(options: Sequence[str], names: Sequence[str]) -> str:
    """The first of ``options`` some font covers whole (else the last one)."""
    options = [o for o in options if o] or [""]
    for o in options:
        if any(covers(n, o) for n in names if _font(n, 12) is not None):
            return o
    return options[-1]


def _fit(draw: ImageDraw.ImageDraw, text: str, names: Sequence[str], size: int, width: int,
         min_size: int = 11) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, str]:
    """A font (shrunk down to ``min_size``) in which ``text`` fits ``width``; cut with "…" if it never does."""
    for s in range(size, min_size - 1, -1):
        font, shown = _pick(text, names, s)
        if draw.textlength(shown, font=font) <= width:
            return font, shown
    ell = _ellipsis(names)
    while shown and draw.textlength(shown + ell, font=font) > width:
        shown = shown[:-1]
    return font, shown + ell


def _group(s: str) -> str:
    return s if re.fullmatch(r"[\w.^]+", s.strip()) else f"({s})"


def plain(text: str) -> str:
    """Math markup made readable as plain text: no $ or \\( \\), \\boxed{x} -> x, \\frac{a}{b} -> a/b."""
    s, last = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", text or ""), None
    while s != last:  # innermost first: \boxed{\frac{1}{2}}
        last = s
        s = re.sub(r"\\(?:boxed|text|mathrm|mathbf|operatorname)\{([^{}]*)\}", r"\1", s)
        s = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", lambda m: f"{_group(m[1])}/{_group(m[2])}", s)
        s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    for cmd, repl in (("cdot", "*"), ("times", "*"), ("pi", "pi"), ("le", "<="), ("ge", ">="), ("ne", "!=")):
        s = re.sub(r"\\" + cmd + r"(?![a-zA-Z])", repl, s)
    s = re.sub(r"\\[()\[\]]|\$", "", s)
    s = re.sub(r"\\([a-zA-Z]+)", r"\1", s).replace("{", "").replace("}", "")
    return re.sub(r"\s+", " ", s).strip()


# -- the photo ---------------------------------------------------------------------------------------


def content_box(img: Image.Image, margin: float = 0.03) -> tuple[int, int, int, int]:
    """The box (left, top, right, bottom) of ``img`` holding its content: what differs clearly from the
    paper (the image's bright level), with rows and columns holding only specks ignored. The whole
    image when nothing stands out."""
    g = ImageOps.grayscale(img)
    w, h = g.size
    k = max(1.0, max(w, h) / 400)
    small = g.resize((max(1, round(w / k)), max(1, round(h / k))), Image.Resampling.BOX)
    sw, sh = small.size
    # ink: clearly darker than the paper around it (the brightest level nearby), so a photo's uneven
    # light (a shadow, a gradient across the page) is not taken for content
    paper = small.filter(ImageFilter.MaxFilter(9))
    ink = ImageChops.subtract(paper, small).point(lambda v: 255 if v > 48 else 0)
    px = ink.load()
    cut = 128
    rows = [sum(1 for x in range(sw) if px[x, y] > cut) for y in range(sh)]
    cols = [sum(1 for y in range(sh) if px[x, y] > cut) for x in range(sw)]
    need_r, need_c = max(1, sw // 200), max(1, sh // 200)
    ys = [y for y, n in enumerate(rows) if n >= need_r]
    xs = [x for x, n in enumerate(cols) if n >= need_c]
    if not ys or not xs:
        return (0, 0, w, h)
    m = margin * max(xs[-1] - xs[0], ys[-1] - ys[0]) + 1
    left, right = max(0, (xs[0] - m) * k), min(w, (xs[-1] + 1 + m) * k)
    top, bottom = max(0, (ys[0] - m) * k), min(h, (ys[-1] + 1 + m) * k)
    return (int(left), int(top), int(round(right)), int(round(bottom)))


def _paste_photo(card: Image.Image, photo: Image.Image, area: tuple[int, int]) -> None:
    """The photo's content, scaled into the top ``area``: whole when it fits at half height or more,
    else its top part at that scale (a long page shows its first lines, readable)."""
    photo = ImageOps.exif_transpose(photo).convert("RGB")
    box = content_box(photo)
    crop = photo.crop(box)
    aw, ah = area
    w, h = crop.size
    s = min(aw / w, 2 * ah / h, 3.0)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    crop = crop.resize((nw, nh), Image.Resampling.LANCZOS)
    if nh > ah:
        crop = crop.crop((0, 0, nw, ah))
        nh = ah
    card.paste(crop, ((aw - nw) // 2, (ah - nh) // 2))


def _draw_question(draw: ImageDraw.ImageDraw, question: str, area: tuple[int, int]) -> None:
    """The question's first words, wrapped into ``area`` (as many lines as fit)."""
    aw, ah = area
    text = _drawable(plain(question), REGULAR) or "?"
    font = _pick(text, REGULAR, 17)[0]
    x0, y, line_h = 12, 10, 23
    words = re.findall(r"[\u2e80-\u9fff\uff00-\uffef]|\S+", text)  # CJK: one character a "word"
    line = ""
    for word in words:
        sep = "" if (not line or re.match(r"[\u2e80-\u9fff]", word) or re.search(r"[\u2e80-\u9fff]$", line)) else " "
        if draw.textlength(line + sep + word, font=font) <= aw - 2 * x0:
            line += sep + word
            continue
        if y + 2 * line_h > ah:  # the last line that fits: end it with an ellipsis
            line = line.rstrip() + " " + _ellipsis(REGULAR)
            break
        _text(draw, (x0, y), line, REGULAR, 17)
        y, line = y + line_h, word
    _text(draw, (x0, y), line, REGULAR, 17)


def _drawable(text: str, names: Sequence[str]) -> str:
    """``text`` with each run of characters no font has replaced by one ellipsis (the shipped CJK
    fonts are subsets: most Chinese questions cannot be drawn whole; the page's caption has them)."""
    ok = [n for n in names if _font(n, 12) is not None]
    out, gap = [], False
    for ch in text:
        if any(_has_glyph(n, ch) for n in ok):
            out.append(ch)
            gap = False
        elif not gap:
            out.append(" " + _ellipsis(names) + " ")
            gap = True
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _ellipsis(names: Sequence[str]) -> str:
    return "…" if any(covers(n, "…") for n in names if _font(n, 12) is not None) else "..."


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, names: Sequence[str], size: int,
          fill: tuple[int, int, int] = INK) -> None:
    """``text`` drawn run by run, each run in the first font covering it (a mixed Latin/CJK line)."""
    x, y = xy
    for run in _runs(text, names):
        font, shown = _pick(run, names, size)
        draw.text((x, y), shown, font=font, fill=fill)
        x += draw.textlength(shown, font=font)


def _runs(text: str, names: Sequence[str]) -> list[str]:
    """``text`` split where the first font that has the character changes."""
    def first(ch: str) -> str | None:
        return next((n for n in names if _font(n, 12) is not None and _has_glyph(n, ch)), None)
    runs: list[str] = []
    last: object = object()
    for ch in text:
        f = first(ch) if not ch.isspace() else last
        if runs and f == last:
            runs[-1] += ch
        else:
            runs.append(ch)
        last = f
    return runs


# -- the card ----------------------------------------------------------------------------------------


def render_card(photo: Image.Image | None, *, title: Sequence[str] | str, answer: str | None = None,
                date: str = "", question: str = "", size: tuple[int, int] = SIZE) -> Image.Image:
    """The card as an image (see the module docstring); ``title``: alternatives, the first a font covers."""
    w, h = size
    card = Image.new("RGB", size, PAPER)
    draw = ImageDraw.Draw(card)
    area = (w, h - BAND)
    drawn = False
    if photo is not None:
        try:
            _paste_photo(card, photo, area)
            drawn = True
        except (OSError, ValueError, ZeroDivisionError):
            log.warning("history thumbnail: photo not drawn", exc_info=True)
    if not drawn:
        _draw_question(draw, question, area)
    draw.rectangle((0, h - BAND, w, h), fill=BAND_BG)
    draw.line((0, h - BAND, w, h - BAND), fill=(200, 206, 220), width=1)
    titles = [title] if isinstance(title, str) else list(title)
    head = _choose(titles, REGULAR)
    date_font, date_shown = _pick(date, REGULAR, 13)
    date_w = draw.textlength(date_shown, font=date_font) if date else 0
    font, shown = _fit(draw, head, REGULAR, 15, int(w - 24 - date_w - 8))
    draw.text((10, h - BAND + 6), shown, font=font, fill=MUTED)
    if date:
        draw.text((w - 10 - date_w, h - BAND + 8), date_shown, font=date_font, fill=MUTED)
    ans = plain(answer or "")
    if ans:
        font, shown = _fit(draw, ans, BOLD, 22, w - 20, 12)
        draw.text((10, h - BAND + 26), shown, font=font, fill=INK)
    return card


def cache_key(photo_bytes: bytes | None, *parts: str, size: tuple[int, int] = SIZE) -> str:
    """The file name stem of a card: a hash of the photo's bytes and every text drawn."""
    hsh = hashlib.sha256(f"{VERSION}|{size[0]}x{size[1]}".encode())
    hsh.update(hashlib.sha256(photo_bytes or b"").digest())
    for p in parts:
        hsh.update(b"\x00" + p.encode("utf-8", "replace"))
    return hsh.hexdigest()[:40]


def card(photo: str | Path | None, cache_dir: str | Path, *, title: Sequence[str] | str, answer: str | None = None,
         date: str = "", question: str = "", size: tuple[int, int] = SIZE) -> Path:
    """The path of the card PNG for one problem, made on the first call and read from ``cache_dir``
    after (same photo bytes and texts: same file). A photo that cannot be read gives a question card."""
    data: bytes | None = None
    if photo is not None:
        try:
            data = Path(photo).read_bytes()
        except OSError:
            log.warning("history thumbnail: photo %s unreadable", photo)
    titles = [title] if isinstance(title, str) else list(title)
    cache_dir = Path(cache_dir)
    out = cache_dir / f"{cache_key(data, *titles, answer or '', date, question, size=size)}.png"
    if out.exists():
        return out
    img = None
    if data is not None:
        try:
            import io

            img = Image.open(io.BytesIO(data))
            if img.width * img.height > _MAX_PHOTO_PIXELS:
                img = None
            else:
                img.load()
        except (OSError, ValueError, Image.DecompressionBombError):
            img = None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.{threading.get_ident()}.tmp.png")  # per thread: two at once
    render_card(img, title=titles, answer=answer, date=date, question=question, size=size).save(tmp, optimize=True)
    os.replace(tmp, out)  # atomic: two requests making the same card never see half a file
    return out
