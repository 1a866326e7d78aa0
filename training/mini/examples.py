"""The mini's page examples: held-out ``test`` photos, the first of each (language, kind) in the split.

    python -m training.mini.examples [--out assets/mini/examples] [--scan 400]

The app shows these instead of the gaokao examples when the model is one that solves only the drill
family (``tutor.drills``; the preset's ``writes_problems`` is False). They are the very photos the
``test`` split holds (same problems, same render seeds as ``tasks.write_split``), so the page does not
show the mini easier photos than it is measured on. ``pick`` is also what the training driver ships.
The fonts ship with the project (``training.mini.fonts``), so every language is drawn on any machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

from training.mini import tasks

log = logging.getLogger(__name__)

OUT = Path(__file__).resolve().parents[2] / "assets" / "mini" / "examples"


def pick(records: list[dict], limit: int = 8) -> list[dict]:
    """The first record of each (language, kind) of the split, in split order (``limit`` at most)."""
    seen, out = set(), []
    for rec in records:
        key = (rec["lang"], rec["id"].split("-")[0])
        if key not in seen:
            seen.add(key)
            out.append(rec)
        if len(out) == limit:
            break
    return out


def listing_entry(rec: dict, name: str) -> dict:
    return {"image": name, "statement": rec["statement"], "answer": rec["answer"], "lang": rec["lang"],
            "problem_type": rec["problem_type"]}


def build(out: Path = OUT, scan: int = 400) -> list[dict]:
    """Render the picked photos of the first ``scan`` test problems into ``out`` with ``examples.json``."""
    out.mkdir(parents=True, exist_ok=True)
    items = tasks.problems("test", scan)
    records = [dict(tasks.record(p, f"{i:05d}.png"), index=i) for i, (p, _) in enumerate(items)]
    listing = []
    for rec in pick(records):
        p, rseed = items[rec["index"]]
        name = f"{rec['index']:05d}.png"
        tasks.render(p, random.Random(rseed), split="test").save(out / name, optimize=False)
        listing.append(listing_entry(rec, name))
    (out / "examples.json").write_text(json.dumps(listing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return listing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.mini.examples", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--scan", type=int, default=400)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    for e in build(a.out, a.scan):
        print(e["image"], e["lang"], e["statement"], "->", e["answer"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
