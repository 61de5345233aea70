"""Frames -> an animation's bytes: MP4 (H.264), animated GIF or animated WebP, to a byte budget.

MP4 goes through PyAV, whose wheels ship FFmpeg with libx264: H.264 in yuv420p with the index at
the front (`+faststart`) is what Discord plays inline. GIF and WebP go through Pillow. Like stills,
an animation is fitted to a budget: first a lower quality, then a smaller picture; the frame count
and the frame rate stay as asked, so the zoom keeps its pace.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from PIL import Image

from .errors import InvalidParameterError
from .images import resize_image

__all__ = ["AnimationFormat", "encode_animation"]

log = logging.getLogger(__name__)

AnimationFormat = Literal["mp4", "gif", "webp"]

# Constant rate factors tried in turn (lower is better); 23 is x264's default.
_CRF = (23, 28, 33, 38, 44)
_WEBP_QUALITY = (80, 60, 40, 25)
_GIF_COLOURS = (256, 64)
_MIN_SIDE = 32


def encode_animation(
    frames: Sequence[Image.Image], fmt: AnimationFormat, *, fps: float, budget: int
) -> tuple[bytes, tuple[int, int]]:
    """Encode `frames` (RGB, one size) at `fps`; returns the bytes (<= budget) and their size."""
    if not frames:
        raise InvalidParameterError("An animation needs at least one frame.")
    if fps <= 0:
        raise InvalidParameterError(f"The frame rate must be positive, not {fps}.")
    encode = {"mp4": _mp4, "gif": _gif, "webp": _webp}[fmt]
    ladder = {"mp4": _CRF, "gif": _GIF_COLOURS, "webp": _WEBP_QUALITY}[fmt]
    scaled = list(frames)
    while True:
        data = b""
        for quality in ladder:
            data = encode(scaled, fps, quality)
            if len(data) <= budget:
                if scaled[0].size != frames[0].size:
                    log.info(
                        "Scaled %s to %s to fit %d bytes", frames[0].size, scaled[0].size, budget
                    )
                w, h = scaled[0].size
                return data, ((w - w % 2, h - h % 2) if fmt == "mp4" else (w, h))
        w, h = scaled[0].size
        if min(w, h) <= _MIN_SIDE:
            raise InvalidParameterError(
                f"A {len(frames)}-frame {fmt.upper()} does not fit in {budget} bytes even at "
                f"{w}x{h}; ask for fewer frames."
            )
        # Bytes grow with the pixel count: aim straight for the size that should fit.
        scale = min(0.8, 0.95 * math.sqrt(budget / len(data)))
        size = (max(_MIN_SIDE, round(w * scale)), max(_MIN_SIDE, round(h * scale)))
        scaled = [resize_image(f, size) for f in frames]


def _mp4(frames: Sequence[Image.Image], fps: float, crf: int) -> bytes:
    w, h = frames[0].size
    w, h = w - w % 2, h - h % 2  # yuv420p needs even sides
    # `+faststart` moves the index to the front (players start before the end has arrived);
    # FFmpeg does it by re-reading the file, so it writes to a real file, not to memory.
    with tempfile.TemporaryDirectory(prefix="dreamcore-") as tmp:
        path = Path(tmp) / "zoom.mp4"
        _mp4_file(path, frames, fps, crf, (w, h))
        return path.read_bytes()


def _mp4_file(
    path: Path, frames: Sequence[Image.Image], fps: float, crf: int, size: tuple[int, int]
) -> None:
    import av

    w, h = size
    with av.open(
        str(path), mode="w", format="mp4", options={"movflags": "+faststart"}
    ) as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for image in frames:
            rgb = image.convert("RGB")
            if rgb.size != (w, h):
                rgb = rgb.crop((0, 0, w, h))
            for packet in stream.encode(av.VideoFrame.from_image(rgb)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _gif(frames: Sequence[Image.Image], fps: float, colours: int) -> bytes:
    # One palette per frame, chosen by Pillow's median cut; dithering hides the banding.
    paletted = [f.convert("RGB").quantize(colors=colours, dither=Image.Dither.FLOYDSTEINBERG)
                for f in frames]  # fmt: skip
    buffer = io.BytesIO()
    paletted[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=paletted[1:],
        duration=round(1000 / fps),
        loop=0,
        optimize=False,
        disposal=1,
    )
    return buffer.getvalue()


def _webp(frames: Sequence[Image.Image], fps: float, quality: int) -> bytes:
    buffer = io.BytesIO()
    first, *rest = (f.convert("RGB") for f in frames)
    first.save(
        buffer,
        format="WEBP",
        save_all=True,
        append_images=rest,
        duration=round(1000 / fps),
        loop=0,
        quality=quality,
        method=4,
    )
    return buffer.getvalue()
