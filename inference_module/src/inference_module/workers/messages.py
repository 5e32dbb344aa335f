"""What the leader and its followers say to each other: one JSON object per line on a Unix socket pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from edge_shared.reported import Runtime
from inference_module.announcement import LoadRequest
from inference_module.errors import ModelError

_STRICT = ConfigDict(extra="forbid", frozen=True)


class WireLoadRequest(BaseModel):
    """A `LoadRequest` on the wire (paths are the same for every worker: one model root)."""

    model_config = _STRICT

    version: str = Field(max_length=128)
    file_name: str = Field(max_length=256)
    model_path: Path
    labels_path: Path | None = None
    expected_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    announced_runtime: Runtime | None = None

    @classmethod
    def of(cls, request: LoadRequest) -> WireLoadRequest:
        return cls(
            version=request.version,
            file_name=request.file_name,
            model_path=request.model_path,
            labels_path=request.labels_path,
            expected_sha256=request.expected_sha256,
            announced_runtime=request.announced_runtime,
        )

    def request(self) -> LoadRequest:
        return LoadRequest(
            version=self.version,
            file_name=self.file_name,
            model_path=self.model_path,
            labels_path=self.labels_path,
            expected_sha256=self.expected_sha256,
            announced_runtime=self.announced_runtime,
        )


class Prepare(BaseModel):
    """Leader → follower: build and warm this model beside the serving one, do not serve it yet."""

    model_config = _STRICT
    op: Literal["prepare"] = "prepare"
    load: WireLoadRequest


class Commit(BaseModel):
    """Leader → follower: serve what was prepared."""

    model_config = _STRICT
    op: Literal["commit"] = "commit"


class Abort(BaseModel):
    """Leader → follower: drop what was prepared."""

    model_config = _STRICT
    op: Literal["abort"] = "abort"


class Ping(BaseModel):
    """Leader → follower: answer if your event loop is alive (a hung follower is replaced)."""

    model_config = _STRICT
    op: Literal["ping"] = "ping"


class Reload(BaseModel):
    """Follower → leader: `POST /model/reload` arrived here; swap every worker to what `current` names."""

    model_config = _STRICT
    op: Literal["reload"] = "reload"


class Refused(BaseModel):
    """Follower → leader: the serving model failed too many requests here; tell the loader."""

    model_config = _STRICT
    op: Literal["refused"] = "refused"
    version: str = Field(max_length=128)
    code: str = Field(max_length=64)
    message: str = Field(max_length=512)


Request = Annotated[Prepare | Commit | Abort | Ping | Reload | Refused, Field(discriminator="op")]


class Reply(BaseModel):
    """The answer to one request: ok, or the stable error code and message of a `ModelError`."""

    model_config = _STRICT
    ok: bool
    code: str | None = Field(default=None, max_length=64)
    message: str | None = Field(default=None, max_length=512)
    #: The serving version after a reload (the follower answers `/model` from its own slot).
    version: str | None = Field(default=None, max_length=128)

    @classmethod
    def failed(cls, exc: ModelError) -> Reply:
        return cls(ok=False, code=exc.code, message=str(exc)[:512])

    def error(self) -> ModelError:
        """The `ModelError` this reply carries, as the class its code names."""
        return model_error(self.code or ModelError.code, self.message or "a worker failed")


class Envelope(BaseModel):
    """One line: a request (`request` set) or the reply to request `id` (`reply` set)."""

    model_config = _STRICT
    id: int = Field(ge=0)
    request: Request | None = None
    reply: Reply | None = None


ENVELOPE = TypeAdapter(Envelope)


def model_error(code: str, message: str) -> ModelError:
    """A `ModelError` of the class whose stable `code` is `code` (`ModelError` itself if none is)."""
    pending: list[type[ModelError]] = [ModelError]
    while pending:
        kind = pending.pop()
        if kind.code == code:
            return kind(message)
        pending.extend(kind.__subclasses__())
    return ModelError(message)
