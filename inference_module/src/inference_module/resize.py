"""Resizing pixels for the network input: Pillow's bilinear filter.

OpenCV's bilinear was 2-3 ms faster per VGA frame, but its wheel is 156 MB of the inference image
(video codecs and a second BLAS included) for this one call; on devices behind slow links the image
size matters more. Pillow's BILINEAR also antialiases on downscaling, which a detector does not mind.
Large JPEGs are already reduced in the DCT at decode (see `imaging.decode_for_model`), so the factor
left for this step is small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image


def resize_rgb(pixels: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[Any]:
    """HWC uint8 pixels to `height`×`width`, bilinear; the input itself when already that size."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    resized = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)
