"""Messages the modules send each other and upstream through edgeHub (architecture §5)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt
from pydantic.alias_generators import to_camel

from edge_shared.names import Version
from edge_shared.reported import Runtime, Source, UpdateError, UpdateState

OUTPUT_MODEL = "DLModelOutput"
INPUT_MODEL = "DLModelInput"
OUTPUT_STATUS = "ModelStatus"
#: The inference module's output telling the loader which version serves and which it refused.
OUTPUT_INFERENCE_STATUS = "InferenceStatus"
#: The loader's input that `deployment.json` routes `InferenceStatus` to.
INPUT_INFERENCE_STATUS = "InferenceStatusInput"
JSON_CONTENT_TYPE = "application/json"


def _relative_path(value: str) -> str:
    """Paths travel relative to the model root: the volume is mounted at different places per module."""
    if not value or value.startswith(("/", "\\")) or ":" in value.split("/")[0]:
        raise ValueError("must be a path relative to the model root")
    if any(part in ("..", "") for part in value.replace("\\", "/").split("/")):
        raise ValueError("must not contain '..' or empty segments")
    return value


RelativePath = Annotated[str, Field(max_length=1024), AfterValidator(_relative_path)]


class ModelAnnouncement(BaseModel):
    """Body of `DLModelOutput`: the reference architecture's two path keys, plus ours."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    local_model_path: RelativePath
    local_labelmap_path: RelativePath | None = None
    """None when the package has no label file and the model carries its class names."""
    version: Version
    file_name: str = Field(max_length=128)
    runtime: Runtime
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class ModelStatusEvent(BaseModel):
    """Body of `ModelStatus` (to `$upstream`) on every terminal state of an update; no URL in it."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    state: UpdateState
    version: str | None
    file_name: str | None
    error: UpdateError | None
    duration_seconds: NonNegativeFloat
    bytes_downloaded: NonNegativeInt
    source: Source | None

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class InferenceStatus(BaseModel):
    """Body of the inference module's `InferenceStatus` output, routed to the loader.

    `serving`: `version` now serves (the loader remembers it as the version to go back to). `rejected`:
    `version` was refused or failed (`code` is the inference module's stable error code); `serving_version`
    is what still serves, if anything.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="ignore", frozen=True
    )

    state: Literal["serving", "rejected"]
    version: Version
    code: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, max_length=512)
    serving_version: Version | None = None

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
