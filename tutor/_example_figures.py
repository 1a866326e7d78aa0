"""Simple figures for the example problems, drawn with PIL: a triangle, a graph, a circuit, a molecule.

Used by ``tutor.examples``; each entry of ``FIGURES`` is ``(draw_fn, (width, height))`` where
``draw_fn(draw, (x0, y0), fonts)`` draws inside that box with its top-left corner at ``(x0, y0)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

INK = (35, 35, 40)
LINE = 3


def _label(draw: Any, fonts: Any, text: str, center: tuple[float, float]) -> None:
    x, y = center
    fonts.draw(draw, (x - fonts.width(text) / 2, y + fonts.size * 0.35), text, fill=INK)


def _arrow(draw: Any, a: tuple[float, float], b: tuple[float, float], head: float = 12) -> None:
    draw.line([a, b], fill=INK, width=LINE - 1)
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    left = (b[0] - head * math.cos(ang - 0.4), b[1] - head * math.sin(ang - 0.4))
    right = (b[0] - head * math.cos(ang + 0.4), b[1] - head * math.sin(ang + 0.4))
    draw.polygon([b, left, right], fill=INK)


def _dashed(draw: Any, pts: list[tuple[float, float]], dash: float = 9, gap: float = 7) -> None:
    """A dashed polyline (dash lengths measured along the path)."""
    on, left = True, dash
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        seg = math.hypot(x1 - x0, y1 - y0)
        t = 0.0
        while t < seg:
            step = min(left, seg - t)
            if on:
                f0, f1 = t / seg, (t + step) / seg
                draw.line(
                    [(x0 + (x1 - x0) * f0, y0 + (y1 - y0) * f0), (x0 + (x1 - x0) * f1, y0 + (y1 - y0) * f1)],
                    fill=INK,
                    width=2,
                )
            t += step
            left -= step
            if left <= 0:
                on = not on
                left = dash if on else gap


def triangle(draw: Any, origin: tuple[int, int], fonts: Any) -> None:
    """Triangle ABC with AB = 5, AC = 3 and angle A = 120 degrees, to scale."""
    x0, y0 = origin
    s = 62
    ax, ay = x0 + 40 + 1.5 * s, y0 + 190
    b = (ax + 5 * s, ay)
    c = (ax + 3 * s * math.cos(math.radians(120)), ay - 3 * s * math.sin(math.radians(120)))
    draw.polygon([(ax, ay), b, c], outline=INK, width=LINE)
    draw.arc([ax - 26, ay - 26, ax + 26, ay + 26], start=-120, end=0, fill=INK, width=2)
    _label(draw, fonts, "A", (ax, ay + 24))
    _label(draw, fonts, "B", (b[0] + 22, b[1]))
    _label(draw, fonts, "C", (c[0] - 6, c[1] - 22))
    _label(draw, fonts, "120°", (ax + 24, ay - 50))


def cubic(draw: Any, origin: tuple[int, int], fonts: Any) -> None:
    """Axes and the graph of y = x^3 - 3x for |x| <= 2.08, with the turning points marked."""
    x0, y0 = origin
    w, h, sx, sy = 440, 300, 80, 48
    ox, oy = x0 + w / 2, y0 + h / 2

    def pt(x: float, y: float) -> tuple[float, float]:
        return ox + x * sx, oy - y * sy

    _arrow(draw, (x0 + 10, oy), (x0 + w - 5, oy))
    _arrow(draw, (ox, y0 + h - 5), (ox, y0 + 5))
    _label(draw, fonts, "x", (x0 + w - 8, oy + 20))
    _label(draw, fonts, "y", (ox + 18, y0 + 10))
    _label(draw, fonts, "O", (ox - 16, oy + 18))
    xs = [-2.08 + i * 0.02 for i in range(209)]  # |f(x)| <= 2.8 stays inside the box
    draw.line([pt(x, x**3 - 3 * x) for x in xs], fill=INK, width=LINE, joint="curve")
    for x, y in ((-1, 2), (1, -2)):
        _dashed(draw, [pt(x, 0), pt(x, y)])
        _dashed(draw, [pt(x, y), pt(0, y)])
    _label(draw, fonts, "−1", (pt(-1, 0)[0], oy + 20))
    _label(draw, fonts, "1", (pt(1, 0)[0], oy - 18))
    _label(draw, fonts, "2", (ox + 16, pt(0, 2)[1]))
    _label(draw, fonts, "−2", (ox - 22, pt(0, -2)[1]))


def circuit(draw: Any, origin: tuple[int, int], fonts: Any) -> None:
    """A series loop: cell (E, r) at the bottom, R1 and R2 on top, switch S on the right, V across R2."""
    x0, y0 = origin
    left, right, top, bottom = x0 + 30, x0 + 500, y0 + 120, y0 + 270
    r1 = (x0 + 110, x0 + 210)
    r2 = (x0 + 300, x0 + 400)
    draw.line([(left, top), (r1[0], top)], fill=INK, width=LINE)
    draw.line([(r1[1], top), (r2[0], top)], fill=INK, width=LINE)
    draw.line([(r2[1], top), (right, top)], fill=INK, width=LINE)
    for (a, b), name in ((r1, "R₁"), (r2, "R₂")):
        draw.rectangle([a, top - 16, b, top + 16], outline=INK, width=LINE)
        _label(draw, fonts, name, ((a + b) / 2, top + 38))
    # Voltmeter across R2.
    vx, vy = (r2[0] + r2[1]) / 2, y0 + 40
    draw.line([(r2[0] - 20, top), (r2[0] - 20, vy), (vx - 26, vy)], fill=INK, width=2)
    draw.line([(r2[1] + 20, top), (r2[1] + 20, vy), (vx + 26, vy)], fill=INK, width=2)
    for px in (r2[0] - 20, r2[1] + 20):
        draw.ellipse([px - 4, top - 4, px + 4, top + 4], fill=INK)
    draw.ellipse([vx - 26, vy - 26, vx + 26, vy + 26], outline=INK, width=LINE)
    _label(draw, fonts, "V", (vx, vy - 2))
    # Right side with switch S (drawn open).
    sy0, sy1 = top + 45, top + 100
    draw.line([(right, top), (right, sy0)], fill=INK, width=LINE)
    draw.line([(right, sy1), (right, bottom)], fill=INK, width=LINE)
    draw.ellipse([right - 5, sy1 - 5, right + 5, sy1 + 5], outline=INK, width=2)
    draw.line([(right, sy1), (right - 30, sy0 + 4)], fill=INK, width=LINE)
    _label(draw, fonts, "S", (right - 36, (sy0 + sy1) / 2 + 6))
    # Bottom with the cell: long thin plate and short thick plate.
    cx = (left + right) / 2
    draw.line([(left, bottom), (cx - 10, bottom)], fill=INK, width=LINE)
    draw.line([(cx + 10, bottom), (right, bottom)], fill=INK, width=LINE)
    draw.line([(cx - 10, bottom - 28), (cx - 10, bottom + 28)], fill=INK, width=2)
    draw.line([(cx + 10, bottom - 14), (cx + 10, bottom + 14)], fill=INK, width=6)
    _label(draw, fonts, "E, r", (cx, bottom + 44))
    draw.line([(left, top), (left, bottom)], fill=INK, width=LINE)


def ethanol(draw: Any, origin: tuple[int, int], fonts: Any) -> None:
    """The structural formula of ethanol, H-C(H2)-C(H2)-O-H, atoms on a grid."""
    x0, y0 = origin
    g = 100
    atoms = {
        "h1": ("H", 0, 1), "c1": ("C", 1, 1), "c2": ("C", 2, 1), "o": ("O", 3, 1), "h2": ("H", 4, 1),
        "h3": ("H", 1, 0), "h4": ("H", 1, 2), "h5": ("H", 2, 0), "h6": ("H", 2, 2),
    }  # fmt: skip
    bonds = [("h1", "c1"), ("c1", "c2"), ("c2", "o"), ("o", "h2"), ("c1", "h3"), ("c1", "h4"),
             ("c2", "h5"), ("c2", "h6")]  # fmt: skip

    def pos(key: str) -> tuple[float, float]:
        _, i, j = atoms[key]
        return x0 + 40 + i * g, y0 + 30 + j * g

    for a, b in bonds:
        (ax, ay), (bx, by) = pos(a), pos(b)
        d = math.hypot(bx - ax, by - ay)
        ux, uy = (bx - ax) / d, (by - ay) / d
        draw.line([(ax + 20 * ux, ay + 20 * uy), (bx - 20 * ux, by - 20 * uy)], fill=INK, width=LINE)
    for key, (sym, _, _) in atoms.items():
        _label(draw, fonts, sym, pos(key))


def projectile(draw: Any, origin: tuple[int, int], fonts: Any) -> None:
    """A building of height h, a ball thrown horizontally at v0 from its top, the dashed path."""
    x0, y0 = origin
    ground = y0 + 225
    bx0, bx1 = x0 + 40, x0 + 110
    top = ground - 180
    draw.rectangle([bx0, top, bx1, ground], outline=INK, width=LINE)
    for k in range(1, 6):
        draw.line([(bx0, top + 30 * k), (bx1, top + 30 * k)], fill=INK, width=1)
    draw.line([(x0, ground), (x0 + 480, ground)], fill=INK, width=LINE)
    for k in range(0, 480, 18):
        draw.line([(x0 + k, ground), (x0 + k - 10, ground + 10)], fill=INK, width=1)
    path = [(bx1 + 10 * 15 * t, top + 9 * 5 * t * t) for t in [i * 0.05 for i in range(41)]]
    _dashed(draw, path)
    draw.ellipse([bx1 - 8, top - 16, bx1 + 8, top], fill=INK)
    _arrow(draw, (bx1 + 10, top - 8), (bx1 + 80, top - 8))
    _label(draw, fonts, "v₀", (bx1 + 60, top - 32))
    draw.line([(bx0 - 22, top), (bx0 - 22, ground)], fill=INK, width=1)
    draw.line([(bx0 - 30, top), (bx0 - 14, top)], fill=INK, width=1)
    _label(draw, fonts, "h", (bx0 - 38, (top + ground) / 2))


FIGURES: dict[str, tuple[Callable[[Any, tuple[int, int], Any], None], tuple[int, int]]] = {
    "triangle": (triangle, (480, 240)),
    "cubic": (cubic, (440, 300)),
    "circuit": (circuit, (530, 340)),
    "ethanol": (ethanol, (480, 260)),
    "projectile": (projectile, (500, 250)),
}
