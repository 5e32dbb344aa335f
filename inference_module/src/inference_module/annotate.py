"""Draw detections on the image for `/score/annotated` and the upload page."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

from inference_module.postprocess import Detection

_COLOURS = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255), (0, 200, 200))


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """Boxes and `label score` captions, drawn in place on `image` (the request's own copy)."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    line = max(2, round(min(width, height) / 200))
    for item in detections:
        colour = _COLOURS[item.class_id % len(_COLOURS)]
        left, top = item.left * width, item.top * height
        right, bottom = left + item.width * width, top + item.height * height
        draw.rectangle((left, top, right, bottom), outline=colour, width=line)
        caption = f"{item.label} {item.score:.2f}"
        text_box = draw.textbbox((left, top), caption)
        text_h = text_box[3] - text_box[1] + 4
        text_top = top - text_h if top >= text_h else top
        draw.rectangle((left, text_top, left + text_box[2] - text_box[0] + 4, text_top + text_h), fill=colour)
        draw.text((left + 2, text_top + 1), caption, fill=(0, 0, 0))
    return image
