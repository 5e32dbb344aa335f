"""Resizing pixels for the network input: OpenCV's bilinear, about 5-8× faster than Pillow's here.

Pillow's BILINEAR filters with an antialiasing kernel sized to the scale factor, which costs several
milliseconds for a VGA frame; OpenCV samples four neighbours. Large JPEGs are already reduced in the
DCT at decode (see `imaging.decode_for_model`), so the factor left for this step is small and the
missing antialiasing does not matter to a detector.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt


def configure_resize_threads(threads: int) -> None:
    """OpenCV's own thread pool would compete with the pipeline threads on small devices."""
    cv2.setNumThreads(threads)


def resize_rgb(pixels: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[Any]:
    """HWC uint8 pixels to `height`×`width`, bilinear; the input itself when already that size."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
