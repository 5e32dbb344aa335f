"""What `face-detector-1.0.zip` holds besides the model: one label and the family hint."""

import json

from edge_tools.realmodels.pins import FACE_MODEL

__all__ = ["FACE_DETECTOR_ID", "FACE_LABELS_TEXT", "FACE_MODEL_JSON", "face_detector_members"]

FACE_DETECTOR_ID = "face-detector-1.0"
"""ZIP name without `.zip`, hence the version the loader derives."""
FACE_LABELS_TEXT = "face\n"
FACE_MODEL_JSON = (json.dumps({"family": "blazeface"}) + "\n").encode("utf-8")
"""Raw anchor outputs, not the SSD interface: the inference module picks the family from this."""


def face_detector_members(model_bytes: bytes) -> dict[str, bytes]:
    """ZIP member name → bytes: the .tflite, `labels.txt` and `model.json`, at the archive root."""
    return {
        FACE_MODEL.name: model_bytes,
        "labels.txt": FACE_LABELS_TEXT.encode("utf-8"),
        "model.json": FACE_MODEL_JSON,
    }
