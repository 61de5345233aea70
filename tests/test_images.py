"""Decoding untrusted bytes, encoding to a budget, and the image <-> tensor bridge.

Every bad input is built here with Pillow (or by hand, for what Pillow refuses to write), so the
tests say exactly what each one is.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from dreamcore.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageError,
    ImageMetadataError,
    ImageTooLargeError,
    InvalidParameterError,
    OutputFormatError,
    UnsupportedImageError,
)
from dreamcore.images import (
    ACCEPTED_FORMATS,
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    decode_image,
    encode_image,
    resize_image,
    to_image,
    to_tensor,
)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PHOTOS = {
    "chelsea.png": "PNG",
    "coffee.png": "PNG",
    "hubble_deep_field.jpg": "JPEG",
    "rocket.jpg": "JPEG",
    "astronaut.png": "PNG",
}


def asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bilevel_png(width: int, height: int, text: bytes | None = None) -> bytes:
    """A valid 1-bit PNG of any declared size: all-zero rows compress to almost nothing."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))]
    if text is not None:
        chunks.append(png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(text, 9)))
    chunks += [png_chunk(b"IDAT", idat), png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def photo_png_with(chunks: list[bytes]) -> bytes:
    """A 320x240 PNG of the cat with extra chunks before its pixels."""
    with Image.open(ASSETS / "chelsea.png") as image:
        data = encoded(image.convert("RGB").resize((320, 240)), "PNG")
    at = data.index(b"IDAT") - 4
    return data[:at] + b"".join(chunks) + data[at:]


def half_of(data: bytes) -> bytes:
    return data[: len(data) // 2]


def chelsea_as(fmt: str) -> bytes:
    with Image.open(ASSETS / "chelsea.png") as image:
        return encoded(image.convert("RGB"), fmt)


# -- every kind of bad input has its own typed error -------------------------------------------

BAD_INPUTS: dict[str, tuple[Callable[[], bytes], type[ImageError]]] = {
    "empty bytes": (lambda: b"", UnsupportedImageError),
    # Starts with "BM", which is all Pillow's BMP plugin checks before it gives up.
    "a text file": (lambda: b"BMW notes, not a picture at all.\n" * 20, UnsupportedImageError),
    "a licence file from the repo": (lambda: asset("LICENSES.txt"), UnsupportedImageError),
    "a TIFF (Pillow reads it, we do not accept it)": (
        lambda: chelsea_as("TIFF"),
        UnsupportedImageError,
    ),
    "a truncated JPEG": (lambda: half_of(asset("rocket.jpg")), CorruptImageError),
    "a truncated PNG": (lambda: half_of(asset("chelsea.png")), CorruptImageError),
    "a truncated GIF": (lambda: half_of(chelsea_as("GIF")), CorruptImageError),
    "a truncated WebP": (lambda: half_of(chelsea_as("WEBP")), CorruptImageError),
    "a truncated BMP": (lambda: half_of(chelsea_as("BMP")), CorruptImageError),
    "random bytes after a PNG signature": (
        lambda: b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(4096),
        CorruptImageError,
    ),
    "a PNG declaring 20000x20000 (decompression bomb)": (
        lambda: bilevel_png(20_000, 20_000),
        ImageTooLargeError,
    ),
    "a PNG whose text chunk inflates to 8 MB": (
        lambda: bilevel_png(8, 8, text=bytes(8 * 1024 * 1024)),
        ImageMetadataError,
    ),
    "a 320x240 PNG with a 50 MB colour profile": (
        lambda: photo_png_with([png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(bytes(50 << 20)))]),
        ImageMetadataError,
    ),
    "a fully transparent PNG of one colour (nothing under the alpha either)": (
        lambda: encoded(Image.new("RGBA", (32, 24), (90, 140, 200, 0)), "PNG"),
        EmptyImageError,
    ),
    "a 320x240 PNG with 70 text chunks of 1 MB": (
        lambda: photo_png_with(
            [png_chunk(b"tEXt", b"k%d\0" % i + b"a" * (1 << 20)) for i in range(70)]
        ),
        ImageMetadataError,
    ),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_each_bad_input_raises_its_typed_error(name: str) -> None:
    build, error = BAD_INPUTS[name]
    with pytest.raises(error):
        decode_image(build())


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_error_messages_are_one_sentence_a_chat_user_can_read(name: str) -> None:
    build, _ = BAD_INPUTS[name]
    with pytest.raises(ImageError) as caught:
        decode_image(build())
    message = str(caught.value)
    assert message.endswith(".")
    assert "\n" not in message
    assert message.count(". ") == 0
    for jargon in ("PIL", "BytesIO", "Errno", "0x"):
        assert jargon not in message


def test_image_over_max_pixels_is_refused_and_the_limit_is_inclusive() -> None:
    data = asset("chelsea.png")  # 451 x 300
    assert decode_image(data, max_pixels=451 * 300).size == (451, 300)
    with pytest.raises(ImageTooLargeError, match="451x300"):
        decode_image(data, max_pixels=451 * 300 - 1)


def test_oversized_image_is_refused_before_any_pixel_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden_load)
    with pytest.raises(ImageTooLargeError):
        decode_image(asset("coffee.png"), max_pixels=1000)


def test_pillow_bomb_error_maps_to_too_large_even_with_a_generous_limit() -> None:
    with pytest.raises(ImageTooLargeError):
        decode_image(bilevel_png(20_000, 20_000), max_pixels=10**12)


def test_pillow_bomb_warning_becomes_too_large_and_never_escapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Between Pillow's limit and twice its limit, Pillow only warns.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = bilevel_png(40, 40)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError):
            decode_image(data, max_pixels=10**6)
    assert escaped == []


def test_max_pixels_must_be_positive() -> None:
    with pytest.raises(InvalidParameterError):
        decode_image(asset("chelsea.png"), max_pixels=0)


def test_decoding_never_loads_truncated_images_globally() -> None:
    with pytest.raises(CorruptImageError):
        decode_image(half_of(asset("rocket.jpg")))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# -- real photos and every colour mode decode to RGB -------------------------------------------


def test_defaults_match_the_issue() -> None:
    assert DEFAULT_MAX_PIXELS == 40_000_000
    assert ACCEPTED_FORMATS == ("JPEG", "PNG", "WEBP", "GIF", "BMP")


@pytest.mark.parametrize("name", PHOTOS)
def test_real_photos_decode_to_opaque_rgb_with_their_format(name: str) -> None:
    decoded = decode_image(asset(name))
    assert isinstance(decoded, DecodedImage)
    assert decoded.rgb.mode == "RGB"
    assert decoded.alpha is None
    assert decoded.format == PHOTOS[name]
    with Image.open(ASSETS / name) as original:
        assert decoded.size == original.size


def test_exif_orientation_6_turns_the_photo_upright() -> None:
    # Stored sideways: red on the left, blue on the right; Orientation=6 says "rotate 90 CW".
    stored = Image.new("RGB", (40, 20), "blue")
    stored.paste(Image.new("RGB", (20, 20), "red"), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encoded(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == (20, 40)
    top, bottom = decoded.rgb.getpixel((10, 5)), decoded.rgb.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # red went to the top
    assert bottom[2] > 200 and bottom[0] < 60


def test_palette_transparency_becomes_alpha() -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0])
    palette.putpixel((0, 0), 1)
    decoded = decode_image(encoded(palette, "PNG", transparency=1))
    assert decoded.rgb.mode == "RGB"
    assert decoded.rgb.getpixel((3, 3)) == (255, 0, 0)
    assert decoded.alpha is not None and decoded.alpha.mode == "L"
    assert decoded.alpha.getpixel((0, 0)) == 0
    assert decoded.alpha.getpixel((3, 3)) == 255


def test_palette_without_transparency_has_no_alpha() -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 128, 0])
    decoded = decode_image(encoded(palette, "PNG"))
    assert decoded.alpha is None
    assert decoded.rgb.getpixel((0, 0)) == (0, 128, 0)


