"""Drawings of the demo catalog: product shapes filled with a colour and a pattern.

A shape is a list of primitives in unit coordinates (x right, y down, both in [0, 1] of
the object's box): ``("poly", points)``, ``("ellipse", box)``, ``("rect", box)``,
``("rrect", box, radius)``, ``("chord", box, start, end)`` and ``("line", points, width)``.
``+`` primitives add to the object's silhouette, ``-`` ones cut holes into it (a bag's
handle, a tent's door), and detail lines (pleats, seams, laces) are drawn over the fill.
Shapes differ per category so that a detector can tell them apart; patterns are big
enough to survive JPEG at 192 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Prim = tuple  # ("+" | "-", kind, *args)


@dataclass(frozen=True)
class Shape:
    body: Sequence[Prim]
    details: Sequence[Prim] = ()  # lines drawn in the outline colour over the fill


def _tee(long_sleeves: bool, length: float = 1.0) -> list[tuple[float, float]]:
    if long_sleeves:
        return [(0.3, 0.04), (0.42, 0.04), (0.5, 0.14), (0.58, 0.04), (0.7, 0.04), (0.9, 0.2), (1.0, 0.95),
                (0.86, 0.97), (0.77, 0.4), (0.77, length), (0.23, length), (0.23, 0.4), (0.14, 0.97),
                (0.0, 0.95), (0.1, 0.2)]
    return [(0.3, 0.05), (0.42, 0.05), (0.5, 0.13), (0.58, 0.05), (0.7, 0.05), (1.0, 0.26), (0.88, 0.44),
            (0.76, 0.36), (0.76, length), (0.24, length), (0.24, 0.36), (0.12, 0.44), (0.0, 0.26)]


def _scallops(x0: float, x1: float, y: float, n: int, r: float) -> list[Prim]:
    step = (x1 - x0) / n
    return [("+", "ellipse", (x0 + i * step, y - r, x0 + (i + 1) * step, y + r)) for i in range(n)]


def _skirt_like(top: list[Prim], waist_y: float, hem_y: float, style: str | None) -> Shape:
    """A flared skirt below ``waist_y``; the style changes the hem and adds lines."""
    body = [*top, ("+", "poly", [(0.3, waist_y), (0.7, waist_y), (0.95, hem_y), (0.05, hem_y)])]
    details: list[Prim] = []
    if style == "荷叶边":
        # A wide flounce tier with a wavy (scalloped) hem: the ruffle.
        tier = waist_y + 0.62 * (hem_y - waist_y)
        body += [("+", "poly", [(0.14, tier), (0.86, tier), (1.0, hem_y), (0.0, hem_y)])]
        body += _scallops(0.0, 1.0, hem_y, 7, 0.05)
        details += [("line", [(0.14 + 0.72 * i / 12, tier + (0.02 if i % 2 else -0.01)) for i in range(13)], 2)]
    elif style == "百褶":
        for i in range(1, 8):
            t = i / 8
            details.append(("line", [(0.3 + 0.4 * t, waist_y), (0.05 + 0.9 * t, hem_y)], 2))
    return Shape(body, details)


def _ring(box: tuple[float, float, float, float], thickness: float) -> list[Prim]:
    x0, y0, x1, y1 = box
    return [("+", "ellipse", box), ("-", "ellipse", (x0 + thickness, y0 + thickness, x1 - thickness, y1 - thickness))]


# Product key -> its drawing, shared by every call (drawing only reads it); the skirt and the
# dress, whose drawing depends on the style, are in _STYLED_SHAPES instead.
_SHAPES: dict[str, Shape] = {
    "tshirt": Shape([("+", "poly", _tee(False))], [("line", [(0.42, 0.05), (0.5, 0.13), (0.58, 0.05)], 2)]),
    "shirt": Shape([("+", "poly", _tee(True))],
                   [("line", [(0.42, 0.04), (0.47, 0.2), (0.5, 0.14)], 2), ("line", [(0.58, 0.04), (0.53, 0.2), (0.5, 0.14)], 2),
                    ("line", [(0.5, 0.14), (0.5, 1.0)], 2)]),
    "hoodie": Shape([("+", "poly", _tee(True)), ("+", "ellipse", (0.32, 0.0, 0.68, 0.26))],
                    [("line", [(0.3, 0.68), (0.7, 0.68), (0.74, 0.92), (0.26, 0.92), (0.3, 0.68)], 2),
                     ("line", [(0.45, 0.2), (0.44, 0.4)], 2), ("line", [(0.55, 0.2), (0.56, 0.4)], 2)]),
    "coat": Shape([("+", "poly", [(0.3, 0.03), (0.7, 0.03), (0.9, 0.14), (1.0, 0.7), (0.88, 0.72), (0.8, 0.3),
                                  (0.84, 1.0), (0.16, 1.0), (0.2, 0.3), (0.12, 0.72), (0.0, 0.7), (0.1, 0.14)])],
                  [("line", [(0.38, 0.03), (0.5, 0.35), (0.62, 0.03)], 2), ("line", [(0.21, 0.5), (0.79, 0.5)], 3),
                   ("line", [(0.5, 0.35), (0.5, 1.0)], 2)]),
    "trousers": Shape([("+", "poly", [(0.1, 0.0), (0.9, 0.0), (1.0, 1.0), (0.58, 1.0), (0.5, 0.3), (0.42, 1.0), (0.0, 1.0)])],
                      [("line", [(0.1, 0.07), (0.9, 0.07)], 2)]),
    "shorts": Shape([("+", "poly", [(0.06, 0.0), (0.94, 0.0), (1.0, 0.9), (0.56, 1.0), (0.5, 0.45), (0.44, 1.0), (0.0, 0.9)])],
                    [("line", [(0.06, 0.1), (0.94, 0.1)], 2)]),
    "handbag": Shape([*_ring((0.25, 0.0, 0.75, 0.7), 0.07), ("+", "poly", [(0.1, 0.35), (0.9, 0.35), (1.0, 1.0), (0.0, 1.0)])],
                     [("line", [(0.07, 0.5), (0.93, 0.5)], 2)]),
    "suitcase": Shape([("+", "rect", (0.3, 0.0, 0.7, 0.22)), ("-", "rect", (0.38, 0.05, 0.62, 0.22)),
                       ("+", "rrect", (0.05, 0.2, 0.95, 0.92), 0.08),
                       ("+", "ellipse", (0.12, 0.88, 0.3, 1.0)), ("+", "ellipse", (0.7, 0.88, 0.88, 1.0))],
                      [("line", [(0.3, 0.25), (0.3, 0.88)], 2), ("line", [(0.7, 0.25), (0.7, 0.88)], 2)]),
    "backpack": Shape([*_ring((0.38, 0.0, 0.62, 0.2), 0.05), ("+", "rrect", (0.1, 0.1, 0.9, 1.0), 0.25)],
                      [("line", [(0.22, 0.55), (0.78, 0.55), (0.78, 0.92), (0.22, 0.92), (0.22, 0.55)], 2)]),
    "sneaker": Shape([("+", "poly", [(0.0, 0.55), (0.06, 0.35), (0.38, 0.3), (0.46, 0.0), (0.7, 0.0), (0.73, 0.22),
                                     (1.0, 0.62), (1.0, 1.0), (0.0, 1.0)])],
                     [("line", [(0.0, 0.82), (1.0, 0.82)], 3), ("line", [(0.5, 0.35), (0.62, 0.3)], 2),
                      ("line", [(0.55, 0.45), (0.68, 0.4)], 2)]),
    "boot": Shape([("+", "poly", [(0.1, 0.0), (0.55, 0.0), (0.58, 0.6), (1.0, 0.74), (1.0, 1.0), (0.05, 1.0)])],
                  [("line", [(0.05, 0.88), (1.0, 0.88)], 3)]),
    "hat": Shape([("+", "ellipse", (0.0, 0.62, 1.0, 1.0)), ("+", "chord", (0.2, 0.0, 0.8, 1.5), 180, 360)],
                 [("line", [(0.21, 0.64), (0.79, 0.64)], 3)]),
    "scarf": Shape([("+", "poly", [(0.2, 0.0), (0.8, 0.0), (0.76, 0.9), (0.24, 0.9)]),
                    *[("+", "rect", (0.27 + i * 0.07, 0.88, 0.3 + i * 0.07, 1.0)) for i in range(7)]]),  # fringe
    "chips": Shape([("+", "poly", [*[(i / 10, 0.0 if i % 2 else 0.06) for i in range(11)],  # zigzag top,
                                   *[(1 - i / 10, 1.0 if i % 2 else 0.94) for i in range(11)]])],  # bottom
                   [("line", [(0.0, 0.12), (1.0, 0.12)], 2)]),
    "lipstick": Shape([("+", "rect", (0.1, 0.45, 0.9, 1.0)), ("+", "rect", (0.15, 0.35, 0.85, 0.46)),
                       ("+", "poly", [(0.24, 0.35), (0.76, 0.35), (0.76, 0.1), (0.24, 0.0)])],
                      [("line", [(0.1, 0.46), (0.9, 0.46)], 2)]),
    "perfume": Shape([("+", "rect", (0.36, 0.0, 0.64, 0.2)), ("+", "rect", (0.44, 0.19, 0.56, 0.31)),
                      ("+", "rrect", (0.05, 0.3, 0.95, 1.0), 0.12)]),
    "bottle": Shape([("+", "rect", (0.32, 0.0, 0.68, 0.08)), ("+", "poly", [(0.34, 0.08), (0.66, 0.08), (0.95, 0.3), (0.05, 0.3)]),
                     ("+", "rrect", (0.05, 0.28, 0.95, 1.0), 0.1)],
                    [("line", [(0.05, 0.5), (0.95, 0.5)], 2), ("line", [(0.05, 0.78), (0.95, 0.78)], 2)]),
    "chair": Shape([("+", "rrect", (0.15, 0.0, 0.85, 0.5), 0.08), ("+", "rect", (0.05, 0.5, 0.95, 0.62)),
                    ("+", "rect", (0.1, 0.6, 0.2, 1.0)), ("+", "rect", (0.8, 0.6, 0.9, 1.0))]),
    "notebook": Shape([("+", "rect", (0.1, 0.0, 1.0, 1.0)),
                       *[p for i in range(7) for p in _ring((0.0, 0.06 + i * 0.13, 0.2, 0.14 + i * 0.13), 0.03)]],
                      [("line", [(0.3, 0.3), (0.85, 0.3)], 2)]),
    "fan": Shape([("+", "ellipse", (0.05, 0.0, 0.95, 0.66)), ("+", "rect", (0.45, 0.6, 0.55, 0.92)),
                  ("+", "ellipse", (0.2, 0.86, 0.8, 1.0))],
                 [("line", [(0.5, 0.33), (0.5 + 0.36 * math.cos(a), 0.33 + 0.26 * math.sin(a))], 3)
                  for a in (0.3, 2.4, 4.5)]),  # the blades
    "vase": Shape([("+", "poly", [(0.35, 0.0), (0.65, 0.0), (0.62, 0.15), (0.95, 0.5), (0.8, 0.95), (0.2, 0.95),
                                  (0.05, 0.5), (0.38, 0.15)]), ("+", "rect", (0.25, 0.92, 0.75, 1.0))]),
    "cushion": Shape([("+", "poly", [(0.0, 0.0), (0.5, 0.07), (1.0, 0.0), (0.93, 0.5), (1.0, 1.0), (0.5, 0.93),
                                     (0.0, 1.0), (0.07, 0.5)])]),
    "mug": Shape([*_ring((0.55, 0.22, 1.0, 0.78), 0.1), ("+", "rrect", (0.0, 0.04, 0.72, 1.0), 0.06)],
                 [("line", [(0.0, 0.12), (0.72, 0.12)], 2)]),
    "bucket": Shape([("+", "poly", [(0.05, 0.3), (0.95, 0.3), (0.82, 1.0), (0.18, 1.0)]), *_ring((0.05, 0.0, 0.95, 0.6), 0.05)],
                    [("line", [(0.07, 0.4), (0.93, 0.4)], 2)]),
    "storage": Shape([("+", "rect", (0.0, 0.0, 1.0, 0.2)), ("+", "poly", [(0.04, 0.18), (0.96, 0.18), (0.92, 1.0), (0.08, 1.0)]),
                      ("-", "rrect", (0.4, 0.3, 0.6, 0.4), 0.03)]),
    "bicycle": Shape([*_ring((0.0, 0.4, 0.4, 1.0), 0.05), *_ring((0.6, 0.4, 1.0, 1.0), 0.05),  # wheels, then frame
                      ("+", "line", [(0.2, 0.7), (0.45, 0.35), (0.8, 0.7)], 0.05),
                      ("+", "line", [(0.45, 0.35), (0.72, 0.35), (0.8, 0.7)], 0.05),
                      ("+", "line", [(0.45, 0.35), (0.42, 0.18)], 0.05), ("+", "rect", (0.34, 0.12, 0.5, 0.2)),
                      ("+", "line", [(0.72, 0.35), (0.74, 0.14)], 0.05), ("+", "rect", (0.66, 0.1, 0.82, 0.15))]),
    "tent": Shape([("+", "poly", [(0.5, 0.0), (1.0, 1.0), (0.0, 1.0)]), ("-", "poly", [(0.5, 0.45), (0.66, 1.0), (0.34, 1.0)])]),
    "lamp": Shape([("+", "poly", [(0.25, 0.0), (0.75, 0.0), (0.95, 0.4), (0.05, 0.4)]), ("+", "rect", (0.46, 0.39, 0.54, 0.9)),
                   ("+", "ellipse", (0.2, 0.86, 0.8, 1.0))]),
    "teddy": Shape([("+", "ellipse", (0.12, 0.0, 0.38, 0.22)), ("+", "ellipse", (0.62, 0.0, 0.88, 0.22)),
                    ("+", "ellipse", (0.2, 0.05, 0.8, 0.5)), ("+", "ellipse", (0.1, 0.42, 0.9, 1.0))],
                   [("line", [(0.38, 0.22), (0.4, 0.24)], 4), ("line", [(0.6, 0.22), (0.62, 0.24)], 4),
                    ("line", [(0.45, 0.36), (0.55, 0.36)], 3)]),
    "socks": Shape([("+", "poly", [(0.1, 0.0), (0.62, 0.0), (0.62, 0.58), (0.9, 0.7), (1.0, 0.85), (0.9, 1.0),
                                   (0.35, 1.0), (0.1, 0.85)])],
                   [("line", [(0.1, 0.15), (0.62, 0.15)], 3)]),
    "phonecase": Shape([("+", "rrect", (0.0, 0.0, 1.0, 1.0), 0.12), ("-", "rrect", (0.1, 0.04, 0.42, 0.2), 0.06)]),
    "headphones": Shape([*_ring((0.06, 0.0, 0.94, 0.9), 0.07), ("-", "rect", (0.0, 0.5, 1.0, 1.0)),  # the band
                         ("+", "rrect", (0.0, 0.42, 0.26, 0.96), 0.08), ("+", "rrect", (0.74, 0.42, 1.0, 0.96), 0.08)]),
    "pillow": Shape([("+", "rrect", (0.0, 0.0, 1.0, 1.0), 0.3)], [("line", [(0.06, 0.5), (0.94, 0.5)], 1)]),
    "babybottle": Shape([("+", "ellipse", (0.36, 0.0, 0.64, 0.2)), ("+", "rect", (0.15, 0.14, 0.85, 0.3)),
                         ("+", "rrect", (0.1, 0.28, 0.9, 1.0), 0.15)],
                        [("line", [(0.1, 0.5 + 0.1 * i), (0.35, 0.5 + 0.1 * i)], 2) for i in range(4)]),
    "pump": Shape([("+", "rect", (0.45, 0.0, 0.95, 0.06)), ("+", "rect", (0.45, 0.0, 0.55, 0.2)),
                   ("+", "rect", (0.33, 0.18, 0.67, 0.28)), ("+", "rrect", (0.05, 0.27, 0.95, 1.0), 0.2)]),
    "dumbbell": Shape([("+", "rrect", (0.0, 0.08, 0.2, 0.92), 0.05), ("+", "rrect", (0.8, 0.08, 1.0, 0.92), 0.05),
                       ("+", "rect", (0.19, 0.22, 0.29, 0.78)), ("+", "rect", (0.71, 0.22, 0.81, 0.78)),
                       ("+", "rect", (0.28, 0.42, 0.72, 0.58))]),
    "romper": Shape([("+", "poly", [(0.3, 0.0), (0.42, 0.04), (0.58, 0.04), (0.7, 0.0), (1.0, 0.2), (0.88, 0.36),
                                    (0.8, 0.3), (0.8, 0.85), (0.62, 1.0), (0.5, 0.86), (0.38, 1.0), (0.2, 0.85),
                                    (0.2, 0.3), (0.12, 0.36), (0.0, 0.2)])],
                    [("line", [(0.5, 0.1), (0.5, 0.8)], 2)]),
}

# Product key -> the drawing for a style (荷叶边 adds a flounce, 百褶 pleats).
_STYLED_SHAPES: dict[str, Callable[[str | None], Shape]] = {
    "skirt": partial(_skirt_like, [("+", "rect", (0.28, 0.0, 0.72, 0.1))], 0.1, 0.92),
    "dress": partial(_skirt_like, [("+", "poly", [(0.32, 0.1), (0.68, 0.1), (0.64, 0.4), (0.36, 0.4)]),
                                   ("+", "rect", (0.33, 0.0, 0.38, 0.12)), ("+", "rect", (0.62, 0.0, 0.67, 0.12))],
                     0.4, 0.94),
}


def product_shape(key: str, style: str | None = None) -> Shape:
    """The silhouette and detail lines of a product type (see demo_vocab.PRODUCTS)."""
    if key in _STYLED_SHAPES:
        return _STYLED_SHAPES[key](style)
    if key not in _SHAPES:
        raise KeyError(f"no drawing for product {key!r}")
    return _SHAPES[key]


def _draw_prim(draw: ImageDraw.ImageDraw, prim: Prim, w: int, h: int, fill: int | tuple) -> None:
    kind, *args = prim

    def pts(points):
        return [(x * (w - 1), y * (h - 1)) for x, y in points]

    def box(b):
        x0, y0, x1, y1 = b
        return (x0 * (w - 1), y0 * (h - 1), max(x1 * (w - 1), x0 * (w - 1) + 1), max(y1 * (h - 1), y0 * (h - 1) + 1))

    if kind == "poly":
        draw.polygon(pts(args[0]), fill=fill)
    elif kind == "ellipse":
        draw.ellipse(box(args[0]), fill=fill)
    elif kind == "rect":
        draw.rectangle(box(args[0]), fill=fill)
    elif kind == "rrect":
        draw.rounded_rectangle(box(args[0]), radius=args[1] * min(w, h), fill=fill)
    elif kind == "chord":
        draw.chord(box(args[0]), args[1], args[2], fill=fill)
    elif kind == "line":
        width = args[1]
        # Silhouette lines have a relative width; detail lines a width in pixels.
        px = max(1, round(width * min(w, h))) if width < 1 else int(width)
        draw.line(pts(args[0]), fill=fill, width=px, joint="curve")
    else:
        raise ValueError(kind)


def silhouette(shape: Shape, w: int, h: int) -> Image.Image:
    """The object's mask ("L", 255 inside) at ``w`` x ``h`` pixels."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for sign, *prim in shape.body:
        _draw_prim(draw, tuple(prim), w, h, 255 if sign == "+" else 0)
    return mask


