"""The swap's end-to-end check runs on a camera-like frame that is cheap to draw on every swap."""

from __future__ import annotations

import numpy as np

from inference_module.warmup import sample_frame


def test_the_sample_frame_is_the_same_every_time_and_looks_like_a_camera_frame() -> None:
    first, second = sample_frame(), sample_frame()
    assert first.size == (640, 480) and first.mode == "RGB"
    assert first.tobytes() == second.tobytes()
    grey = np.asarray(first.convert("L"))
    assert grey.min() < 40 and grey.max() > 240  # dark and bright regions, not a flat image
    corner = np.asarray(first.crop((0, 0, 64, 48)))
    assert len(np.unique(corner.reshape(-1, 3), axis=0)) > 100  # noise, not a flat fill
