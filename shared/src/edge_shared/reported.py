"""Reported twin properties of both modules (architecture §4).

`ModelUpdate` keys are camelCase and the top-level loader keys PascalCase, as the contract fixes them;
Python code uses snake_case names.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt
from pydantic.alias_generators import to_camel

from edge_shared.names import FileName, Version


class UpdateState(StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    READY = "ready"
    FAILED = "failed"
    #: Installed, but the inference module refused or could not serve it: `current` is back on the last
    #: version that served, and the error carries the inference module's code.
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in (UpdateState.READY, UpdateState.FAILED, UpdateState.REJECTED)


class ErrorCode(StrEnum):
    """Stable error codes: operators and dashboards match on these, so never rename one."""

    INVALID_DESIRED = "invalid_desired"
    DOWNLOAD_FAILED = "download_failed"
    SAS_EXPIRED = "sas_expired"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    DISK_FULL = "disk_full"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    SIGNATURE_INVALID = "signature_invalid"
    SIGNATURE_UNCHECKED = "signature_unchecked"
    UNSAFE_ARCHIVE = "unsafe_archive"
    INVALID_MODEL = "invalid_model"
    INSTALL_FAILED = "install_failed"
    ROLLBACK_FAILED = "rollback_failed"
    LOAD_FAILED = "load_failed"
    INTERNAL = "internal_error"


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="ignore"
    )

    def to_twin(self) -> dict[str, Any]:
        """JSON-ready dict with the contract's key names."""
        return self.model_dump(mode="json", by_alias=True)


class UpdateError(_Camel):
    code: str
    message: str


#: Where an installed version's bytes came from: the full ZIP, a delta on an installed version, or the
#: volume itself (already installed, or made current again by a rollback or a refusal).
Source = Literal["full", "delta", "local"]


class ModelUpdate(_Camel):
    """Progress and outcome of the update being applied (or the last one)."""

    state: UpdateState = UpdateState.IDLE
    file_name: str | None = None
    version: str | None = None
    desired_version: int | None = None
    bytes_done: NonNegativeInt = 0
    bytes_total: NonNegativeInt | None = None
    percent: float | None = Field(default=None, ge=0, le=100)
    attempt: NonNegativeInt = 0
    error: UpdateError | None = None
    next_retry_at: datetime | None = None
    source: Source | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class LoaderReported(BaseModel):
    """The loader's reported section."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, extra="ignore")

    latest_file_name: FileName | None = Field(default=None, alias="LatestAIModelFileName")
    model_update: ModelUpdate = Field(default_factory=ModelUpdate, alias="ModelUpdate")
    installed_models: list[Version] = Field(default_factory=list, alias="InstalledModels")

    def to_twin(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_patch(self) -> dict[str, Any]:
        """Only the properties set on this object: a reported patch leaves the others as they are."""
        return self.model_dump(mode="json", by_alias=True, include=self.model_fields_set)


Runtime = Literal["onnx", "tflite"]


class ActiveModel(_Camel):
    """What the inference module is serving, reported as `ActiveModel`."""

    version: Version
    file_name: str
    runtime: Runtime
    loaded_at: datetime
    sha256: str
    #: The version `current` names, when it could not be loaded at start and this older one serves instead.
    fallback_from: Version | None = None
    #: The inference module's error code for that version (e.g. `load_failed`).
    fallback_reason: str | None = None