def test_cmyk_jpeg_decodes_to_the_right_rgb() -> None:
    red_in_cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    decoded = decode_image(encoded(red_in_cmyk, "JPEG", quality=95))
    assert decoded.rgb.mode == "RGB"
    r, g, b = decoded.rgb.getpixel((8, 8))
    assert r > 240 and g < 15 and b < 15


def test_sixteen_bit_grey_is_scaled_so_mid_grey_stays_mid_grey() -> None:
    ramp = np.tile(np.linspace(0, 65_535, 257).round().astype(np.uint16), (4, 1))
    source = Image.fromarray(ramp)
    assert source.mode == "I;16"
    decoded = decode_image(encoded(source, "PNG"))
    row = np.asarray(decoded.rgb)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[128] - 128) <= 1  # 32768 of 65535, not clipped to white
    assert np.all(np.diff(row) >= 0)
    assert decoded.alpha is None


@pytest.mark.parametrize(
    ("mode", "fill", "fmt"),
    [
        ("LA", (90, 128), "PNG"),
        ("RGBA", (10, 20, 30, 128), "PNG"),
        ("RGBA", (10, 20, 30, 128), "WEBP"),
    ],
)
def test_translucent_modes_keep_their_alpha(mode: str, fill: tuple[int, ...], fmt: str) -> None:
    image = Image.new(mode, (12, 12), fill)
    params = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(encoded(image, fmt, **params))
    assert decoded.rgb.mode == "RGB"
    assert decoded.alpha is not None and decoded.alpha.mode == "L"
    assert decoded.alpha.getpixel((6, 6)) == 128
    assert decoded.rgb.getpixel((6, 6)) == ((90,) * 3 if mode == "LA" else fill[:3])


