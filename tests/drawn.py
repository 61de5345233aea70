"""Pictures drawn here, where no free photo of the subject is at hand.

`daisies()` is a meadow of white-petalled, yellow-hearted daisies over grass: the flower guide
of issue 7 (the free flower photo we had, a dahlia, is named as nothing by the network: top
class 0.02). EfficientNet-Lite0 reads this drawing as a daisy (0.93 at 224 px).
`python tests/drawn.py` writes it where the project keeps it. (A drawn barn once gave `buildings`
its parts; photos of buildings do that now: dreamcore/pictures/LICENSES.txt.)
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GRASS = ((40, 90, 30), (80, 140, 50), (30, 70, 20), (100, 150, 60))
FLORETS = ((250, 200, 40), (230, 160, 20), (170, 110, 10), (255, 220, 80))


def _petal(
    cx: float, cy: float, angle: float, start: float, length: float, width: float
) -> list[tuple[float, float]]:
    """A petal's outline: a slim, rounded blade from `start` to `start + length` along `angle`."""
    ts = np.linspace(0.0, 1.0, 14)
    half = [
        (start + t * length, width * math.sin(math.pi * min(1.0, t * 1.1)) ** 0.6 + 0.5) for t in ts
    ]
    c, s = math.cos(angle), math.sin(angle)
    left = [(cx + d * c - w * s, cy + d * s + w * c) for d, w in half]
    right = [(cx + d * c + w * s, cy + d * s - w * c) for d, w in reversed(half)]
    return left + right


def _daisy(img: Image.Image, cx: float, cy: float, r: float, rng: random.Random) -> None:
    draw = ImageDraw.Draw(img)
    n = rng.randint(20, 28)
    for k in range(n):
        angle = 2 * math.pi * k / n + rng.uniform(-0.1, 0.1)
        length, width = r * rng.uniform(0.8, 1.05), r * rng.uniform(0.1, 0.14)
        # a shaded rim, then a brighter, narrower blade on top of it
        for shade, narrow, reach in ((200, 1.0, 1.0), (250, 0.7, 0.95)):
            g = shade + rng.randint(-8, 5)
            outline = _petal(cx, cy, angle, 0.22 * r, length * reach, width * narrow)
            draw.polygon(outline, fill=(g, g, min(255, g + 4)))
    heart = 0.26 * r
    draw.ellipse([cx - heart, cy - heart, cx + heart, cy + heart], fill=(200, 140, 10))
    for _ in range(int(0.6 * heart * heart)):  # disc florets
        d, t = heart * math.sqrt(rng.random()), rng.random() * 2 * math.pi
        x, y = cx + d * math.cos(t), cy + d * math.sin(t)
        draw.ellipse([x - 1.3, y - 1.3, x + 1.3, y + 1.3], fill=rng.choice(FLORETS))


def daisies(side: int = 384, seed: int = 2, count: int = 5) -> Image.Image:
    """A square meadow with `count` daisies (0.12-0.22 of the side in radius), reproducible."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed).normal(0, 25, (side, side, 3))
    ground = (np.array([55, 100, 35]) + noise).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(ground).filter(ImageFilter.GaussianBlur(1.5))
    draw = ImageDraw.Draw(img)
    for _ in range(side * 2):  # grass blades, mostly upright
        x, y = rng.uniform(0, side), rng.uniform(0, side)
        a, length = rng.uniform(-0.4, 0.4) - math.pi / 2, rng.uniform(8, 30)
        end = (x + length * math.cos(a), y + length * math.sin(a))
        draw.line([(x, y), end], fill=rng.choice(GRASS), width=2)
    for _ in range(count):
        r = rng.uniform(0.12, 0.22) * side
        _daisy(
            img, rng.uniform(0.6 * r, side - 0.6 * r), rng.uniform(0.6 * r, side - 0.6 * r), r, rng
        )
    return img.filter(ImageFilter.GaussianBlur(0.6))


ROOT = Path(__file__).resolve().parent.parent
DRAWINGS = {
    "daisies": (daisies, ROOT / "assets" / "daisies.png"),
}

if __name__ == "__main__":
    for name in sys.argv[1:] or DRAWINGS:
        draw_it, path = DRAWINGS[name]
        draw_it().save(path)
