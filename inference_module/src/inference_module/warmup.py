"""The swap's last check: run a new model end to end on a camera-like frame before it serves.

Runtimes warm up on a blank image, which yields no detections, so the output decoding and the
postprocessing never run on real indices: a model whose outputs only go wrong on real images passed,
was swapped in, and answered 500 to every request. This runs what a request runs after decoding.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from inference_module.errors import ModelLoadError
from inference_module.labels import Labels
from inference_module.postprocess import native_body, select_detections, to_json_bytes
from inference_module.runtimes.base import Detector

SAMPLE_SIZE = (640, 480)


def sample_frame(size: tuple[int, int] = SAMPLE_SIZE) -> Image.Image:
    """A deterministic VGA frame: a lit gradient with noise, bright and dark blocks, an object-like square.

    Built in 8-bit integers from random bytes: drawn as float64 Gaussian noise it cost 15 ms of CPU and
    20 MB of temporaries on every swap, more than the model's own warm-up run, while requests were served.
    """
    width, height = size
    rng = np.random.default_rng(17)
    pixels = np.frombuffer(bytearray(rng.bytes(width * height * 3)), np.uint8).reshape(height, width, 3)
    pixels &= 31  # noise of 0..31 on a ramp of 40..200: never past 255
    pixels += np.linspace(40, 200, width).astype(np.uint8)[None, :, None]
    pixels[height // 8 : height // 3, width // 10 : width // 3] = (235, 230, 220)
    pixels[height // 2 : height * 7 // 8, width // 2 : width * 3 // 4] = (20, 25, 30)
    side = min(width, height) // 4
    pixels[height // 3 : height // 3 + side, width * 2 // 3 : width * 2 // 3 + side] = (250, 250, 250)
    return Image.fromarray(pixels, "RGB")


def exercise(detector: Detector, labels: Labels, version: str, frame: Image.Image) -> None:
    """Detect on `frame` (a `sample_frame`), select every detection (threshold 0) and serialise, as a
    request would; `ModelLoadError` naming the step's error when any of it fails."""
    try:
        raw = detector.detect(frame)
        detections = select_detections(raw, labels, threshold=0.0, max_detections=10_000)
        to_json_bytes(
            native_body(
                detections,
                version=version,
                runtime=detector.metadata.runtime,
                size=frame.size,
                inference_ms=0.0,
            )
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"the model fails on a sample image after its warm-up: {exc.__class__.__name__}: {exc}"
        ) from exc
