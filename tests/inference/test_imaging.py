"""Decoding: formats, orientation, colour modes, and every bad input refused with its own error."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

from edge_tools.bench.hostile_models import rgba16_png_bomb
from inference_module.errors import (
    EmptyBodyError,
    ImageTooSmallError,
    InvalidImageError,
    OverloadedError,
    TooManyPixelsError,
    UnsupportedImageFormatError,
)
from inference_module.imaging import ImageLimits, decode_for_model, decode_image, media_type_accepted
from inference_module.settings import InferenceSettings

LIMITS = ImageLimits(max_pixels=40_000_000, min_side=8)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG whose header claims `width`×`height` but carries (almost) no pixel data: a bomb's shape.

    Colour type 2 is RGB, 6 RGBA; bit depth 8 or 16.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
        + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )  # fmt: skip


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP"])
def test_supported_formats_decode_to_rgb_of_the_same_size(fmt: str) -> None:
    image = decode_image(encode(Image.new("RGB", (64, 48), (200, 10, 10)), fmt), LIMITS)
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert image.getpixel((10, 10))[0] > 150  # type: ignore[index]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "1"])
def test_grey_alpha_palette_and_16_bit_pngs_become_rgb(mode: str) -> None:
    image = decode_image(encode(Image.new(mode, (20, 10)), "PNG"), LIMITS)
    assert (image.mode, image.size) == ("RGB", (20, 10))


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = decode_image(encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"), LIMITS)
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((5, 5))  # type: ignore[misc]
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied_so_boxes_match_what_people_see() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = encode(Image.new("RGB", (60, 20)), "JPEG", exif=exif.tobytes())
    assert decode_image(data, LIMITS).size == (20, 60)


def test_empty_body_is_refused() -> None:
    with pytest.raises(EmptyBodyError):
        decode_image(b"", LIMITS)


def test_text_is_not_an_image() -> None:
    with pytest.raises(InvalidImageError):
        decode_image(b"hello, this is not an image at all", LIMITS)


def test_truncated_jpeg_is_refused() -> None:
    data = encode(Image.effect_noise((200, 200), 64).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImageError):
        decode_image(data[: len(data) // 2], LIMITS)


def test_one_pixel_image_is_too_small() -> None:
    with pytest.raises(ImageTooSmallError):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), LIMITS)


def test_bomb_header_is_refused_before_decoding() -> None:
    with pytest.raises(TooManyPixelsError):
        decode_image(png_header_only(20000, 20000), LIMITS)


def test_pixel_limit_below_pillows_own_applies() -> None:
    with pytest.raises(TooManyPixelsError):
        decode_image(png_header_only(1000, 1000), ImageLimits(max_pixels=999_999, min_side=8))


def test_gif_decodes_but_is_not_a_supported_format() -> None:
    with pytest.raises(UnsupportedImageFormatError):
        decode_image(encode(Image.new("RGB", (20, 20)), "GIF"), LIMITS)


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        (None, True),
        ("image/jpeg", True),
        ("IMAGE/PNG; charset=binary", True),
        ("application/octet-stream", True),
        ("text/plain", False),
        ("application/json", False),
        ("multipart/form-data; boundary=x", False),
    ],
)
def test_media_types(content_type: str | None, accepted: bool) -> None:
    assert media_type_accepted(content_type) is accepted


def test_big_jpegs_decode_at_reduced_scale_but_report_their_own_size() -> None:
    data = encode(Image.new("RGB", (1920, 1080)), "JPEG")
    image, size = decode_for_model(data, LIMITS, draft_to=416)
    assert size == (1920, 1080)
    assert image.size == (960, 540)  # 1/4 would be 480×270, below 416 on one side
    full, full_size = decode_for_model(data, LIMITS)
    assert full.size == full_size == (1920, 1080)


def test_draft_keeps_orientation_and_skips_non_jpeg() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(Image.new("RGB", (1600, 1000)), "JPEG", exif=exif.tobytes())
    image, size = decode_for_model(rotated, LIMITS, draft_to=300)
    assert size == (1000, 1600)
    assert image.size == (500, 800)
    png = encode(Image.new("RGB", (1600, 1000)), "PNG")
    assert decode_for_model(png, LIMITS, draft_to=300)[0].size == (1600, 1000)


def test_decoder_warm_up_loads_the_lazy_image_plugins_before_the_first_request() -> None:
    """Pillow imports format plugins and its EXIF parser on first use; start-up pays that, not a request."""
    script = (
        "import sys, json\n"
        "from inference_module.imaging import warm_up_decoder\n"
        "before = set(sys.modules)\n"
        "warm_up_decoder()\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert {
        "PIL.JpegImagePlugin",
        "PIL.PngImagePlugin",
        "PIL.BmpImagePlugin",
        "PIL.TiffImagePlugin",
    } <= loaded


def frames(*colours: tuple[int, int, int]) -> list[Image.Image]:
    return [Image.new("RGB", (64, 48), colour) for colour in colours]


@pytest.mark.parametrize("fmt", ["MPO", "WEBP"])
def test_multi_frame_mpo_and_webp_decode_to_their_first_frame(fmt: str) -> None:
    first, second = frames((220, 20, 20), (20, 20, 220))
    data = encode(first, fmt, save_all=True, append_images=[second], lossless=True)
    assert Image.open(io.BytesIO(data)).format == fmt
    image = decode_image(data, LIMITS)
    assert (image.mode, image.size) == ("RGB", (64, 48))
    red, _, blue = image.getpixel((10, 10))  # type: ignore[misc]
    assert red > 150 and blue < 100


def test_single_frame_webp_with_alpha_decodes() -> None:
    data = encode(Image.new("RGBA", (40, 30), (10, 200, 10, 255)), "WEBP", lossless=True)
    assert decode_image(data, LIMITS).getpixel((5, 5)) == (10, 200, 10)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "ICO"])
def test_formats_pillow_decodes_but_we_do_not_trust_stay_refused(fmt: str) -> None:
    with pytest.raises(UnsupportedImageFormatError):
        decode_image(encode(Image.new("RGB", (20, 20)), fmt), LIMITS)


def test_the_default_limits_refuse_the_16_bit_rgba_bomb_before_decoding() -> None:
    """The review's bomb: 39.7 Mpx of 16-bit RGBA in 309 kB (under the old 40 Mpx limit)."""
    defaults = InferenceSettings()
    limits = ImageLimits(defaults.max_image_pixels, 8, max_decoded_bytes=defaults.max_decoded_bytes)
    with pytest.raises(TooManyPixelsError):
        decode_image(png_header_only(7000, 5671, bit_depth=16, colour_type=6), limits)