def test_all_opaque_alpha_is_dropped() -> None:
    decoded = decode_image(encoded(Image.new("RGBA", (12, 12), (1, 2, 3, 255)), "PNG"))
    assert decoded.alpha is None
    assert decoded.rgb.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("1", "PNG"), ("RGB", "BMP"), ("L", "BMP"), ("RGB", "WEBP"), ("L", "GIF")],
)
def test_opaque_modes_decode_to_rgb_without_alpha(mode: str, fmt: str) -> None:
    image = Image.new("RGB", (24, 16), (200, 200, 200)).convert(mode)
    decoded = decode_image(encoded(image, fmt))
    assert decoded.rgb.mode == "RGB"
    assert decoded.size == (24, 16)
    assert decoded.alpha is None
    assert decoded.format == fmt


def test_metadata_floods_are_named_as_such_not_as_bombs_or_damage() -> None:
    for name in ("a 320x240 PNG with a 50 MB colour profile", "a 320x240 PNG with 70 text chunks"):
        build, _ = next(v for k, v in BAD_INPUTS.items() if k.startswith(name))
        with pytest.raises(ImageMetadataError, match="too much metadata"):
            decode_image(build())


def test_an_alpha_that_hides_everything_is_dropped_and_the_colours_under_it_dreamed() -> None:
    cat = Image.open(ASSETS / "chelsea.png").convert("RGB").resize((64, 48))
    hidden = cat.copy()
    hidden.putalpha(0)
    decoded = decode_image(encoded(hidden, "PNG"))
    assert decoded.alpha is None
    assert np.array_equal(np.asarray(decoded.rgb), np.asarray(cat))
    faint = cat.copy()
    faint.putalpha(Image.new("L", cat.size, 0).point(lambda _: 10))  # at most 4% opaque
    assert decode_image(encoded(faint, "PNG")).alpha is None


