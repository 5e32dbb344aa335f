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
    """A deterministic VGA frame: a lit gradient with noise, bright and dark blocks, an object-like square."""
    width, height = size
    rng = np.random.default_rng(17)
    ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to(ramp, (height, width, 3)) + rng.normal(0, 12, (height, width, 3))
    pixels[height // 8 : height // 3, width // 10 : width // 3] = (235, 230, 220)
    pixels[height // 2 : height * 7 // 8, width // 2 : width * 3 // 4] = (20, 25, 30)
    side = min(width, height) // 4
    pixels[height // 3 : height // 3 + side, width * 2 // 3 : width * 2 // 3 + side] = (250, 250, 250)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def exercise(detector: Detector, labels: Labels, version: str) -> None:
    """Detect, select every detection (threshold 0) and serialise, as a request would; `ModelLoadError`
    naming the step's error when any of it fails."""
    frame = sample_frame()
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
