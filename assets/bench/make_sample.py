"""Build the sample benchmark ``assets/bench/sample.jsonl`` (made by R1V Tutor, no outside data).

    python assets/bench/make_sample.py          # rewrites sample.jsonl and images/*.png, byte for byte

Sixteen records reuse the project's example photos (``assets/examples``, by relative path) with the
options split out of the question text; six synthetic ones are drawn here with Pillow (a bar chart,
a right triangle, a line graph, a velocity-time graph, a water molecule, a cell sketch). Some records
use the field names of MathVista (``pid``, ``image``, ``choices``, ``question_type``), OlympiadBench
(``final_answer`` list, ``answer_type: Numerical``) or MMMU (``options`` mapping, ``subject``
capitalised) so that ``training.eval``'s loader is exercised on each shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"
SOURCE = "made by R1V Tutor"
_OPTION = re.compile(r"^([A-H])\.\s*(.+)$")
TYPES = {  # example id -> answer_type (choice questions are multiple_choice)
    "biology-en-flower-colour": "expression", "biology-zh-dna-bases": "integer",
    "chemistry-en-ethanol-combustion": "integer", "chemistry-zh-iron-acid": "float",
    "math-en-triangle-cosine-rule": "expression", "math-zh-arithmetic-sequence": "expression",
    "math-zh-trig-maximum": "integer", "physics-en-projectile": "integer",
    "physics-zh-uniform-acceleration": "integer",
}


def split_options(question: str) -> tuple[str, list[str]]:
    """Trailing ``A. ...`` lines of a question as a list of options."""
    lines = question.split("\n")
    opts: list[str] = []
    while lines and _OPTION.match(lines[-1].strip()):
        opts.insert(0, _OPTION.match(lines.pop().strip()).group(2))
    return "\n".join(lines).strip(), opts


def example_records() -> list[dict]:
    index = json.loads((EXAMPLES / "index.json").read_text(encoding="utf-8"))
    out = []
    for ex in index["examples"]:
        side = json.loads((EXAMPLES / ex["sidecar"]).read_text(encoding="utf-8"))
        question, options = split_options(side["question"])
        choice = side["problem_type"] in ("single_choice", "multiple_choice")
        rec = {"id": side["id"], "question": question, "images": [f"../examples/{ex['image']}"]}
        if options:
            rec["options"] = options
        rec.update(answer=side["answer"], answer_type="multiple_choice" if choice else TYPES[side["id"]],
                   subject=side["subject"], lang=side["lang"], problem_type=side["problem_type"], source=SOURCE)
        out.append(rec)
    return out


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (640, 480), "white")
    return img, ImageDraw.Draw(img)


def _axes(d: ImageDraw.ImageDraw, xlab: str, ylab: str) -> None:
    d.line([(80, 400), (600, 400)], fill="black", width=3)
    d.line([(80, 400), (80, 40)], fill="black", width=3)
    d.text((590, 410), xlab, fill="black", font=_font(22))
    d.text((20, 30), ylab, fill="black", font=_font(22))


def bar_chart() -> Image.Image:
    img, d = _canvas()
    _axes(d, "", "sold")
    for i, (name, v) in enumerate([("apples", 30), ("bananas", 45), ("cherries", 70), ("dates", 20)]):
        x = 110 + i * 120
        d.rectangle([x, 400 - v * 4, x + 70, 400], fill=(70, 110, 200), outline="black")
        d.text((x, 410), name, fill="black", font=_font(20))
        d.text((x + 20, 400 - v * 4 - 28), str(v), fill="black", font=_font(20))
    d.text((200, 10), "Fruit sold on Monday", fill="black", font=_font(24))
    return img


def right_triangle() -> Image.Image:
    img, d = _canvas()
    a, b, c = (120, 400), (520, 400), (120, 100)
    d.polygon([a, b, c], outline="black", width=3)
    d.rectangle([120, 370, 150, 400], outline="black", width=2)
    d.text((300, 410), "8", fill="black", font=_font(30))
    d.text((85, 240), "6", fill="black", font=_font(30))
    d.text((330, 220), "x", fill="black", font=_font(30))
    return img


def line_graph() -> Image.Image:
    img, d = _canvas()
    _axes(d, "x", "y")
    ox, oy, u = 80, 400, 60  # one unit = 60 px

    def pt(x: float, y: float) -> tuple[float, float]:
        return ox + x * u, oy - y * u

    d.line([pt(0, 1), pt(2.5, 6)], fill=(200, 40, 40), width=4)
    for x, y in ((0, 1), (2, 5)):
        px, py = pt(x, y)
        d.ellipse([px - 7, py - 7, px + 7, py + 7], fill="black")
        d.text((px + 12, py - 8), f"({x}, {y})", fill="black", font=_font(24))
    return img


def vt_graph() -> Image.Image:
    img, d = _canvas()
    _axes(d, "t/s", "v/(m/s)")
    d.line([(80, 400), (480, 150)], fill=(40, 140, 60), width=4)
    d.line([(480, 150), (480, 400)], fill="gray", width=1)
    d.line([(80, 150), (480, 150)], fill="gray", width=1)
    d.text((470, 410), "4", fill="black", font=_font(24))
    d.text((40, 138), "10", fill="black", font=_font(24))
    return img


def water() -> Image.Image:
    img, d = _canvas()
    o, h1, h2 = (320, 200), (200, 320), (440, 320)
    for h in (h1, h2):
        d.line([o, h], fill="black", width=6)
    for (x, y), r, fill, label in ((o, 55, (220, 60, 60), "O"), (h1, 38, (230, 230, 230), "H"),
                                   (h2, 38, (230, 230, 230), "H")):
        d.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline="black", width=2)
        d.text((x - 10, y - 16), label, fill="black", font=_font(32))
    d.text((250, 420), "104.5°", fill="black", font=_font(24))
    return img


def cell() -> Image.Image:
    img, d = _canvas()
    d.rounded_rectangle([60, 60, 580, 420], radius=40, outline=(40, 120, 40), width=8)
    d.ellipse([250, 170, 390, 300], outline="black", fill=(210, 190, 240), width=3)
    for x, y in ((130, 120), (470, 340), (140, 330)):
        d.ellipse([x, y, x + 70, y + 35], outline="black", fill=(120, 200, 120), width=2)
    d.text((300, 225), "X", fill="black", font=_font(30))
    return img


def synthetic_records() -> list[dict]:
    return [
        {"pid": "synth-bar-chart", "question": "According to the bar chart, which fruit sold the most?",
         "image": "images/synth-bar-chart.png", "choices": ["apples", "bananas", "cherries", "dates"],
         "question_type": "multi_choice", "answer_type": "text", "answer": "cherries", "subject": "math",
         "source": SOURCE},
        {"id": "synth-right-triangle", "question": "In the right triangle shown, find the length x of the hypotenuse.",
         "images": ["images/synth-right-triangle.png"], "final_answer": ["$10$"], "answer_type": "Numerical",
         "subject": "Math", "source": SOURCE},
        {"id": "synth-line-graph", "question": "Find the equation of the line through the two marked points.",
         "images": ["images/synth-line-graph.png"], "answer": "y=2x+1", "answer_type": "expression",
         "subject": "math", "source": SOURCE},
        {"id": "synth-vt-graph", "question": "如图是某物体的 v-t 图像，求该物体的加速度大小（单位 m/s²，保留一位小数）。",
         "images": ["images/synth-vt-graph.png"], "answer": 2.5, "answer_type": "float", "subject": "physics",
         "source": SOURCE},
        {"id": "synth-water", "question": "Name the compound whose molecule is shown.",
         "images": ["images/synth-water.png"], "answer": "water", "answer_type": "text", "subject": "chemistry",
         "source": SOURCE},
        {"id": "synth-cell", "question": "<image 1> The sketch shows a plant cell. What is the structure labelled X?",
         "images": ["images/synth-cell.png"],
         "options": {"A": "chloroplast", "B": "nucleus", "C": "cell wall", "D": "vacuole"},
         "answer": "B", "answer_type": "multiple_choice", "subject": "Biology", "source": SOURCE},
    ]


DRAWINGS = {"synth-bar-chart": bar_chart, "synth-right-triangle": right_triangle, "synth-line-graph": line_graph,
            "synth-vt-graph": vt_graph, "synth-water": water, "synth-cell": cell}


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    for name, draw in DRAWINGS.items():
        draw().save(HERE / "images" / f"{name}.png", optimize=True)
    records = example_records() + synthetic_records()
    with (HERE / "sample.jsonl").open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} records to {HERE / 'sample.jsonl'}")


if __name__ == "__main__":
    main()
