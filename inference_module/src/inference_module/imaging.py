"""Image decoding for scoring: formats, EXIF orientation, colour modes and the decompression-bomb guard.

Pure functions of bytes and limits; nothing here knows about HTTP or models.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from inference_module.errors import (
    EmptyBodyError,
    ImageTooSmallError,
    InvalidImageError,
    TooManyPixelsError,
    UnsupportedImageFormatError,
)

SUPPORTED_FORMATS = ("JPEG", "PNG", "BMP")
ACCEPTED_MEDIA_TYPES = ("application/octet-stream",)


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_pixels: int
    min_side: int


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

    With `draft_to`, a JPEG at least twice that size on both sides is decoded at 1/2, 1/4 or 1/8
    scale (in the DCT, much faster than decoding everything and resizing), never below `draft_to`.
    Boxes are fractions of the image, so they still apply to the original.
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
                f"image format {image.format} is not supported; send JPEG, PNG or BMP"
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
        try:
            orientation = image.getexif().get(_ORIENTATION, 1)
            size = (height, width) if orientation in _SWAPS_SIDES else (width, height)
            if draft_to is not None and image.format == "JPEG":
                image.draft("RGB", (draft_to, draft_to))
            image.load()
            # exif_transpose copies even upright images; only call it when there is work to do.
            upright = ImageOps.exif_transpose(image) if orientation not in (1, None) else image
            return (upright if upright.mode == "RGB" else _to_rgb(upright)), size
        except (OSError, ValueError, SyntaxError, struct.error) as exc:
            raise InvalidImageError("the image data is truncated or corrupt") from exc


def warm_up_decoder() -> None:
    """Decode one small image of each format (and with EXIF) so that Pillow's lazy plugin imports and
    EXIF parser load at start-up instead of costing the first request tens of milliseconds."""
    limits = ImageLimits(max_pixels=1 << 20, min_side=1)
    sample = Image.new("RGB", (32, 24), (128, 64, 32))
    exif = Image.Exif()
    exif[_ORIENTATION] = 6
    for fmt, extra in (("JPEG", {"exif": exif.tobytes()}), ("PNG", {}), ("BMP", {})):
        buffer = io.BytesIO()
        sample.save(buffer, format=fmt, **extra)
        decode_for_model(buffer.getvalue(), limits, draft_to=16)
    encode_jpeg(sample, 80)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grey, palette, RGBA, CMYK and 16-bit images to 8-bit RGB; alpha is composited on black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Scale 16/32-bit grey to 8 bits instead of clipping it.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
