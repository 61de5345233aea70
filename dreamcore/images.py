"""Bytes <-> image: decoding with limits, orientation and alpha; encoding to a byte budget.

Chat users send anything, so the bytes decide what a file is (never its name or MIME type), the
pixel count is checked from the header before any pixel is decoded, and every failure becomes a
typed `ImageError` whose message a chat user can read. One frame of an animation is dreamed: the
first that shows something. Alpha travels beside the RGB picture, because the networks only see
three channels; an alpha that hides everything is dropped, so no result is ever invisible. Every
encode (pool and CLI) goes through `encode_image`, which knows each format's limits.
"""

from __future__ import annotations

import logging
import math
import struct
import warnings
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

from .errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageMetadataError,
    ImageTooLargeError,
    InvalidParameterError,
    OutputFormatError,
    UnsupportedImageError,
)
from .jobs import DEFAULT_OUTPUT_BUDGET

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "DecodedImage",
    "add_detail",
    "bundled_picture",
    "cap_side",
    "decode_image",
    "encode_image",
    "estimate_job_bytes",
    "header_size",
    "resize_image",
    "to_image",
    "to_tensor",
    "with_alpha",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 40_000_000
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

_FORMAT_NAMES = "JPEG, PNG, WebP, GIF or BMP"
_STRIP_PIXELS = 2_000_000  # pixels per strip where a full-size picture is computed on
# Errors Pillow's decoders raise on damaged data; anything else is a bug worth seeing.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

_MIN_BUDGET = 1024
_LOSSY_QUALITIES = (92, 85, 75, 60)
_DOWNSCALE_STEP = 0.8
# Hard limits of the encoders: a larger side fails inside libjpeg / libwebp.
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "PNG": 2**31 - 1}
_FORMAT_SHOWN = {"JPEG": "JPEG", "WEBP": "WebP", "PNG": "PNG"}
# An alpha whose most opaque pixel is below this (of 255) shows nothing: it is treated as absent.
_VISIBLE_ALPHA = 16
_ORIENTATION = 0x0112  # the EXIF tag
# Frames of an animation looked through for one that shows something: all of a small one (up to
# 1000), fewer of a large one, so that a 40 MP animation cannot make a worker decode for minutes.
_FRAMES_SEARCHED = 1000
_PIXELS_SEARCHED = 100_000_000
# A hidden picture whose channels vary by at most this (of 255) is one flat colour: no picture.
_FLAT = 2


@dataclass(frozen=True)
class DecodedImage:
    """An input ready to dream: RGB pixels, the alpha to put back afterwards, where it came from."""

    rgb: Image.Image
    alpha: Image.Image | None
    format: str

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode untrusted bytes into upright RGB (+ alpha), refusing anything unsafe or unreadable."""
    if max_pixels < 1:
        raise InvalidParameterError(f"max_pixels must be positive, not {max_pixels}.")
    if not data:
        raise UnsupportedImageError("The file is empty, so there is no image to dream on.")
    # Pillow reports a bomb as a warning below twice its global limit; turn it into an error we
    # can map, and keep its other (cosmetic) warnings away from the caller's warning filters.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open(data, max_pixels) as image:
                fmt = image.format or "unknown"
                _load(image, fmt)
                _seek_visible_frame(image, fmt)
                rgb, alpha = _split_alpha(_apply_orientation(image))
                if rgb is image:  # the pixels must outlive the file (and an animation's seeks)
                    rgb = rgb.copy() if getattr(image, "is_animated", False) else rgb
        finally:
            for warning in caught:
                logger.debug("Pillow warned while decoding: %s", warning.message)
    return DecodedImage(rgb=rgb, alpha=alpha, format=fmt)


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    """Identify the format and read the header only; check the pixel count before any decoding."""
    try:
        image = Image.open(BytesIO(data), formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error() from exc
    except ValueError as exc:
        # PNG text and ICC chunks are inflated during open, under a size cap.
        if _is_metadata_flood(exc):
            raise _metadata_error() from exc
        raise _unreadable_error(data) from exc
    except _DECODE_ERRORS as exc:  # UnidentifiedImageError included
        raise _unreadable_error(data) from exc

    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            f"That image is {width}x{height} pixels, more than the {max_pixels:,} I can dream on; "
            "please send a smaller one."
        )
    return image


def _load(image: ImageFile.ImageFile, fmt: str) -> None:
    """Decode the first frame's pixels; a damaged file is the user's to fix, not a crash."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error() from exc
    except _DECODE_ERRORS as exc:
        if _is_metadata_flood(exc):
            raise _metadata_error() from exc
        raise _corrupt_error(fmt) from exc