def test_an_animation_whose_first_frame_is_empty_gives_the_first_frame_with_something() -> None:
    empty = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    red = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    blue = Image.new("RGBA", (32, 32), (0, 0, 255, 255))
    for fmt, params in (("GIF", {"disposal": 2}), ("PNG", {}), ("WEBP", {"lossless": True})):
        data = encoded(empty, fmt, save_all=True, append_images=[red, blue], duration=50, **params)
        with Image.open(BytesIO(data)) as animation:
            assert animation.n_frames == 3, fmt
        decoded = decode_image(data)
        assert decoded.alpha is None, fmt
        assert decoded.rgb.getpixel((16, 16)) == (255, 0, 0), fmt


def test_an_animation_is_searched_past_its_32nd_frame_for_one_that_shows_something() -> None:
    frames = [Image.new("RGBA", (32, 32), (i, 0, 0, 0)) for i in range(60)]
    frames.append(Image.new("RGBA", (32, 32), (255, 0, 0, 255)))
    data = encoded(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=20)
    decoded = decode_image(data)
    assert decoded.alpha is None and decoded.rgb.getpixel((16, 16)) == (255, 0, 0)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "lime", "blue")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(BytesIO(data)) as animation:
        assert animation.n_frames == 3
    decoded = decode_image(data)
    assert decoded.format == "GIF"
    assert decoded.rgb.getpixel((16, 16)) == (255, 0, 0)


# -- encoding to a byte budget -----------------------------------------------------------------


def aspect_kept(original: tuple[int, int], result: tuple[int, int]) -> bool:
    (w0, h0), (w1, h1) = original, result
    return abs(w1 / h1 - w0 / h0) <= 0.02 * (w0 / h0)


def test_encode_keeps_lossless_png_when_it_fits() -> None:
    rgb = decode_image(asset("chelsea.png")).rgb
    data, fmt = encode_image(rgb)
    assert fmt == "png"
    again = decode_image(data)
    assert again.format == "PNG"
    assert np.array_equal(np.asarray(again.rgb), np.asarray(rgb))


def test_encode_falls_back_to_jpeg_within_a_small_budget() -> None:
    rgb = decode_image(asset("hubble_deep_field.jpg")).rgb
    budget = 200 * 1024
    data, fmt = encode_image(rgb, budget=budget)
    assert fmt == "jpeg"
    assert len(data) <= budget
    again = decode_image(data)
    assert again.format == "JPEG"
    assert aspect_kept(rgb.size, again.size)


def test_encode_downscales_only_when_the_lowest_quality_does_not_fit() -> None:
    rgb = decode_image(asset("rocket.jpg")).rgb
    budget = 8 * 1024
    data, fmt = encode_image(rgb, budget=budget)
    assert fmt == "jpeg" and len(data) <= budget
    again = decode_image(data)
    assert again.size[0] < rgb.size[0]
    assert aspect_kept(rgb.size, again.size)


