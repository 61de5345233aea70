"""The hostile-image corpus: 100+ files a chat user could send, each with what must happen to it.

Built here from the repo's own photo (`assets/chelsea.png`) and a few synthetic pictures, so it
is the same on every machine: truncations, decompression bombs, every mode Pillow has in every
format that can hold it, EXIF orientations 1-8, animations whose first frame is empty, fully
transparent images, metadata floods, extreme aspect ratios, and files that are no image at all.
A file is either dreamed (`expect` None) or refused with exactly the typed error `expect`.

`tests/test_hostile_corpus.py` runs every file through a real pool. To look at them:

    python -m tests.hostile_corpus OUTDIR     # writes the files and an index.tsv of outcomes
"""

from __future__ import annotations

import io
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from dreamcore.errors import (
    CorruptImageError,
    DreamError,
    EmptyImageError,
    ImageMetadataError,
    ImageTooLargeError,
    UnsupportedImageError,
)

__all__ = ["QUADRANTS", "Case", "corpus", "main"]

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ACCEPTED = {"PNG", "JPEG", "GIF", "WEBP", "BMP", "MPO"}  # what dreamcore dreams (MPO: a JPEG)
# The orientation picture's quadrants, upright: top-left, top-right, bottom-left, bottom-right.
QUADRANTS = ((220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 220, 40))
PHOTO_SIZE = (64, 48)
LARGE = (8000, 5000)  # 40 MP, the most the pool accepts


@dataclass(frozen=True)
class Case:
    """One file of the corpus and what must come of it."""

    name: str  # the file's name, with the suffix a user would give it
    data: bytes
    expect: type[DreamError] | None  # None: dreamed; else exactly this error class
    size: tuple[int, int] | None = None  # a dream's (width, height): the upright input's
    upright: bool = False  # the orientation picture: its quadrants must land where they belong
    colour: tuple[int, int, int] | None = None  # a dream's mean colour must be near this
    large: bool = False  # the worker's peak memory is checked

    def __post_init__(self) -> None:
        if (self.expect is None) != (self.size is not None):
            raise ValueError(f"{self.name}: a dream needs its size, a refusal none")


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


@cache
def photo() -> Image.Image:
    with Image.open(ASSETS / "chelsea.png") as image:
        return image.convert("RGB").resize(PHOTO_SIZE, Image.Resampling.LANCZOS)


def oriented() -> Image.Image:
    """48x32, four coloured quadrants: any wrong turn or flip moves a colour or the shape."""
    image = Image.new("RGB", (48, 32))
    for (x, y), colour in zip(((0, 0), (24, 0), (0, 16), (24, 16)), QUADRANTS, strict=True):
        image.paste(colour, (x, y, x + 24, y + 16))
    return image


def mean_colour(image: Image.Image) -> tuple[int, int, int]:
    r, g, b = np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
    return round(r), round(g), round(b)


# -- modes and formats ----------------------------------------------------------------------