def test_decoded_size_is_bounded_by_bytes_per_pixel_not_only_pixels() -> None:
    limits = ImageLimits(max_pixels=40_000_000, min_side=8, max_decoded_bytes=16 * 1024 * 1024)
    # 2.5 Mpx: 10 MB as RGB fits; as RGBA, 10 MB plus its 10 MB RGB copy does not
    with pytest.raises(TooManyPixelsError, match="bytes"):
        decode_image(png_header_only(2000, 1250, colour_type=6), limits)
    rgb = decode_image(encode(Image.new("RGB", (2000, 1250)), "PNG"), limits)
    assert rgb.size == (2000, 1250)


def test_a_jpeg_too_costly_at_full_size_is_decoded_reduced_and_keeps_its_size() -> None:
    limits = ImageLimits(max_pixels=40_000_000, min_side=8, max_decoded_bytes=4 * 1024 * 1024)
    data = encode(Image.new("RGB", (2400, 1600)), "JPEG")  # 11.5 MB as RGB
    image, size = decode_for_model(data, limits)
    assert size == (2400, 1600)
    assert image.size == (1200, 800)  # 1/2 scale: 2.9 MB


def test_only_one_large_decode_runs_at_a_time_and_small_ones_pass() -> None:
    limits = ImageLimits(max_pixels=40_000_000, min_side=8, large_decode_bytes=1024 * 1024)
    large = encode(Image.new("RGB", (1000, 1000)), "PNG")  # 3 MB decoded
    small = encode(Image.new("RGB", (300, 300)), "PNG")  # 0.27 MB
    assert limits.large_decodes.acquire(blocking=False)  # another request is decoding a large image
    try:
        with pytest.raises(OverloadedError):
            decode_image(large, limits)
        assert decode_image(small, limits).size == (300, 300)
    finally:
        limits.large_decodes.release()
    assert decode_image(large, limits).size == (1000, 1000)
    assert limits.large_decodes.acquire(blocking=False)  # given back after the decode
    limits.large_decodes.release()


def test_the_benchmarks_png_bomb_is_a_valid_16_bit_rgba_png() -> None:
    data = rgba16_png_bomb(64, 32)
    with Image.open(io.BytesIO(data)) as opened:
        assert (opened.format, opened.mode, opened.size) == ("PNG", "RGBA", (64, 32))
    assert decode_image(data, LIMITS).size == (64, 32)
    assert len(rgba16_png_bomb(7000, 5671)) < 400_000  # the review's 39.7 Mpx in about 300 kB
