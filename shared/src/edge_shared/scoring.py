"""`/score` response and error bodies of the inference module (architecture §7), for its clients and tests.

The inference module serialises these shapes itself on its hot path; the models here are the contract
it documents in OpenAPI and that sibling modules can validate against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_shared.reported import Runtime


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Box(_Frozen):
    """A box in fractions of the original image (after EXIF orientation), clamped to [0, 1]."""

    left: float = Field(ge=0.0, le=1.0)
    top: float = Field(ge=0.0, le=1.0)
    width: float = Field(ge=0.0, le=1.0)
    height: float = Field(ge=0.0, le=1.0)


class Detection(_Frozen):
    label: str = Field(description="Name from the model's label file, or `class_<id>` past its end.")
    class_id: int = Field(ge=0, description="Line of the label file the label comes from.")
    score: float = Field(ge=0.0, le=1.0)
    box: Box


class ScoredModel(_Frozen):
    version: str
    runtime: Runtime


class ImageSize(_Frozen):
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class ScoreResponse(_Frozen):
    """Native `/score` answer."""

    model: ScoredModel
    image: ImageSize
    detections: list[Detection]
    inference_ms: float = Field(ge=0.0, description="Decode to postprocess, in milliseconds.")


class AvaTag(_Frozen):
    value: str
    confidence: float = Field(ge=0.0, le=1.0)


class AvaBox(_Frozen):
    l: float = Field(ge=0.0, le=1.0)  # noqa: E741 - the AVA contract's key
    t: float = Field(ge=0.0, le=1.0)
    w: float = Field(ge=0.0, le=1.0)
    h: float = Field(ge=0.0, le=1.0)


class AvaEntity(_Frozen):
    tag: AvaTag
    box: AvaBox


class AvaInference(_Frozen):
    type: Literal["entity"] = "entity"
    entity: AvaEntity


class AvaScoreResponse(_Frozen):
    """`/score?format=ava`: the Azure Video Analyzer HTTP-extension shape."""

    inferences: list[AvaInference]


class ErrorDetail(_Frozen):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_image`, `no_model`.")
    message: str


class ErrorBody(_Frozen):
    """The one error body of every non-2xx answer."""

    error: ErrorDetail


class ModelInfo(_Frozen):
    """`GET /model`: what is serving."""

    version: str
    file_name: str
    runtime: Runtime
    input_shape: list[int]
    labels_count: int = Field(ge=0)
    labels_source: str = Field(
        default="label file",
        description="where the class names came from: `label file <name>` or names embedded in the model",
    )
    loaded_at: datetime
    sha256: str