def _secondary(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The contrasting colour of dots, stripes and flowers on a ``rgb`` ground."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (250, 250, 250) if luma < 150 else (30, 30, 34)


def texture(pattern: str, rgb: tuple[int, int, int], w: int, h: int, rng: np.random.Generator) -> Image.Image:
    """A ``w`` x ``h`` fabric of colour ``rgb`` with ``pattern`` (one of demo_vocab.PATTERNS)."""
    img = Image.new("RGB", (w, h), rgb)
    draw = ImageDraw.Draw(img)
    other = _secondary(rgb)
    size = max(w, h)
    if pattern == "波点":
        step = max(8, int(size * rng.uniform(0.13, 0.18)))
        r = max(2, int(step * rng.uniform(0.24, 0.3)))
        ox, oy = rng.integers(0, step, 2)
        for row, y in enumerate(range(-step + int(oy), h + step, step)):
            shift = step // 2 if row % 2 else 0
            for x in range(-step + int(ox) + shift, w + step, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=other)
    elif pattern == "条纹":
        step = max(6, int(size * rng.uniform(0.1, 0.14)))
        # the ground keeps two thirds: with bands of half the period (as before) a white item with
        # black stripes and a black one with white stripes were the same picture (the probe's and
        # search's white/black confusions), and its colour label unreadable from the pixels
        band = max(2, step // 3)
        if rng.random() < 0.5:
            for x in range(int(rng.integers(0, step)) - step, w, step):
                draw.rectangle((x, 0, x + band - 1, h), fill=other)
        else:
            for y in range(int(rng.integers(0, step)) - step, h, step):
                draw.rectangle((0, y, w, y + band - 1), fill=other)
    elif pattern == "格子":
        step = max(10, int(size * rng.uniform(0.17, 0.22)))
        band = max(2, step // 3)
        dark = tuple(int(c * 0.55) for c in rgb) if other[0] > 128 else tuple(min(255, int(c * 0.75 + 40)) for c in rgb)
        for x in range(int(rng.integers(0, step)) - step, w, step):
            draw.rectangle((x, 0, x + band - 1, h), fill=dark)
        for y in range(int(rng.integers(0, step)) - step, h, step):
            draw.rectangle((0, y, w, y + band - 1), fill=dark)
        for x in range(int(rng.integers(0, step)) - step, w, step):
            draw.line((x, 0, x, h), fill=other, width=1)
        for y in range(int(rng.integers(0, step)) - step, h, step):
            draw.line((0, y, w, y), fill=other, width=1)
    elif pattern == "碎花":
        petal = max(2, int(size * rng.uniform(0.025, 0.035)))
        accent = (250, 220, 60) if other[0] > 128 else (200, 40, 60)
        count = max(1, int(w * h / (petal * petal * 40)))  # flowers cover about a third: the ground stays the colour
        for _ in range(count):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            for k in range(5):
                a = 2 * math.pi * k / 5
                px, py = cx + 1.3 * petal * math.cos(a), cy + 1.3 * petal * math.sin(a)
                draw.ellipse((px - petal, py - petal, px + petal, py + petal), fill=other)
            draw.ellipse((cx - petal * 0.7, cy - petal * 0.7, cx + petal * 0.7, cy + petal * 0.7), fill=accent)
    elif pattern != "纯色":
        raise KeyError(f"unknown pattern {pattern!r}")
    return img


def _outline_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(max(0, int(c * 0.45)) for c in rgb) if sum(rgb) > 120 else (110, 110, 115)


def draw_object(canvas: Image.Image, key: str, style: str | None, rgb: tuple[int, int, int], pattern: str,
                box: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[int, int, int, int] | None:
    """Draw a product into ``box`` (x0, y0, x1, y1) of ``canvas``; return its tight pixel box
    ``(x1, y1, x2, y2)`` (exclusive right/bottom), or None if nothing landed on the canvas."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    shape = product_shape(key, style)
    mask = silhouette(shape, w, h)
    fabric = texture(pattern, rgb, w, h, rng)
    # Soft shading gives the drawing some volume (and the detector less of a flat sticker).
    shade = Image.linear_gradient("L").resize((w, h)).point(lambda v: 255 - v // 6)
    fabric = Image.composite(fabric, Image.new("RGB", (w, h), (0, 0, 0)), shade)
    canvas.paste(fabric, (x0, y0), mask)
    line = _outline_colour(rgb)
    edge = mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    canvas.paste(Image.new("RGB", (w, h), line), (x0, y0), edge)
    if shape.details:
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        for prim in shape.details:
            _draw_prim(draw, prim, w, h, 255)
        canvas.paste(Image.new("RGB", (w, h), line), (x0, y0), Image.composite(layer, Image.new("L", (w, h), 0), mask))
    tight = mask.getbbox()
    if tight is None:
        return None
    return (x0 + tight[0], y0 + tight[1], x0 + tight[2], y0 + tight[3])


def background(size: int, rng: np.random.Generator) -> Image.Image:
    """A light studio-like background: a tint, a vertical gradient, sometimes a floor line."""
    base = rng.integers(185, 236, 3)
    top = Image.new("RGB", (size, size), tuple(int(c) for c in base))
    bottom = Image.new("RGB", (size, size), tuple(int(c) for c in np.clip(base - rng.integers(10, 40), 0, 255)))
    img = Image.composite(bottom, top, Image.linear_gradient("L").resize((size, size)))
    if rng.random() < 0.4:
        y = int(size * rng.uniform(0.75, 0.9))
        ImageDraw.Draw(img).rectangle((0, y, size, size), fill=tuple(int(c) for c in np.clip(base - 45, 0, 255)))
    noise = rng.integers(-6, 7, (size, size, 1), dtype=np.int16)
    arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)