def _seek_visible_frame(image: ImageFile.ImageFile, fmt: str) -> None:
    """Leave an animation on its first frame that shows something (the composited frame)."""
    frames = getattr(image, "n_frames", 1)
    if frames <= 1 or not _hides_everything(image):
        return
    width, height = image.size
    searched = min(frames, _FRAMES_SEARCHED, max(2, _PIXELS_SEARCHED // max(1, width * height)))
    for index in range(1, searched):
        try:
            image.seek(index)
        except _DECODE_ERRORS as exc:
            raise _corrupt_error(fmt) from exc
        _load(image, fmt)
        if not _hides_everything(image):
            return
    logger.info("No frame of a %d-frame %s shows anything; dreaming its first", frames, fmt)
    image.seek(0)
    _load(image, fmt)


def _hides_everything(image: Image.Image) -> bool:
    """Whether the image's alpha (or transparent colour) leaves no pixel visible."""
    if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
        return False
    try:
        alpha = image.convert("RGBA").getchannel("A")
    except ValueError:
        return False
    return alpha.getextrema()[1] < _VISIBLE_ALPHA


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Turn phone photos upright; a broken EXIF block is not worth refusing good pixels for."""
    try:
        if image.getexif().get(_ORIENTATION, 1) not in range(2, 9):
            return image  # already upright: no copy of a picture that may be 40 MP
        return ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, TypeError) as exc:
        logger.warning("Ignoring unreadable EXIF orientation: %s", exc)
        return image


def _split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Reduce any mode to RGB plus an "L" alpha that is None unless some pixel is see-through."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return _split_sixteen_bit(image)
    try:
        if image.mode in ("RGBA", "LA"):
            rgb = image.convert("RGB")
            return rgb, _real_alpha(image.getchannel("A"), rgb)
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            rgb = rgba.convert("RGB")
            return rgb, _real_alpha(rgba.getchannel("A"), rgb)
        if image.mode == "RGB":
            return image, None  # no copy of a picture that may be 40 MP
        return image.convert("RGB"), None
    except ValueError as exc:  # a colour mode Pillow cannot convert to RGB
        raise UnsupportedImageError(
            f"That image uses a colour mode ({image.mode}) I cannot read; "
            "please send it as an ordinary RGB picture."
        ) from exc


def _split_sixteen_bit(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Scale 16-bit grey to 8 bits; Pillow's own convert clips everything above 255 to white.

    In strips of rows and in 32-bit integers: a 40 MP picture never has an int64 or float64 copy.
    """
    values = np.asarray(image)
    grey = np.empty(values.shape, np.uint8)
    transparent = image.info.get("transparency")
    alpha = np.empty(values.shape, np.uint8) if isinstance(transparent, int) else None
    rows = max(1, _STRIP_PIXELS // max(1, values.shape[1]))
    for top in range(0, values.shape[0], rows):
        strip = values[top : top + rows].astype(np.int64 if values.dtype == np.int64 else np.int32)
        if alpha is not None:
            alpha[top : top + rows] = np.where(strip == transparent, 0, 255)
        # round(v / 257) in integers: (2v + 257) // 514
        np.clip(strip, 0, 65_535, out=strip)
        grey[top : top + rows] = (strip * 2 + 257) // 514
    rgb = Image.fromarray(grey).convert("RGB")
    return rgb, _real_alpha(Image.fromarray(alpha), rgb) if alpha is not None else None


def _real_alpha(alpha: Image.Image, rgb: Image.Image) -> Image.Image | None:
    """Drop an alpha that hides nothing (the output can be a plain JPEG), and one that hides
    everything (a dream nobody could see): the picture under it is what gets dreamed. When that
    is one flat colour (WebP and GIF keep no colours under a hidden pixel), there is no picture.
    """
    low, high = alpha.getextrema()
    if high < _VISIBLE_ALPHA:
        if all(top - bottom <= _FLAT for bottom, top in _extrema(rgb)):
            raise EmptyImageError(
                "That image is completely transparent, with nothing under it to dream; "
                "please send a picture that shows something."
            )
        logger.info("The image's alpha hides every pixel; dreaming the colours under it")
        return None
    return None if low == 255 else alpha


def _extrema(rgb: Image.Image) -> list[tuple[int, int]]:
    extrema = rgb.getextrema()
    return [extrema] if isinstance(extrema[0], int) else list(extrema)  # type: ignore[list-item]


def _claimed_format(data: bytes) -> str | None:
    """The accepted format the first bytes announce, to tell "damaged" from "not an image"."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    # "BM" alone is too weak (text can start with it): also ask for a known DIB header size.
    if data.startswith(b"BM") and len(data) >= 18:
        (dib_size,) = struct.unpack_from("<I", data, 14)
        if dib_size in (12, 16, 40, 52, 56, 64, 108, 124):
            return "BMP"
    return None


def _unreadable_error(data: bytes) -> ImageError:
    """Pillow could not even read the header: damaged if the bytes announce a format we take."""
    claimed = _claimed_format(data)
    if claimed is None:
        return UnsupportedImageError(
            f"That file is not an image I can read; please send a {_FORMAT_NAMES}."
        )
    return _corrupt_error(claimed)


def _corrupt_error(fmt: str) -> CorruptImageError:
    name = {"WEBP": "WebP", "MPO": "JPEG"}.get(fmt, fmt)
    return CorruptImageError(f"That {name} image is damaged or cut short; please send it again.")


def _is_metadata_flood(exc: BaseException) -> bool:
    """Pillow's PNG reader refusing text or ICC chunks past its caps (MAX_TEXT_CHUNK/MEMORY)."""
    return isinstance(exc, ValueError) and "MAX_TEXT_" in str(exc)


def _metadata_error() -> ImageMetadataError:
    return ImageMetadataError(
        "That image carries too much metadata (text or a colour profile) for me to open; "
        "please save or export it again without metadata."
    )


def _bomb_error() -> ImageTooLargeError:
    return ImageTooLargeError(
        "That image claims far more pixels than its size allows, so I will not open it; "
        "please send a normal picture."
    )


# Measured on CPU (see README): decoding, composing and encoding a full-size picture cost about
# 17 bytes a pixel above a worker's idle size; dreaming costs about 1.8 KB a pixel dreamed.
_BYTES_PER_PIXEL = 18
_BYTES_PER_DREAMED_PIXEL = 1_900


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the file's header states it (before EXIF orientation); None if unreadable."""
    try:
        with Image.open(BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            return image.size
    except Exception:
        return None


def estimate_job_bytes(data: bytes, max_side: int) -> int:
    """A worker's peak memory above idle for dreaming `data` at `max_side`, from its header alone.

    0 when the header cannot be read: the worker then refuses the file with its typed error.
    """
    size = header_size(data)
    if size is None:
        return 0
    width, height = size
    scale = min(1.0, max_side / max(width, height, 1))
    dreamed = (width * scale) * (height * scale)
    return int(_BYTES_PER_PIXEL * width * height + _BYTES_PER_DREAMED_PIXEL * dreamed)


def encode_image(
    rgb: Image.Image,
    alpha: Image.Image | None = None,
    *,
    budget: int = DEFAULT_OUTPUT_BUDGET,
    format: str | None = None,  # Pillow's own name for it
) -> tuple[bytes, str]:
    """Encode a result: the one path every writer (pool and CLI) takes, so limits are checked once.

    Without `format`: lossless PNG when it fits `budget`, else lossy (WebP when there is alpha,
    since JPEG would lose it), shrinking only as a last resort; the bytes never exceed `budget`.
    With `format` ("png", "jpeg", "webp"): exactly that format at its best quality, or an
    `OutputFormatError` saying why it cannot hold this picture. Returns the bytes and the format.
    """
    if budget < _MIN_BUDGET:
        raise InvalidParameterError(
            f"An output budget of {budget} bytes is too small; it must be at least 1 KiB."
        )
    image = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
    if format is not None:
        return _encode_as(image, alpha, format.upper())
    if alpha is not None:
        image = with_alpha(image, alpha)

    png = _save(image, "PNG")
    if len(png) <= budget:
        return png, "png"

    fmt = "WEBP" if alpha is not None else "JPEG"
    image = cap_side(image, _MAX_SIDE[fmt])
    while True:
        for quality in _LOSSY_QUALITIES:
            data = _save(image, fmt, quality=quality)
            if len(data) <= budget:
                if image.size != rgb.size:
                    logger.info("Downscaled %s to %s to fit %d bytes", rgb.size, image.size, budget)
                return data, fmt.lower()
        width, height = image.size
        if width == 1 and height == 1:
            raise InvalidParameterError(
                f"An output budget of {budget} bytes is too small for even a single pixel."
            )
        # Bytes grow with the pixel count: jump straight to about the right size when far over.
        scale = min(_DOWNSCALE_STEP, 0.95 * math.sqrt(budget / len(data)))
        image = resize_image(image, (max(1, round(width * scale)), max(1, round(height * scale))))


def _encode_as(image: Image.Image, alpha: Image.Image | None, fmt: str) -> tuple[bytes, str]:
    """`image` in the one format asked for; JPEG has no alpha, so it is left out there."""
    if fmt not in _MAX_SIDE:
        raise OutputFormatError(f"I can write PNG, JPEG or WebP, not {fmt.lower()}.")
    side = max(image.size)
    if side > _MAX_SIDE[fmt]:
        width, height = image.size
        raise OutputFormatError(
            f"A {_FORMAT_SHOWN[fmt]} image can be at most {_MAX_SIDE[fmt]} pixels on a side, "
            f"and this dream is {width}x{height}; write it as PNG instead."
        )
    if alpha is not None and fmt != "JPEG":
        image = with_alpha(image, alpha)
    params = {} if fmt == "PNG" else {"quality": _LOSSY_QUALITIES[0]}
    return _save(image, fmt, **params), fmt.lower()


def with_alpha(rgb: Image.Image, alpha: Image.Image) -> Image.Image:
    """An RGBA copy of `rgb` with `alpha` as its mask (resized if the picture was)."""
    alpha = alpha.convert("L")
    if alpha.size != rgb.size:
        alpha = resize_image(alpha, rgb.size)
    image = rgb.convert("RGB") if rgb.mode != "RGB" else rgb.copy()
    image.putalpha(alpha)
    return image


def cap_side(image: Image.Image, max_side: int) -> Image.Image:
    """`image` itself if its longer side fits `max_side`, else a copy scaled down to fit."""
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    return resize_image(image, (max(1, int(width * scale)), max(1, int(height * scale))))


def _save(image: Image.Image, fmt: str, **params: int | bool) -> bytes:
    if fmt == "JPEG":
        params["optimize"] = True
    buffer = BytesIO()
    try:
        image.save(buffer, format=fmt, **params)
    except (OSError, ValueError) as exc:  # an encoder's own limit we did not know of
        width, height = image.size
        raise OutputFormatError(
            f"The {_FORMAT_SHOWN.get(fmt, fmt)} encoder could not write this {width}x{height} "
            f"dream ({exc}); try PNG."
        ) from exc
    return buffer.getvalue()


def resize_image(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize with LANCZOS, the one filter the engine's octaves and the encoder agree on."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"An image size must be positive, not {width}x{height}.")
    return img.resize((int(width), int(height)), Image.Resampling.LANCZOS)


def add_detail(rgb: Image.Image, detail: torch.Tensor) -> Image.Image:
    """`rgb` plus a smaller (3, h, w) detail tensor (in [0, 1] units), upsampled bicubically.

    A 40 MP photo is 120 MB as bytes but 480 MB per float copy, so the full-size result is never
    a float tensor: it is composed in strips of rows, straight into uint8.
    """
    if detail.ndim != 3 or detail.shape[0] != 3:
        raise ValueError(f"Expected a (3, h, w) detail, got shape {tuple(detail.shape)}.")
    width, height = rgb.size
    source = np.asarray(rgb if rgb.mode == "RGB" else rgb.convert("RGB"))
    out = np.empty_like(source)
    small = detail.detach().to(device="cpu", dtype=torch.float32)[None].mul(255.0)
    # Sample at each output pixel's centre, as interpolate(align_corners=False) does.
    xs = (torch.arange(width, dtype=torch.float32) * 2 + 1) / width - 1
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        ys = (torch.arange(top, bottom, dtype=torch.float32) * 2 + 1) / height - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        up = torch.nn.functional.grid_sample(
            small, grid, mode="bicubic", padding_mode="border", align_corners=False
        )[0].permute(1, 2, 0)
        strip = torch.from_numpy(source[top:bottom].astype(np.float32)).add_(up)
        out[top:bottom] = strip.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(out)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """A (3, H, W) float32 tensor in [0, 1], the layout torch models expect."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    # np.array copies into a writable buffer; torch warns on Pillow's read-only one.
    array = np.array(rgb, dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous().float().div_(255.0)


def to_image(t: torch.Tensor) -> Image.Image:
    """The inverse of `to_tensor`; values outside [0, 1] (and NaN) are clamped, not wrapped."""
    if t.ndim != 3 or t.shape[0] != 3:
        raise ValueError(f"Expected a (3, H, W) tensor, got shape {tuple(t.shape)}.")
    pixels = t.detach().to(device="cpu", dtype=torch.float32)
    pixels = pixels.nan_to_num(nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)
    array = pixels.mul(255.0).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array)


PICTURES = Path(__file__).resolve().parent / "pictures"


def bundled_picture(name: str) -> Image.Image:
    """A picture shipped with dreamcore (dreamcore/pictures/<name>.png), as RGB."""
    path = PICTURES / f"{name}.png"
    if not name.isidentifier() or not path.is_file():
        known = ", ".join(sorted(p.stem for p in PICTURES.glob("*.png")))
        raise InvalidParameterError(f"Unknown picture {name!r}. Valid: {known}.")
    with Image.open(path) as img:
        return img.convert("RGB")
