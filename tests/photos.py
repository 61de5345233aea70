"""The real photos the tests dream (CC0 / public domain, see assets/LICENSES.txt)."""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@cache
def photo(name: str, side: int | None = None) -> Image.Image:
    """An RGB photo, its longer side scaled to `side` (cached: treat as read-only)."""
    img = Image.open(ASSETS / name).convert("RGB")
    if side is not None:
        s = side / max(img.size)
        img = img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