def in_mode(mode: str) -> Image.Image:
    """The photo in `mode`; alpha modes get a visible gradient of alpha."""
    rgb = photo()
    grey = rgb.convert("L")
    ramp = Image.linear_gradient("L").resize(rgb.size).point(lambda v: 80 + v * 175 // 255)
    values = np.asarray(grey, dtype=np.int32)
    if mode == "LA":
        image = grey.convert("LA")
        image.putalpha(ramp)
        return image
    if mode == "RGBA":
        image = rgb.convert("RGBA")
        image.putalpha(ramp)
        return image
    if mode in ("P", "PA"):
        image = rgb.quantize(64)
        if mode == "PA":
            image = image.convert("PA")
            image.putalpha(ramp)
        return image
    if mode == "I":
        return Image.fromarray((values * 256).astype(np.int32))
    if mode == "I;16":
        return Image.fromarray((values * 257).astype(np.uint16))
    if mode == "F":
        return Image.fromarray((values / 255.0).astype(np.float32))
    if mode == "1":
        return grey.convert("1")
    return rgb.convert(mode)


MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F")
FORMATS = {  # Pillow's name: the suffix
    "PNG": "png", "JPEG": "jpg", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif",
    "ICO": "ico", "PPM": "ppm", "TGA": "tga", "IM": "im", "PCX": "pcx", "SGI": "sgi",
    "QOI": "qoi", "DDS": "dds", "JPEG2000": "jp2", "SPIDER": "spi", "MSP": "msp", "XBM": "xbm",
    "AVIF": "avif", "EPS": "eps", "PDF": "pdf", "BLP": "blp", "ICNS": "icns",
}  # fmt: skip


def saved(image: Image.Image, fmt: str) -> bytes | None:
    """The image in `fmt` as Pillow writes it, or None when that format cannot hold its mode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Pillow is retiring some writers
            return encode(image, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def png_of(width: int, height: int, depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, for what Pillow does not write (48- and 64-bit colour)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + header + idat + png_chunk(b"IEND", b"")


def deep_png_cases() -> Iterator[Case]:
    """16 bits a channel (RGB, RGBA, grey + alpha) and 2- and 4-bit palettes."""
    rgb = np.asarray(photo(), dtype=np.uint16) * 257
    alpha = np.linspace(20_000, 65_535, rgb.shape[1], dtype=np.uint16)[None, :, None]
    alpha = np.broadcast_to(alpha, (*rgb.shape[:2], 1))
    grey = rgb[..., :1]
    height, width = rgb.shape[:2]
    for name, colour_type, planes in (
        ("rgb48", 2, rgb),
        ("rgba64", 6, np.concatenate([rgb, alpha], axis=2)),
        ("la32", 4, np.concatenate([grey, alpha], axis=2)),
    ):
        rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in planes)
        data = png_of(width, height, 16, colour_type, rows)
        yield Case(f"mode-{name}.png", data, None, size=(width, height))
    for bits in (1, 2, 4):
        data = encode(photo().quantize(2**bits), "PNG", bits=bits)
        yield Case(f"mode-P-{bits}bit.png", data, None, size=PHOTO_SIZE)
    data = encode(photo(), "JPEG", progressive=True, subsampling=0)
    yield Case("progressive-444.jpg", data, None, size=PHOTO_SIZE)
    data = encode(photo(), "MPO", save_all=True, append_images=[photo().transpose(0)])
    yield Case("two-pictures.mpo.jpg", data, None, size=PHOTO_SIZE)


def mode_cases() -> Iterator[Case]:
    """Every mode in every format that holds it: dreamed where the format is one we take."""
    for mode in MODES:
        image = in_mode(mode)
        for fmt, suffix in FORMATS.items():
            data = saved(image, fmt)
            if data is None:
                continue
            name = f"mode-{mode.replace(';', '_')}.{suffix}"
            if fmt in ACCEPTED:
                yield Case(name, data, None, size=image.size)
            else:
                yield Case(name, data, UnsupportedImageError)


# -- damaged, bombs, junk -----------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of any declared size: all-zero rows compress to almost nothing."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def with_png_chunks(data: bytes, chunks: list[bytes]) -> bytes:
    at = data.index(b"IDAT") - 4
    return data[:at] + b"".join(chunks) + data[at:]


def truncated_cases() -> Iterator[Case]:
    """Each format we take, cut at several points: all of them damaged, none a crash."""
    for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):
        data = encode(photo(), fmt)
        for fraction in (0.05, 0.3, 0.6, 0.9):
            cut = max(12, int(len(data) * fraction))
            yield Case(
                f"truncated-{int(fraction * 100)}pc.{FORMATS[fmt]}", data[:cut], CorruptImageError
            )
    jpeg = encode(photo(), "JPEG", progressive=True)
    yield Case("truncated-progressive.jpg", jpeg[: len(jpeg) // 2], CorruptImageError)
    # The header up to the picture's size, then noise: the size is sane, the rest is not.
    for fmt, keep in (("PNG", 24), ("JPEG", 3), ("GIF", 10), ("WEBP", 12), ("BMP", 26)):
        magic = encode(photo(), fmt)[:keep]
        noise = np.random.default_rng(keep).bytes(2048)
        yield Case(f"signature-then-noise.{FORMATS[fmt]}", magic + noise, CorruptImageError)


def bomb_cases() -> Iterator[Case]:
    """Huge declared sizes in tiny files: refused from the header, before any pixel."""
    yield Case("bomb-20000x20000.png", bilevel_png(20_000, 20_000), ImageTooLargeError)
    yield Case("bomb-8001x5000.png", bilevel_png(8001, 5000), ImageTooLargeError)
    yield Case("bomb-65535x65535.gif", gif_declaring(65_535, 65_535), ImageTooLargeError)
    yield Case("bomb-60000x60000.jpg", jpeg_declaring(60_000, 60_000), ImageTooLargeError)
    yield Case("bomb-16383x16383.webp", webp_declaring(16_383, 16_383), ImageTooLargeError)
    yield Case("bomb-30000x30000.bmp", bmp_declaring(30_000, 30_000), ImageTooLargeError)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (8, 8)), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)  # the logical screen
    at = data.index(b"\x2c")  # the image descriptor
    struct.pack_into("<HH", data, at + 5, width, height)
    return bytes(data)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "JPEG"))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "WEBP", lossless=True))
    at = data.index(b"VP8L") + 9  # signature byte, then 14 bits each of width-1, height-1
    bits = (width - 1) | ((height - 1) << 14) | (data[at + 3] >> 4 << 28)
    struct.pack_into("<I", data, at, bits)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (8, 8)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def junk_cases() -> Iterator[Case]:
    """Files that are no image: one sentence saying so."""
    rng = np.random.default_rng(7)
    yield Case("zero-bytes.png", b"", UnsupportedImageError)
    yield Case("random-bytes.png", rng.bytes(4096), UnsupportedImageError)
    yield Case("random-bytes.jpg", rng.bytes(65_536), UnsupportedImageError)
    yield Case(
        "text.png", b"This is a text file named like a picture.\n" * 40, UnsupportedImageError
    )
    yield Case("licence.jpg", (ASSETS / "LICENSES.txt").read_bytes(), UnsupportedImageError)
    svg = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="48">'
        b'<rect width="64" height="48" fill="red"/></svg>'
    )
    yield Case("drawing.svg", svg, UnsupportedImageError)
    yield Case("drawing-named.png", svg, UnsupportedImageError)
    yield Case(
        "page.html", b"<!doctype html><html><body><img src=x></body></html>", UnsupportedImageError
    )
    yield Case("archive.zip", b"PK\x03\x04" + rng.bytes(500), UnsupportedImageError)
    yield Case("one-byte.gif", b"G", UnsupportedImageError)


# -- orientation, animation, transparency, metadata, aspect ----------------------------------


# Pillow's exif_transpose turns orientation o with this; the stored picture is its inverse.
_INVERSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # shown after ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # shown after ROTATE_90
}


def orientation_cases() -> Iterator[Case]:
    """The quadrant picture stored turned by each EXIF orientation, in each format with EXIF."""
    upright = oriented()
    for orientation, inverse in _INVERSE.items():
        stored = upright if inverse is None else upright.transpose(inverse)
        exif = Image.Exif()
        exif[0x0112] = orientation
        for fmt, params in (("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True})):
            data = encode(stored, fmt, exif=exif.tobytes(), **params)
            name = f"exif-orientation-{orientation}.{FORMATS[fmt]}"
            yield Case(name, data, None, size=upright.size, upright=True)
    for value in (0, 9, 65_535):  # not an orientation: left as stored
        exif = Image.Exif()
        exif[0x0112] = value
        data = encode(upright, "JPEG", quality=95, exif=exif.tobytes())
        yield Case(f"exif-orientation-{value}.jpg", data, None, size=upright.size, upright=True)
    broken = encode(upright, "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*" + b"\xff" * 40)
    yield Case("exif-broken.jpg", broken, None, size=upright.size, upright=True)


def animation_cases() -> Iterator[Case]:
    """Animations: the first frame that shows something is dreamed, never an empty one."""
    size = PHOTO_SIZE
    empty = Image.new("RGBA", size, (0, 0, 0, 0))
    cat = photo().convert("RGBA")
    red = Image.new("RGBA", size, (230, 30, 30, 255))
    cat_colour = mean_colour(photo())
    for fmt, params in (
        ("GIF", {"disposal": 2}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
    ):
        suffix = FORMATS[fmt]
        data = encode(empty, fmt, save_all=True, append_images=[cat, red], duration=80, **params)
        yield Case(f"animation-first-empty.{suffix}", data, None, size=size, colour=cat_colour)
        data = encode(red, fmt, save_all=True, append_images=[cat, empty], duration=80, **params)
        yield Case(f"animation.{suffix}", data, None, size=size, colour=(230, 30, 30))
        frames = [Image.new("RGBA", size, (i, 0, 0, 0)) for i in range(1, 4)]
        data = encode(empty, fmt, save_all=True, append_images=frames, duration=80, **params)
        yield Case(f"animation-all-empty.{suffix}", data, EmptyImageError)
        many = [Image.new("RGBA", size, (i, 0, 0, 0)) for i in range(60)] + [red]
        data = encode(many[0], fmt, save_all=True, append_images=many[1:], duration=20, **params)
        name = f"animation-61-frames-last-visible.{suffix}"
        yield Case(name, data, None, size=size, colour=(230, 30, 30))


def transparent_cases() -> Iterator[Case]:
    """An alpha that hides every pixel is dropped: the colours under it are dreamed, visibly."""
    cat = photo()
    colour = mean_colour(cat)
    hidden = cat.convert("RGBA")
    hidden.putalpha(0)
    for fmt in ("PNG", "BMP"):
        data = encode(hidden, fmt)
        yield Case(f"transparent-rgba.{FORMATS[fmt]}", data, None, size=cat.size, colour=colour)
    # libwebp keeps no colour under a hidden pixel: nothing is left to dream.
    data = encode(hidden, "WEBP", lossless=True)
    yield Case("transparent-rgba.webp", data, EmptyImageError)
    data = encode(hidden, "WEBP", lossless=True, exact=True)
    yield Case("transparent-rgba-exact.webp", data, None, size=cat.size, colour=colour)
    grey = cat.convert("LA")
    grey.putalpha(0)
    grey_colour = mean_colour(cat.convert("L"))
    yield Case("transparent-la.png", encode(grey, "PNG"), None, size=cat.size, colour=grey_colour)
    single = Image.new("P", cat.size, 0)
    single.putpalette([90, 140, 200] + [0] * 765)
    for fmt in ("PNG", "GIF"):
        data = encode(single, fmt, transparency=0)
        yield Case(f"transparent-one-colour.{FORMATS[fmt]}", data, EmptyImageError)
    palette = cat.quantize(64)
    data = encode(palette, "PNG", transparency=bytes(256))  # every index hidden
    yield Case("transparent-palette.png", data, None, size=cat.size, colour=colour)
    faint = cat.convert("RGBA")
    faint.putalpha(10)  # at most 4% opaque: nothing a person would see
    yield Case("transparent-faint.png", encode(faint, "PNG"), None, size=cat.size, colour=colour)


def metadata_cases() -> Iterator[Case]:
    """Metadata floods: named as too much metadata, or the pixels dreamed without it."""
    with Image.open(ASSETS / "chelsea.png") as image:
        base = encode(image.convert("RGB").resize((320, 240)), "PNG")
    size = (320, 240)
    icc = png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(50 << 20), 9))
    yield Case("metadata-icc-50MB.png", with_png_chunks(base, [icc]), ImageMetadataError)
    text = png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(bytes(200 << 20), 9))
    yield Case("metadata-ztxt-200MB.png", with_png_chunks(base, [text]), ImageMetadataError)
    many = [png_chunk(b"tEXt", b"k%d\0" % i + b"a" * (1 << 20)) for i in range(70)]
    yield Case("metadata-70-text-1MB.png", with_png_chunks(base, many), ImageMetadataError)
    small = [png_chunk(b"tEXt", b"k%d\0" % i + b"note") for i in range(2000)]
    yield Case("metadata-2000-small-texts.png", with_png_chunks(base, small), None, size=size)
    big_icc = bytes(8 << 20)
    cat = photo()
    yield Case(
        "metadata-icc-8MB.jpg", encode(cat, "JPEG", icc_profile=big_icc), None, size=cat.size
    )
    comment = b"x" * 65_000
    yield Case("metadata-comment.jpg", encode(cat, "JPEG", comment=comment), None, size=cat.size)
    exif = Image.Exif()
    exif[0x010E] = "d" * 60_000  # ImageDescription
    yield Case(
        "metadata-big-exif.jpg", encode(cat, "JPEG", exif=exif.tobytes()), None, size=cat.size
    )
    yield Case(
        "metadata-icc-8MB.webp", encode(cat, "WEBP", icc_profile=big_icc), None, size=cat.size
    )


def aspect_cases() -> Iterator[Case]:
    """Extreme shapes: 20000x64, 70000x8, single rows and columns, a single pixel."""
    for width, height, fmts in (
        (20_000, 64, ("PNG", "JPEG", "GIF", "BMP")),
        (70_000, 8, ("PNG", "BMP")),
        (8, 70_000, ("PNG",)),
        (4000, 1, ("PNG", "JPEG", "WEBP")),
        (1, 1, ("PNG", "JPEG", "GIF", "WEBP", "BMP")),
        (3, 2, ("PNG",)),
    ):
        image = photo().resize((width, height), Image.Resampling.BILINEAR)
        for fmt in fmts:
            data = encode(image, fmt)
            name = f"aspect-{width}x{height}.{FORMATS[fmt]}"
            yield Case(name, data, None, size=(width, height))


def ramp(width: int, height: int) -> np.ndarray:
    """Smooth ramps: a few MB as PNG, 40 M pixels like any photo once decoded."""
    return (
        np.add.outer(np.arange(height) * 255 // height, np.arange(width) * 255 // width) // 2
    ).astype(np.uint8)


def large_cases() -> Iterator[Case]:
    """40 MP, the most the pool takes: dreamed, with the worker's peak memory checked."""
    width, height = LARGE
    grey = ramp(width, height)
    rgb = Image.fromarray(np.stack([grey, grey[::-1], 255 - grey], axis=-1))
    yield Case(
        "large-8000x5000.png", encode(rgb, "PNG", compress_level=1), None, size=LARGE, large=True
    )
    yield Case("large-8000x5000.jpg", encode(rgb, "JPEG", quality=90), None, size=LARGE, large=True)
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(grey // 2 + 100))
    yield Case(
        "large-8000x5000-rgba.png",
        encode(rgba, "PNG", compress_level=1),
        None,
        size=LARGE,
        large=True,
    )
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    yield Case(
        "large-8000x5000-16bit.png",
        encode(sixteen, "PNG", compress_level=1),
        None,
        size=LARGE,
        large=True,
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: turned upright, a second 40 MP copy
    data = encode(rgb.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes())
    yield Case("large-exif-6.jpg", data, None, size=LARGE, large=True)
    hidden = Image.new("RGBA", LARGE, (0, 0, 0, 0))
    data = encode(hidden, "GIF", save_all=True, append_images=[rgb], duration=100, disposal=2)
    yield Case("large-animation-first-empty.gif", data, None, size=LARGE, large=True)
    side = 6324  # 39.99 MP, square
    square = Image.fromarray(ramp(side, side)).convert("P")
    yield Case(
        "large-6324x6324-palette.gif", encode(square, "GIF"), None, size=(side, side), large=True
    )


_GROUPS: tuple[Callable[[], Iterator[Case]], ...] = (
    mode_cases,
    deep_png_cases,
    truncated_cases,
    bomb_cases,
    junk_cases,
    orientation_cases,
    animation_cases,
    transparent_cases,
    metadata_cases,
    aspect_cases,
    large_cases,
)


@cache
def corpus() -> tuple[Case, ...]:
    """Every case, in a fixed order; names are unique."""
    cases = tuple(case for group in _GROUPS for case in group())
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError("corpus file names must be unique")
    return cases


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.hostile_corpus OUTDIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    lines = ["file\texpected\tsize"]
    for case in corpus():
        (out / case.name).write_bytes(case.data)
        outcome = "dreamed" if case.expect is None else case.expect.__name__
        size = f"{case.size[0]}x{case.size[1]}" if case.size else ""
        lines.append(f"{case.name}\t{outcome}\t{size}")
    (out / "index.tsv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(corpus())} files and index.tsv to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
