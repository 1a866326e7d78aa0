"""The example problems shipped in ``assets/examples/``: made-up phone photos of gaokao-style problems.

Each example is a JPEG (``<id>.jpg``) plus a sidecar JSON with the same stem::

    {"id", "subject", "problem_type", "lang", "question" (the text shown in the photo),
     "answer" (gold: a letter/letters, a number, LaTeX; a list for several blanks or sub-questions),
     "source": "made by R1V Tutor"}

and ``index.json`` lists them in order. The app shows them as clickable examples; tests and
benchmarks use them as a small smoke set with gold answers.

    from tutor.examples import load_examples
    for ex in load_examples():
        print(ex.id, ex.subject, ex.gold)        # ex.image_path, ex.image_bytes()

Regenerate (deterministic for a given seed and the same fonts and Pillow build)::

    python -m tutor.examples --build [--seed 7] [--out assets/examples]

Every problem is written for this project (text and figures drawn with PIL), then made to look
like a phone photo: perspective and rotation, an uneven lighting gradient, paper texture and sensor
noise, mild blur and JPEG compression. Fonts (only needed to regenerate: the images are committed)
are the files named by ``R1V_CJK_FONT`` and ``R1V_LATIN_FONT``, else the project's subsets in
``assets/fonts`` when they have every character of the problem; no system font path is read. The
committed images were drawn with WenQuanYi Micro Hei and DejaVu Sans (Debian's
``fonts-wqy-microhei``, ``fonts-dejavu-core``): point the two variables at those files to redraw them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tutor._example_problems import PROBLEMS, ProblemSpec

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
SOURCE = "made by R1V Tutor"
DEFAULT_SEED = 7
MAX_IMAGE_BYTES = 250_000

SHIPPED_FONTS = {"cjk": "wqy-microhei.ttf", "latin": "DejaVuSans.ttf"}  # in assets/fonts (tutor.thumbnail.FONT_DIR)
FONT_VARS = {"cjk": "R1V_CJK_FONT", "latin": "R1V_LATIN_FONT"}


@dataclass(frozen=True)
class Example:
    """One shipped example problem; ``answer`` is a list for several blanks or sub-questions."""

    id: str
    subject: str
    problem_type: str
    lang: str
    question: str
    answer: str | list[str]
    source: str
    image_path: Path

    @property
    def gold(self) -> str:
        """The gold answer as one string for ``tutor.answers.equivalent`` (blanks joined by "; ")."""
        return "; ".join(self.answer) if isinstance(self.answer, list) else self.answer

    def image_bytes(self) -> bytes:
        return self.image_path.read_bytes()


def load_examples(directory: Path | str | None = None) -> list[Example]:
    """The examples listed in ``index.json`` of ``directory`` (default ``assets/examples``), in order."""
    root = Path(directory) if directory is not None else EXAMPLES_DIR
    index = json.loads((root / "index.json").read_text(encoding="utf-8"))
    out: list[Example] = []
    for entry in index["examples"]:
        meta = json.loads((root / entry["sidecar"]).read_text(encoding="utf-8"))
        out.append(
            Example(
                id=meta["id"],
                subject=meta["subject"],
                problem_type=meta["problem_type"],
                lang=meta["lang"],
                question=meta["question"],
                answer=meta["answer"],
                source=meta["source"],
                image_path=root / entry["image"],
            )
        )
    return out


# --------------------------------------------------------------------------------------------- fonts


class FontMissingError(RuntimeError):
    """No CJK font was found; raised only when regenerating the images."""


def find_font(kind: str, text: str = "") -> str:
    """Path of the ``kind`` ("cjk" or "latin") font to draw ``text`` with: the file named by
    ``R1V_CJK_FONT`` / ``R1V_LATIN_FONT``, else the project's own subset in ``assets/fonts`` when it has
    every character of ``text``; no system font path is ever read. Raises FontMissingError."""
    from tutor.thumbnail import FONT_DIR, covers

    var = FONT_VARS[kind]
    env = os.environ.get(var)
    if env:
        if Path(env).is_file():
            return env
        raise FontMissingError(f"{var}={env} is not a font file. Point it at a .ttf/.ttc/.otf file.")
    name = SHIPPED_FONTS[kind]
    missing = sorted({c for c in text if not c.isspace() and not covers(name, c)})
    if not missing:
        return str(FONT_DIR / name)
    raise FontMissingError(
        f"The project's font assets/fonts/{name} lacks {''.join(missing[:20])} for the example images. "
        f"Set {var} to a full font file (e.g. the one `apt-get install -y "
        f"{'fonts-wqy-microhei' if kind == 'cjk' else 'fonts-dejavu-core'}` installs, which drew the "
        "committed images). The committed images do not need it; only regenerating does."
    )


@dataclass
class Fonts:
    """A CJK font and a Latin font at one size; text is drawn in runs, each char with its font."""

    size: int
    text: str = ""  # what will be drawn: picks the fonts that have its characters
    cjk: object = field(init=False)
    latin: object = field(init=False)

    def __post_init__(self) -> None:
        from PIL import ImageFont

        latin = "".join(c for c in self.text if not _is_cjk(c))
        cjk = "".join(c for c in self.text if _is_cjk(c))
        self.latin = ImageFont.truetype(find_font("latin", latin), self.size)
        self.cjk = ImageFont.truetype(find_font("cjk", cjk), self.size) if cjk else self.latin

    def font_for(self, ch: str):  # noqa: ANN201 - a PIL font
        return self.cjk if _is_cjk(ch) else self.latin

    def runs(self, text: str) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = []
        for ch in text:
            f = self.font_for(ch)
            if out and out[-1][1] is f:
                out[-1] = (out[-1][0] + ch, f)
            else:
                out.append((ch, f))
        return out

    def width(self, text: str) -> float:
        return sum(f.getlength(s) for s, f in self.runs(text))  # type: ignore[attr-defined]

    def draw(self, draw, xy: tuple[float, float], text: str, fill=(30, 30, 34)) -> None:  # noqa: ANN001
        """Draw ``text`` with its left baseline at ``xy``."""
        x, y = xy
        for s, f in self.runs(text):
            draw.text((x, y), s, font=f, fill=fill, anchor="ls")
            x += f.getlength(s)  # type: ignore[attr-defined]


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0xFE30 <= o <= 0xFE4F
        or 0xFF00 <= o <= 0xFFEF
        or o >= 0x20000
    )


_NO_LINE_START = set("，。、；：？！）》」』】,.;:?!)%")


def wrap(text: str, fonts: Fonts, max_width: float) -> list[str]:
    """Break one paragraph into lines no wider than ``max_width``.

    CJK text breaks between any two characters; English breaks at spaces. In a Chinese paragraph
    a Latin run such as ``a₅ = 9`` is kept on one line unless it is very long.
    """
    has_cjk = any(_is_cjk(ch) for ch in text)
    runs: list[str] = []
    for ch in text:
        if runs and not _is_cjk(ch) and not _is_cjk(runs[-1][-1]):
            runs[-1] += ch
        else:
            runs.append(ch)
    tokens: list[str] = []
    for run in runs:
        if _is_cjk(run[0]) or (has_cjk and fonts.width(run) <= max_width * 0.5):
            tokens.append(run)
        else:
            tokens.extend(t for t in run.replace(" ", "\0 \0").split("\0") if t)
    lines: list[str] = []
    line = ""
    for tok in tokens:
        fits = fonts.width((line + tok).rstrip()) <= max_width
        if line.strip() and not fits and tok.strip() and tok.strip()[0] not in _NO_LINE_START:
            lines.append(line.rstrip())
            line = tok.lstrip()
        else:
            line += tok
    if line.strip():
        lines.append(line.rstrip())
    return lines


# ------------------------------------------------------------------------------------------- layout

PAGE_WIDTH = 1100
MARGIN = 64
FONT_SIZE = 34
LINE_GAP = 1.55


def layout_lines(spec: ProblemSpec, fonts: Fonts, width: float) -> list[list[tuple[str, float]]]:
    """Visual lines of the page, each a list of (text, x offset): the stem, then options in a grid.

    Sub-question paragraphs starting with "(" get a hanging indent; options go 4, 2 or 1 per row,
    whichever fits, and share baselines across a row.
    """
    lines: list[list[tuple[str, float]]] = []
    for para in spec.stem.split("\n"):
        hang = FONT_SIZE * 1.5 if para[:1] in "(（" else 0
        for k, line in enumerate(wrap(para, fonts, width - hang)):
            lines.append([(line, hang if k else 0)])
    if spec.options:
        widest = max(fonts.width(o) for o in spec.options) + FONT_SIZE * 1.5
        cols = 4 if widest * 4 <= width else 2 if widest * 2 <= width else 1
        col_w = width / cols
        for r in range(0, len(spec.options), cols):
            wrapped = [wrap(o, fonts, col_w - FONT_SIZE * 1.5) for o in spec.options[r : r + cols]]
            for k in range(max(len(w) for w in wrapped)):
                lines.append(
                    [
                        (w[k], c * col_w + (FONT_SIZE * 1.2 if k else 0))
                        for c, w in enumerate(wrapped)
                        if k < len(w)
                    ]
                )
    return lines


def render_page(spec: ProblemSpec, rng: random.Random):  # noqa: ANN201 - a PIL image
    """The clean page: the problem's text, its options, and its figure, on slightly tinted paper."""
    from PIL import Image, ImageDraw

    from tutor._example_figures import FIGURES

    fonts = Fonts(FONT_SIZE, spec.text)
    small = Fonts(FONT_SIZE - 4, spec.text)
    lines = layout_lines(spec, fonts, PAGE_WIDTH - 2 * MARGIN)
    line_h = int(FONT_SIZE * LINE_GAP)
    draw_fig, (fig_w, fig_h) = FIGURES[spec.figure] if spec.figure else (None, (0, 0))
    height = 2 * MARGIN + len(lines) * line_h + (fig_h + 40 if fig_h else 0)
    paper = tuple(int(v + rng.uniform(-4, 4)) for v in (247, 245, 238))
    img = Image.new("RGB", (PAGE_WIDTH, height), paper)
    draw = ImageDraw.Draw(img)
    y = MARGIN + FONT_SIZE
    for line in lines:
        for text, x in line:
            fonts.draw(draw, (MARGIN + x, y), text)
        y += line_h
    if draw_fig is not None:
        draw_fig(draw, ((PAGE_WIDTH - fig_w) // 2, y - FONT_SIZE + 20), small)
    return img


# ---------------------------------------------------------------------------------------- photo look


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    """Coefficients for Image.transform(PERSPECTIVE) that map output points ``dst`` to input ``src``."""
    import numpy as np

    a, b = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.extend([u, v])
    return np.linalg.solve(np.array(a, dtype=float), np.array(b, dtype=float)).tolist()


def photograph(page, seed: int, out_width: int = 1000):  # noqa: ANN001, ANN201 - PIL images
    """Make a clean page look like a phone photo of paper on a desk (deterministic for ``seed``)."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = page.size
    # Paper texture: low-frequency brightness blotches plus fine grain.
    blot = Image.fromarray(
        (rng.normal(0, 1, (h // 40 + 2, w // 40 + 2)) * 40 + 128).clip(0, 255).astype("uint8")
    )
    blot = np.asarray(blot.resize((w, h), Image.BICUBIC), dtype=np.float32) / 128.0 - 1.0
    arr = np.asarray(page, dtype=np.float32) * (1 + 0.025 * blot[..., None])
    arr += rng.normal(0, 3.0, arr.shape)
    page = Image.fromarray(arr.clip(0, 255).astype("uint8"))

    # Paper on a desk, seen at a slight angle.
    pad_x, pad_y = int(w * 0.07), int(h * 0.07) + 20
    cw, ch = w + 2 * pad_x, h + 2 * pad_y
    angle = math.radians(rng.uniform(-3.0, 3.0))
    cx, cy = cw / 2, ch / 2
    corners = [(pad_x, pad_y), (pad_x + w, pad_y), (pad_x + w, pad_y + h), (pad_x, pad_y + h)]
    dst = []
    for px, py in corners:
        px += rng.uniform(-0.025, 0.025) * w
        py += rng.uniform(-0.025, 0.025) * h
        dx, dy = px - cx, py - cy
        dst.append(
            (
                cx + dx * math.cos(angle) - dy * math.sin(angle),
                cy + dx * math.sin(angle) + dy * math.cos(angle),
            )
        )
    coeffs = _perspective_coeffs(dst, [(0, 0), (w, 0), (w, h), (0, h)])
    warped = page.transform((cw, ch), Image.PERSPECTIVE, coeffs, Image.BICUBIC)
    mask = Image.new("L", (w, h), 255).transform((cw, ch), Image.PERSPECTIVE, coeffs, Image.BICUBIC)
    desk_rgb = np.array([rng.uniform(95, 140), rng.uniform(80, 110), rng.uniform(60, 85)])
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    desk = desk_rgb * (0.85 + 0.15 * (xx / cw))[..., None] + rng.normal(0, 6, (ch, cw, 3))
    desk_img = Image.fromarray(desk.clip(0, 255).astype("uint8"))
    desk_img.paste(warped, (0, 0), mask.filter(ImageFilter.GaussianBlur(1.2)))

    # Uneven light: a linear gradient in a random direction, a soft vignette, a faint shadow blob.
    theta = rng.uniform(0, 2 * math.pi)
    t = ((xx - cx) * math.cos(theta) + (yy - cy) * math.sin(theta)) / max(cw, ch)
    light = 0.93 + rng.uniform(0.12, 0.2) * t
    light -= 0.12 * (((xx - cx) / cw) ** 2 + ((yy - cy) / ch) ** 2)
    sx, sy = rng.uniform(0.1, 0.9) * cw, rng.uniform(0.6, 1.0) * ch
    light -= 0.07 * np.exp(-(((xx - sx) / (0.35 * cw)) ** 2 + ((yy - sy) / (0.25 * ch)) ** 2))
    tint = np.array([1.0, rng.uniform(0.97, 1.0), rng.uniform(0.9, 0.97)])  # warm indoor light
    arr = np.asarray(desk_img, dtype=np.float32) * light[..., None] * tint
    arr += rng.normal(0, 2.5, arr.shape)  # sensor noise
    img = Image.fromarray(arr.clip(0, 255).astype("uint8"))
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.7, 1.0))))
    out_h = round(ch * out_width / cw)
    return img.resize((out_width, out_h), Image.LANCZOS)


def encode_jpeg(img, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:  # noqa: ANN001
    """JPEG bytes at the best quality (from 82 down) that fits in ``max_bytes``."""
    import io

    for quality in range(82, 40, -6):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality, optimize=True)
        if buf.tell() <= max_bytes:
            return buf.getvalue()
    return buf.getvalue()


def example_seed(seed: int, example_id: str) -> int:
    return seed * 1_000_003 + zlib.crc32(example_id.encode("utf-8"))


def render_example(spec: ProblemSpec, seed: int = DEFAULT_SEED) -> bytes:
    """The JPEG bytes of one example photo (same bytes for the same seed, fonts and Pillow)."""
    s = example_seed(seed, spec.id)
    page = render_page(spec, random.Random(s))
    return encode_jpeg(photograph(page, s))


def sidecar(spec: ProblemSpec) -> dict:
    return {
        "id": spec.id,
        "subject": spec.subject,
        "problem_type": spec.problem_type,
        "lang": spec.lang,
        "question": spec.text,
        "answer": spec.answer,
        "source": SOURCE,
    }


def build(out: Path = EXAMPLES_DIR, seed: int = DEFAULT_SEED, only: list[str] | None = None) -> list[Path]:
    """Write every example image, its sidecar and ``index.json`` into ``out``; returns the images."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for spec in tqdm(PROBLEMS, desc="examples", disable=None):
        if only and spec.id not in only:
            continue
        path = out / f"{spec.id}.jpg"
        path.write_bytes(render_example(spec, seed))
        (out / f"{spec.id}.json").write_text(
            json.dumps(sidecar(spec), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        written.append(path)
    index = {
        "source": SOURCE,
        "seed": seed,
        "generator": "python -m tutor.examples --build",
        "examples": [
            {"id": s.id, "image": f"{s.id}.jpg", "sidecar": f"{s.id}.json", "subject": s.subject,
             "problem_type": s.problem_type, "lang": s.lang}
            for s in PROBLEMS
        ],
    }  # fmt: skip
    (out / "index.json").write_text(json.dumps(index, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutor.examples", description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="store_true", help="regenerate the images, sidecars and index")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=EXAMPLES_DIR)
    parser.add_argument("--only", nargs="*", help="ids to regenerate (the index always lists all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.build:
        try:
            build(args.out, args.seed, args.only)
        except FontMissingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    total = 0
    for ex in load_examples(args.out):
        size = ex.image_path.stat().st_size
        total += size
        print(
            f"{ex.id:34s} {ex.subject:9s} {ex.problem_type:15s} {ex.lang}  {size / 1024:6.1f} KB  {ex.gold}"
        )
    print(f"total {total / 1024:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
