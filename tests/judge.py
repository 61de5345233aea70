"""An independent judge: ImageNet EfficientNet-Lite1, another network than the dreamer.

It reads a picture the way a person glances at it: the whole frame and nine half-size crops
(a dog's head fills a crop, not the frame), and reports the probability mass on the 118 dog
classes. It never sees the exact pixels the dreamer made: only a lightly blurred JPEG (so
invisible adversarial patterns do not count) or a heavily blurred copy (so fur-like speckle
does not count; a head you can see survives the blur).
"""

from __future__ import annotations

from functools import cache
from io import BytesIO

import numpy as np
import torch
from photos import tensor
from PIL import Image, ImageFilter
from skimage.metrics import structural_similarity

from dreamcore.models import DreamNet, load_model
from dreamcore.objectives import CLASS_GROUPS

VIEW = 240  # EfficientNet-Lite1's native input size


@cache
def judge() -> DreamNet:
    return load_model("efficientnet_lite1", "cpu")


def light(img: Image.Image) -> Image.Image:
    """Blur 1 px and JPEG at quality 75: what survives a chat app's recompression."""
    buf = BytesIO()
    img.filter(ImageFilter.GaussianBlur(1)).save(buf, format="JPEG", quality=75)
    return Image.open(BytesIO(buf.getvalue())).convert("RGB")


def heavy(img: Image.Image) -> Image.Image:
    """Gaussian blur of 1/160 of the longer side (3.2 px at 512): fur strands (1-2 px) are gone,
    a head 60-120 px across stays."""
    return img.filter(ImageFilter.GaussianBlur(max(img.size) / 160))


def views(img: Image.Image) -> list[Image.Image]:
    w, h = img.size
    s = min(w, h) // 2
    crops = [img]
    for fy in (0.0, 0.5, 1.0):
        for fx in (0.0, 0.5, 1.0):
            x, y = round(fx * (w - s)), round(fy * (h - s))
            crops.append(img.crop((x, y, x + s, y + s)))
    return crops


def class_mass(img: Image.Image, group: str | tuple[int, ...] = "dogs") -> tuple[float, float]:
    """(mean, max) over the ten views of the judge's probability mass on a class group (a name
    in CLASS_GROUPS, or ImageNet indices)."""
    x = torch.stack([tensor(v.resize((VIEW, VIEW), Image.BILINEAR)) for v in views(img)])
    with torch.no_grad():
        p = judge()(x, ["logits"])["logits"].softmax(dim=1)
    index = CLASS_GROUPS[group] if isinstance(group, str) else group
    mass = p[:, list(index)].sum(dim=1)
    return mass.mean().item(), mass.max().item()


def structure(a: Image.Image, b: Image.Image, side: int = 128) -> float:
    """SSIM of two pictures, greyscale at low resolution: is the scene still the scene?"""
    size = (side, round(side * a.height / a.width))
    ga = np.asarray(a.convert("L").resize(size, Image.LANCZOS), dtype=np.float64)
    gb = np.asarray(b.convert("L").resize(size, Image.LANCZOS), dtype=np.float64)
    return float(structural_similarity(ga, gb, data_range=255.0))