def test_encode_with_alpha_falls_back_to_webp_and_keeps_transparency() -> None:
    rgb = decode_image(asset("astronaut.png")).rgb
    alpha = Image.new("L", rgb.size, 255)
    alpha.paste(0, (0, 0, 256, 512))  # left half see-through
    budget = 64 * 1024
    data, fmt = encode_image(rgb, alpha, budget=budget)
    assert fmt == "webp" and len(data) <= budget
    again = decode_image(data)
    assert again.format == "WEBP"
    assert aspect_kept(rgb.size, again.size)
    assert again.alpha is not None
    width, height = again.size
    assert again.alpha.getpixel((width // 8, height // 2)) < 16
    assert again.alpha.getpixel((width * 7 // 8, height // 2)) > 240


def test_alpha_round_trips_through_png() -> None:
    rgb = Image.new("RGB", (16, 16), (10, 200, 30))
    alpha = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    data, fmt = encode_image(rgb, alpha)
    assert fmt == "png"
    again = decode_image(data)
    assert again.alpha is not None
    assert np.array_equal(np.asarray(again.alpha), np.asarray(alpha))
    assert again.rgb.getpixel((5, 5)) == (10, 200, 30)


def test_alpha_of_another_size_is_fitted_to_the_picture() -> None:
    rgb = Image.new("RGB", (32, 16), "white")
    alpha = Image.new("L", (16, 8), 100)
    data, _ = encode_image(rgb, alpha)
    again = decode_image(data)
    assert again.size == (32, 16)
    assert again.alpha is not None and again.alpha.size == (32, 16)


@pytest.mark.parametrize("with_alpha", [False, True], ids=["jpeg", "webp"])
def test_the_smallest_budget_still_fits(with_alpha: bool) -> None:
    rgb = decode_image(asset("coffee.png")).rgb
    alpha = Image.new("L", rgb.size, 100) if with_alpha else None
    data, _ = encode_image(rgb, alpha, budget=1024)
    assert len(data) <= 1024
    assert aspect_kept(rgb.size, decode_image(data).size)


def test_absurdly_small_budget_is_an_invalid_parameter() -> None:
    with pytest.raises(InvalidParameterError):
        encode_image(Image.new("RGB", (4, 4)), budget=1023)


# -- the bridge to torch -----------------------------------------------------------------------


def test_to_tensor_is_chw_float32_in_unit_range() -> None:
    tensor = to_tensor(decode_image(asset("chelsea.png")).rgb)
    assert tensor.shape == (3, 300, 451)
    assert tensor.dtype == torch.float32
    assert tensor.is_contiguous()
    assert tensor.min().item() >= 0.0 and tensor.max().item() <= 1.0


def test_tensor_round_trip_is_exact() -> None:
    rgb = decode_image(asset("rocket.jpg")).rgb
    back = to_image(to_tensor(rgb))
    assert back.mode == "RGB"
    assert np.array_equal(np.asarray(back), np.asarray(rgb))


def test_to_tensor_accepts_other_modes() -> None:
    assert to_tensor(Image.new("L", (5, 4), 255)).shape == (3, 4, 5)


def test_to_image_clamps_and_rounds_instead_of_wrapping() -> None:
    values = torch.tensor([-0.5, 1.7, float("nan"), 0.5 / 255 + 1e-4])
    tensor = values.reshape(1, 2, 2).repeat(3, 1, 1)
    pixels = np.asarray(to_image(tensor))[..., 0]
    assert pixels.tolist() == [[0, 255], [0, 1]]


def test_to_image_rejects_a_batched_tensor() -> None:
    with pytest.raises(ValueError, match="3, H, W"):
        to_image(torch.zeros(1, 3, 4, 4))


def test_resize_image_gives_the_requested_size_and_refuses_empty_sizes() -> None:
    rgb = Image.new("RGB", (40, 30), "red")
    assert resize_image(rgb, (20, 15)).size == (20, 15)
    with pytest.raises(ValueError):
        resize_image(rgb, (0, 15))


@pytest.mark.parametrize(
    ("size", "fmt", "limit"), [((20_000, 64), "webp", "16383"), ((70_000, 8), "jpeg", "65500")]
)
def test_a_format_asked_for_that_cannot_hold_the_picture_is_one_clear_error(
    size: tuple[int, int], fmt: str, limit: str
) -> None:
    with pytest.raises(OutputFormatError, match=rf"at most {limit} pixels.*as PNG instead\."):
        encode_image(Image.new("RGB", size, "grey"), format=fmt)
    data, got = encode_image(Image.new("RGB", size, "grey"), format="png")
    assert got == "png" and Image.open(BytesIO(data)).size == size


def test_a_format_asked_for_is_written_as_that_format_with_alpha_where_it_can() -> None:
    rgb = Image.new("RGB", (40, 30), (10, 200, 30))
    alpha = Image.new("L", (40, 30), 128)
    for fmt, mode in (("png", "RGBA"), ("webp", "RGBA"), ("jpeg", "RGB")):
        data, got = encode_image(rgb, alpha, format=fmt)
        with Image.open(BytesIO(data)) as image:
            assert (got, image.format, image.mode) == (fmt, fmt.upper(), mode)
