"""The fonts the Mini-R1V photos are drawn with, shipped in ``assets/fonts/`` (no system font is read).

The shipped ``mini`` model was trained on photos drawn with seven Latin faces (DejaVu Sans, Sans Bold,
Serif, Sans Mono from Debian's ``fonts-dejavu-core`` 2.37-6; Liberation Sans, Serif, Mono from
``fonts-liberation`` 1:1.07.4-11) and two CJK faces (WenQuanYi Micro Hei, ``fonts-wqy-microhei``
0.2.0-beta-3.1; WenQuanYi Zen Hei, ``fonts-wqy-zenhei`` 0.9.45-8; face 0 of each ``.ttc``). The repository
holds those faces cut down with fontTools' subsetter to the characters a task statement can show
(printable ASCII, every character of 20,000 generated statements, and the auto-hinter's reference
characters), with their hinting, metrics
and layout tables kept, so that ``training.mini.tasks.render`` draws exactly the same pixels as it did
from the full system fonts: ``tests/training/test_mini.py`` re-renders the four shipped example photos
(``assets/mini/examples``) and compares them pixel for pixel.

Regenerate (only needed when the task generator gains a character; the test that every statement's
characters are in the fonts says so)::

    mkdir -p /tmp/fonts && cd /tmp/fonts && apt-get download fonts-dejavu-core fonts-liberation \\
        fonts-wqy-microhei fonts-wqy-zenhei && for f in *.deb; do dpkg -x $f root; done; cd -
    python -m training.mini.fonts /tmp/fonts/root      # writes assets/fonts/*.ttf and SOURCES.md

The licences of the four font packages allow redistributing modified (subset) fonts; their texts are
in ``assets/fonts/LICENSES.md``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

FONT_DIR = Path(__file__).resolve().parents[2] / "assets" / "fonts"

# shipped file name -> (file under the extracted packages' root, face number in a collection)
SOURCES = {
    "DejaVuSans.ttf": ("usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 0),
    "DejaVuSans-Bold.ttf": ("usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 0),
    "DejaVuSerif.ttf": ("usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", 0),
    "DejaVuSansMono.ttf": ("usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 0),
    "LiberationSans-Regular.ttf": ("usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf", 0),
    "LiberationSerif-Regular.ttf": ("usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf", 0),
    "LiberationMono-Regular.ttf": ("usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf", 0),
    "wqy-microhei.ttf": ("usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    "wqy-zenhei.ttf": ("usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
}
LATIN = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
         "LiberationSans-Regular.ttf", "LiberationSerif-Regular.ttf", "LiberationMono-Regular.ttf")
CJK = ("wqy-microhei.ttf", "wqy-zenhei.ttf")
# FreeType's auto-hinter (which hints the WenQuanYi faces: they carry no hinting programs) measures a
# CJK face's blue zones and stem widths on these reference characters (FreeType's afblue.dat and
# afscript.h); without them in the subset it hints every glyph differently. Kept in every face.
AUTOHINT_CJK = ("他们你來們到和地对對就席我时時會来為能舰說说这這齊军同已愿既星是景民照现現理用置要軍那配里開雷露面顾"
                "个为人以個大有主些因它想意生當看着者自著裡过还进過道還"
                "她将將年得情最样樣通即吗吧听呢品响嗎师師收断斷明眼間间际陈限除陳随際隨"
                "事前學或政斯新民沒没然特球第經谁起例別别制动動增指朝期构物确种調调費费都田囗")


def path(name: str) -> str:
    """The shipped font file ``name`` (one of ``SOURCES``), as a string for ``ImageFont.truetype``."""
    p = FONT_DIR / name
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: the fonts ship with the repository (assets/fonts/); "
                                "restore them with git, or regenerate them (python -m training.mini.fonts)")
    return str(p)


def characters(samples: int = 20000) -> str:
    """Every character the fonts must draw: printable ASCII, and every character of ``samples`` task
    statements (a fixed seed; 3,000 already show all of them, see ``tasks.CHARSET``)."""
    import random

    from training.mini import tasks

    rng = random.Random(0)
    chars = {chr(c) for c in range(0x20, 0x7F)} | set(tasks.CHARSET) | set(AUTOHINT_CJK)
    chars |= {c for _ in range(samples) for c in tasks.make_problem(rng).statement}
    return "".join(sorted(c for c in chars if c.isprintable()))


def subset(root: Path, out: Path = FONT_DIR) -> list[str]:
    """Write the subset fonts from the extracted Debian packages under ``root``; returns SOURCES.md lines."""
    from fontTools import subset as fts

    out.mkdir(parents=True, exist_ok=True)
    text = characters()
    lines = ["# Where the shipped fonts come from", "", "Written by `python -m training.mini.fonts` "
             "(see its docstring). Characters kept:", "", "    " + text.replace("\\", "\\\\"), "",
             "| shipped | source file | face | source sha256 | shipped sha256 |", "| --- | --- | --- | --- | --- |"]
    for name, (rel, face) in SOURCES.items():
        src = root / rel
        opts = fts.Options()
        opts.font_number = face
        opts.layout_features = ["*"]  # keep every OpenType feature, kerning included
        opts.name_IDs = ["*"]
        opts.name_languages = ["*"]
        opts.hinting = True  # the TrueType instructions shape the rasterised glyphs: keep them
        opts.legacy_kern = True
        opts.notdef_outline = True
        opts.glyph_names = True
        opts.recalc_bounds = False  # font-wide metrics exactly as in the original
        opts.recalc_timestamp = False
        opts.recalc_average_width = False
        opts.prune_unicode_ranges = False
        opts.prune_codepage_ranges = False
        font = fts.load_font(str(src), opts)
        sub = fts.Subsetter(opts)
        sub.populate(text=text)
        sub.subset(font)
        fts.save_font(font, str(out / name), opts)
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()[:16]
        lines.append(f"| {name} | `{rel}` | {face} | {hashlib.sha256(src.read_bytes()).hexdigest()[:16]} | {digest} |")
    (out / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write assets/fonts/ from Debian's font packages, extracted under ROOT.")
    ap.add_argument("root", type=Path, help="folder the four .deb packages were extracted into (dpkg -x)")
    args = ap.parse_args(argv)
    print("\n".join(subset(args.root)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
