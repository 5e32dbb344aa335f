"""Image decoding for scoring: formats, EXIF orientation, colour modes and the decompression-bomb guard.

Pure functions of bytes and limits; nothing here knows about HTTP or models.
"""

from __future__ import annotations

import io
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from inference_module.errors import (
    EmptyBodyError,
    ImageTooSmallError,
    InvalidImageError,
    OverloadedError,
    TooManyPixelsError,
    UnsupportedImageFormatError,
)
from inference_module.memory import give_back_memory

# MPO is what many cameras write (a JPEG with more frames: the first is the photo); WebP too. GIF, TIFF
# and the rest decode, but through code paths we do not need to trust with untrusted bytes.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "BMP", "WEBP")
_DCT_FORMATS = ("JPEG", "MPO")  # decodable at 1/2, 1/4, 1/8 scale (`Image.draft`)
_DRAFT_SCALES = (1, 2, 4, 8)
ACCEPTED_MEDIA_TYPES = ("application/octet-stream",)
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Decode bounds. `large_decodes` admits one decode above `large_decode_bytes` at a time (shared by
    the pipeline threads of one app)."""

    max_pixels: int
    min_side: int
    max_decoded_bytes: int = 64 * MiB
    large_decode_bytes: int = 16 * MiB
    large_decodes: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))


def decode_bytes_per_pixel(mode: str) -> int:
    """Memory per pixel to decode an image of `mode` and convert it to RGB: Pillow keeps 8-bit
    single-band modes at 1 byte, 16-bit grey at 2 and every multi-band mode (RGB included) at 4; any
    mode but RGB then needs an RGB copy (4 more)."""
    if mode == "RGB":
        return 4
    if mode in ("1", "L", "P"):
        return 1 + 4
    if mode.startswith("I;16"):
        return 2 + 4
    return 4 + 4


def media_type_accepted(content_type: str | None) -> bool:
    """`image/*`, `application/octet-stream`, or nothing at all (the bytes are sniffed anyway)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("image/") or media in ACCEPTED_MEDIA_TYPES


_ORIENTATION = 0x0112
_SWAPS_SIDES = frozenset({5, 6, 7, 8})


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode to an upright RGB image at full size, refusing bombs before any pixel is decoded."""
    return decode_for_model(data, limits)[0]


def decode_for_model(
    data: bytes, limits: ImageLimits, *, draft_to: int | None = None
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode to an upright RGB image; also return the upright size of the original.

    The cost (pixels × bytes per pixel, from the header) is bounded before any pixel is decoded. A JPEG
    is decoded at 1/2, 1/4 or 1/8 scale (in the DCT, much faster than decoding everything and
    resizing) when that is what fits, and with `draft_to` when it is at least twice that size on both
    sides (never below `draft_to`). Boxes are fractions of the image, so they still apply to the
    original.
    """
    if not data:
        raise EmptyBodyError("the request body is empty; send the image bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fires above its limits (raised, or a warning turned into an error).
        raise TooManyPixelsError(f"image has too many pixels (limit {limits.max_pixels})") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError("the body is not a decodable image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError("the image header is corrupt") from exc
    with image:
        if image.format not in SUPPORTED_FORMATS:
            raise UnsupportedImageFormatError(
                f"image format {image.format} is not supported; send JPEG, PNG, BMP or WebP"
            )
        width, height = image.size
        if width * height > limits.max_pixels:
            raise TooManyPixelsError(
                f"image is {width}×{height} = {width * height} pixels; the limit is {limits.max_pixels}"
            )
        if min(width, height) < limits.min_side:
            raise ImageTooSmallError(
                f"image is {width}×{height}; both sides must be at least {limits.min_side} pixels"
            )
        cost = _reduce_to_fit(image, limits, draft_to)
        large = cost > limits.large_decode_bytes
        if large and not limits.large_decodes.acquire(blocking=False):
            raise OverloadedError(
                f"another large image is being decoded ({cost} bytes needed); retry shortly"
            )
        try:
            orientation = image.getexif().get(_ORIENTATION, 1)
            size = (height, width) if orientation in _SWAPS_SIDES else (width, height)
            image.load()
            # exif_transpose copies even upright images; only call it when there is work to do.
            upright = ImageOps.exif_transpose(image) if orientation not in (1, None) else image
            return (upright if upright.mode == "RGB" else _to_rgb(upright)), size
        except (OSError, ValueError, SyntaxError, struct.error) as exc:
            raise InvalidImageError("the image data is truncated or corrupt") from exc
        finally:
            if large:
                limits.large_decodes.release()
                give_back_memory()


def _reduce_to_fit(image: Image.Image, limits: ImageLimits, draft_to: int | None) -> int:
    """Pick the JPEG draft scale (the `draft_to` hint, or what fits `max_decoded_bytes`); the decoded
    size in bytes, or `TooManyPixelsError` when even the smallest scale does not fit."""
    width, height = image.size
    per_pixel = decode_bytes_per_pixel(image.mode)
    reducible = image.format in _DCT_FORMATS
    scales = _DRAFT_SCALES if reducible else (1,)
    fitting = [s for s in scales if -(-width // s) * -(-height // s) * per_pixel <= limits.max_decoded_bytes]
    if not fitting:
        raise TooManyPixelsError(
            f"image is {width}×{height} at {per_pixel} bytes per pixel = {width * height * per_pixel} bytes "
            f"to decode; the limit is {limits.max_decoded_bytes} bytes"
        )
    scale = fitting[0]
    if reducible and draft_to is not None:
        hinted = max(s for s in _DRAFT_SCALES if s <= max(1, min(width // draft_to, height // draft_to)))
        scale = max(scale, hinted)
    if scale > 1:
        image.draft("RGB", (width // scale, height // scale))
    return image.size[0] * image.size[1] * per_pixel


def warm_up_decoder() -> None:
    """Decode one small image of each format (and with EXIF) so that Pillow's lazy plugin imports and
    EXIF parser load at start-up instead of costing the first request tens of milliseconds."""
    limits = ImageLimits(max_pixels=1 << 20, min_side=1)
    sample = Image.new("RGB", (32, 24), (128, 64, 32))
    exif = Image.Exif()
    exif[_ORIENTATION] = 6
    formats: tuple[tuple[str, dict[str, Any]], ...] = (
        ("JPEG", {"exif": exif.tobytes()}),
        ("PNG", {}),
        ("BMP", {}),
        ("WEBP", {}),
        ("MPO", {"save_all": True, "append_images": [sample]}),
    )
    for fmt, extra in formats:
        buffer = io.BytesIO()
        sample.save(buffer, format=fmt, **extra)
        decode_for_model(buffer.getvalue(), limits, draft_to=16)
    encode_jpeg(sample, 80)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grey, palette, RGBA, CMYK and 16-bit images to 8-bit RGB; alpha is composited on black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Pasting with the alpha as mask blends onto black with two image copies fewer than compositing.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size)
        background.paste(rgba, (0, 0), rgba)
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Scale 16/32-bit grey to 8 bits instead of clipping it.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
