"""The Mini-R1V task family: small gaokao-style math problems, their worked solutions, and photos of them.

    from training.mini.tasks import make_problem, render, write_split
    p = make_problem(random.Random(0), lang="en")        # Problem(kind, lang, lines, answer, ...)
    p.statement            # 'Compute 47+38'  (what the photo shows, lines joined by a space)
    p.solution             # 'Problem: Compute 47+38.\\nOnes: 7+8=15, ...</think>\\n\\nThe answer is \\\\boxed{85}.'
    img = render(p, random.Random(1), split="train")      # a 224 x 224 PIL image of the problem
    write_split("data/mini", "train", count=4000, seed=1)  # images + train.jsonl (training.data format)

Kinds: multi-digit addition with carries (2 or 3 digits), linear equations ``ax+b=c``, fractions
with a common denominator (the sum simplified), evaluating ``f(x)=ax+b``, and multiple-choice (选择题)
variants of each (four options A-D, the gold answer is the letter). Chinese and English. The
problems and worked solutions come from ``tutor.drills`` (the tutor makes practice problems and hints
of the same family); this module adds the photos and the training splits.

Worked solutions use R1V2's format: they continue the assistant turn after the ``<think>\\n``
pre-fill, restate the problem (so a model that reads the photo can reason from its own transcript),
work it step by step, close ``</think>`` and box the final answer.

Rendering: one 224 px square tile (the mini model's image size), varied fonts (shipped in
``assets/fonts/``: ``training.mini.fonts``), size, position,
rotation, perspective, lighting gradient, background tint, blur and noise. The splits differ in seed
*and* in rendering: the held-out ``test`` split draws its nuisance parameters from shifted ranges
(stronger rotation and perspective, other tints, more noise), so test accuracy is not measured on
the training distribution. ``test`` is never used for any choice (model selection uses ``val``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from training.mini import fonts
from tutor.drills import KINDS, LANGS, Problem, make_problem, restatement_prefix  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}

LATIN_FONTS = fonts.LATIN  # the shipped faces (assets/fonts/, training.mini.fonts): never a system path
CJK_FONTS = fonts.CJK


# ------------------------------------------------------------------------------------ rendering


def _font_path(lang: str, rng: random.Random) -> str:
    """A font for one photo, drawn from the faces the mini model was trained on (one rng draw)."""
    return fonts.path(rng.choice(CJK_FONTS if lang == "zh" else LATIN_FONTS))


@dataclass(frozen=True)
class RenderRanges:
    """Nuisance parameter ranges of a split (test is shifted: see the module docstring)."""

    rotation: tuple[float, float] = (-4.0, 4.0)
    perspective: float = 0.04
    blur: tuple[float, float] = (0.0, 0.8)
    noise: tuple[float, float] = (0.0, 8.0)
    tint: tuple[int, int] = (200, 255)
    light: float = 40.0
    font: tuple[int, int] = (50, 64)  # glyph height in px on the 448 px canvas (halved in the photo)


RANGES = {
    "train": RenderRanges(),
    "val": RenderRanges(),
    "test": RenderRanges(rotation=(-6.0, 6.0), perspective=0.06, blur=(0.3, 1.0), noise=(4.0, 12.0),
                         tint=(185, 240), light=60.0, font=(46, 60)),
}


def _wrap(line: str) -> list[str]:
    """A statement line as it is written on paper: a function's definition above its question, the
    four options of a choice question on two rows."""
    if line.startswith("A.") and " C." in line:
        i = line.index(" C.")
        return [line[:i], line[i + 1:]]
    for sep in (", ", "，"):
        if sep in line:
            a, b = line.split(sep, 1)
            return [a + sep.strip(), b]
    return [line]


def charset() -> str:
    """Every character a statement can show, in a fixed order (index + 1 is its id in the layout
    map of ``render(..., layout=True)``; 0 is background)."""
    rng = random.Random(0)
    chars = {c for _ in range(3000) for c in make_problem(rng).statement if not c.isspace()}
    return "".join(sorted(chars | set("0123456789ABCD")))


CHARSET = charset()
PATCH = 16  # the mini vision tower's patch size: the layout is read at the patch centres


def render(problem: Problem, rng: random.Random, *, split: str = "train", layout: bool = False):
    """A 224 x 224 RGB photo-like image of ``problem`` (PIL). With ``layout``, also which character
    lies under the centre of each 16 px patch: a ``(14, 14)`` uint8 array of ``CHARSET`` ids (0 for
    paper), carried through the same camera geometry as the photo."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    r = RANGES.get(split, RANGES["train"])
    big = IMAGE_SIZE * 2  # draw at 2x, then transform and downscale (anti-aliased like a photo)
    bg = tuple(rng.randint(*r.tint) for _ in range(3))
    ink = tuple(rng.randint(0, 70) for _ in range(3))
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)
    lay = Image.new("L", (big, big), 0)
    lay_draw = ImageDraw.Draw(lay)
    path = _font_path(problem.lang, rng)
    size = rng.randint(*r.font)
    rows = [part for ln in problem.lines for part in _wrap(ln)]  # short rows: large, readable glyphs
    while True:
        font = ImageFont.truetype(path, size)
        widths = [draw.textbbox((0, 0), ln, font=font)[2] for ln in rows]
        if max(widths) <= big - 40 or size <= 18:
            break
        size -= 2
    line_h = int(size * 1.35)
    total_h = line_h * len(rows)
    x0 = rng.randint(16, max(16, big - 16 - max(widths)))
    y0 = rng.randint(16, max(16, big - 16 - total_h))
    for i, ln in enumerate(rows):
        x, y = x0 + rng.randint(-4, 4), y0 + i * line_h
        draw.text((x, y), ln, font=font, fill=ink)
        if layout:  # each character's advance box, filled with its id
            top, bottom = draw.textbbox((x, y), ln, font=font)[1::2]
            for k, ch in enumerate(ln):
                if not ch.isspace():
                    left = x + font.getlength(ln[:k])
                    lay_draw.rectangle([left, top, left + font.getlength(ch) - 1, bottom],
                                       fill=CHARSET.index(ch) + 1)
    img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS)  # anti-aliased, then the camera geometry
    lay = lay.resize((IMAGE_SIZE, IMAGE_SIZE), Image.NEAREST)
    angle = rng.uniform(*r.rotation)
    img = img.rotate(angle, resample=Image.BILINEAR, fillcolor=bg)
    lay = lay.rotate(angle, resample=Image.NEAREST, fillcolor=0)
    n, p = IMAGE_SIZE, r.perspective * IMAGE_SIZE
    quad = [rng.uniform(0, p), rng.uniform(0, p), rng.uniform(0, p), n - rng.uniform(0, p),
            n - rng.uniform(0, p), n - rng.uniform(0, p), n - rng.uniform(0, p), rng.uniform(0, p)]
    img = img.transform((n, n), Image.QUAD, quad, resample=Image.BILINEAR, fillcolor=bg)
    lay = lay.transform((n, n), Image.QUAD, quad, resample=Image.NEAREST, fillcolor=0)
    blur = rng.uniform(*r.blur)
    if blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img).astype(np.float32)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] / IMAGE_SIZE
    light_angle = rng.uniform(0, 2 * math.pi)
    light = (np.cos(light_angle) * (xx - 0.5) + np.sin(light_angle) * (yy - 0.5)) * r.light
    nprng = np.random.default_rng(rng.randrange(2**32))
    arr = arr + light[..., None] + nprng.normal(0, rng.uniform(*r.noise), arr.shape)
    photo = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if not layout:
        return photo
    centres = np.asarray(lay)[PATCH // 2::PATCH, PATCH // 2::PATCH]
    return photo, np.ascontiguousarray(centres, dtype=np.uint8)


# ------------------------------------------------------------------------------------ splits


def problems(split: str, count: int, *, seed: int | None = None) -> list[tuple[Problem, int]]:
    """``count`` problems of ``split`` with the seed of each one's rendering (deterministic)."""
    rng = random.Random((seed if seed is not None else SPLIT_SEEDS[split]) * 7919)
    return [(make_problem(rng), rng.randrange(2**31)) for _ in range(count)]


def record(problem: Problem, image: str) -> dict:
    """The ``training.data`` JSON record (an sft line with the gold answer for the other stages)."""
    return {"images": [image], "question": "", "subject": "math", "problem_type": problem.problem_type,
            "lang": problem.lang, "mode": "solve", "response": problem.solution, "answer": problem.answer,
            "answer_kind": "auto", "id": f"{problem.kind}-{'mc' if problem.choice else 'fr'}",
            "statement": problem.statement}


def _render_chunk(args: tuple) -> tuple[list[str], list]:
    out, split, items = args
    lines, layouts = [], []
    for i, p, rseed in items:
        name = f"{split}/{i:05d}.png"
        photo, lay = render(p, random.Random(rseed), split=split, layout=True)
        photo.save(Path(out) / name, optimize=False)
        lines.append(json.dumps(record(p, name), ensure_ascii=False))
        layouts.append(lay)
    return lines, layouts


def write_split(out_dir: str | Path, split: str, count: int, *, seed: int | None = None, workers: int = 1) -> Path:
    """Render ``count`` problems of ``split`` into ``out_dir/split/`` and write ``out_dir/split.jsonl``,
    and the photos' layouts (``render(..., layout=True)``) to ``out_dir/split.layout.npy`` ``(count, 14, 14)``
    (``workers`` processes render in parallel; the result does not depend on their number)."""
    import numpy as np

    out = Path(out_dir)
    (out / split).mkdir(parents=True, exist_ok=True)
    items = [(i, p, rseed) for i, (p, rseed) in enumerate(problems(split, count, seed=seed))]
    chunks = [(str(out), split, items[k::workers]) for k in range(max(1, workers))]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render_chunk, chunks))
    else:
        parts = [_render_chunk(chunks[0])]
    order = [(i % len(parts), i // len(parts)) for i in range(len(items))]  # back in problem order
    lines = [parts[c][0][j] for c, j in order]
    np.save(out / f"{split}.layout.npy", np.stack([parts[c][1][j] for c, j in order]))
    path = out / f"{split}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %d %s problems to %s", count, split, path)
    return path


def problem_dict(p: Problem) -> dict:
    return asdict(p)
