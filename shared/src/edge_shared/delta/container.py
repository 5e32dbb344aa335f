"""The `emdelta/1` container: a fixed preamble, a JSON header, then a payload of blobs.

```
offset 0   8 bytes   magic b"EMDELTA\\n"
offset 8   2 bytes   container version, big-endian (1)
offset 10  4 bytes   header length N, big-endian (at most `DeltaLimits.max_header_bytes`)
offset 14  N bytes   header: UTF-8 JSON, the `DeltaHeader` model below
offset 14+N          payload: `payload_size` bytes; every blob is an (offset, length) reference into it
```
The file must end exactly at the payload's end, so truncation is caught before any work. A delta comes
from the network: the header is validated strictly (no coercion, no unknown keys, bounded lists) and every
reference is bounds-checked against the payload.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Annotated, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_shared.delta.deflate import MIN_CHUNK, DeflateSettings, Strategy
from edge_shared.delta.errors import DeltaFormatError, UnsupportedDeltaVersionError

MAGIC = b"EMDELTA\n"
CONTAINER_VERSION = 1
FORMAT: Literal["emdelta/1"] = "emdelta/1"
PREAMBLE = struct.Struct(">8sHI")

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, Field(ge=0, le=1 << 40)]
GenericCodec = Literal["bsdiff4", "zstd-ref"]


@dataclass(frozen=True)
class DeltaLimits:
    """Bounds on what an untrusted delta may ask of the applier, and on what the applier may use."""

    max_header_bytes: int = 4 * 1024 * 1024
    max_output_bytes: int = 2 * 1024 * 1024 * 1024
    max_window_log: int = 27
    deflate_threads: int = 2
    """Threads re-deflating a chunked member: two halve the time and leave other cores to inference."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class BlobRef(_Strict):
    """A slice of the payload."""

    offset: Size
    length: Size


class GenericPatch(_Strict):
    """A generic binary patch; `comparison` records each codec's size in bytes (null: not tried)."""

    codec: GenericCodec
    blob: BlobRef
    comparison: dict[GenericCodec, Size | None] = Field(default_factory=dict)


class TensorSegment(_Strict):
    """One tensor's bytes: target = base[base_offset:+length] XOR unsplit(zstd frames), chunk by chunk."""

    name: Annotated[str, Field(max_length=4096)]
    target_offset: Size
    base_offset: Size
    length: Size
    item_size: Literal[1, 2, 4, 8]
    chunks: Annotated[list[BlobRef], Field(max_length=1 << 16)]


class _FileBase(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=1024)]
    size: Size
    sha256: Sha256Hex


class SameFile(_FileBase):
    kind: Literal["same"]
    base_name: Annotated[str, Field(min_length=1, max_length=1024)]


class FullFile(_FileBase):
    kind: Literal["full"]
    blob: BlobRef


class GenericFile(_FileBase):
    kind: Literal["generic-delta"]
    base_name: Annotated[str, Field(min_length=1, max_length=1024)]
    base_sha256: Sha256Hex
    patch: GenericPatch


class TensorFile(_FileBase):
    """Matched tensors XOR'd with the base; everything else (`residual`) by a generic patch.

    The base residual is the base file without the matched tensors' bytes; the target residual is the
    target file without them; both keep their order.
    """

    kind: Literal["tensor-delta"]
    base_name: Annotated[str, Field(min_length=1, max_length=1024)]
    base_sha256: Sha256Hex
    chunk_size: Annotated[int, Field(ge=8, le=64 * 1024 * 1024)]
    residual: GenericPatch
    tensors: Annotated[list[TensorSegment], Field(max_length=1 << 20)]


FileEntry = Annotated[SameFile | FullFile | GenericFile | TensorFile, Field(discriminator="kind")]


class Member(_Strict):
    """A ZIP member rebuilt from `file`, deflated with these zlib settings, placed at `skeleton_offset`.

    `strategy` and `chunk_size` (independent deflate chunks, `edge_shared.delta.deflate`) came after the
    first deltas; their defaults are what those deltas meant: one stream, default strategy.
    """

    file: Annotated[str, Field(min_length=1, max_length=1024)]
    skeleton_offset: Size
    compressed_size: Size
    method: Literal[0, 8]
    level: Annotated[int, Field(ge=0, le=9)] = 6
    mem_level: Annotated[int, Field(ge=1, le=9)] = 8
    strategy: Strategy = 0
    chunk_size: Annotated[int, Field(ge=MIN_CHUNK, le=64 * 1024 * 1024)] | None = None

    @property
    def deflate(self) -> DeflateSettings:
        return DeflateSettings(self.level, self.mem_level, self.strategy, self.chunk_size)


class TargetZip(_Strict):
    version: Annotated[str, Field(max_length=128)]
    sha256: Sha256Hex
    size: Size


class DeltaHeader(_Strict):
    """Everything the applier needs besides the payload bytes."""

    format: Literal["emdelta/1"]
    base_version: Annotated[str, Field(max_length=128)]
    target: TargetZip
    skeleton: BlobRef
    skeleton_size: Size
    members: Annotated[list[Member], Field(max_length=100_000)]
    files: Annotated[list[FileEntry], Field(max_length=100_000)]
    payload_size: Size


def encode(header: DeltaHeader, payload: bytes) -> bytes:
    """The delta file's bytes."""
    if header.payload_size != len(payload):
        raise ValueError("payload_size does not match the payload")
    text = header.model_dump_json(exclude_none=False).encode("utf-8")
    return PREAMBLE.pack(MAGIC, CONTAINER_VERSION, len(text)) + text + payload


@dataclass(frozen=True)
class OpenedDelta:
    """A validated header and where the payload starts in the file."""

    header: DeltaHeader
    payload_offset: int


def read_header(handle: BinaryIO, file_size: int, limits: DeltaLimits) -> OpenedDelta:
    """Read and validate the preamble and header; the file must end exactly at the payload's end."""
    preamble = handle.read(PREAMBLE.size)
    if len(preamble) < PREAMBLE.size:
        raise DeltaFormatError("truncated delta: shorter than its preamble")
    magic, version, header_length = PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise DeltaFormatError("not a package delta (bad magic)")
    if version != CONTAINER_VERSION:
        raise UnsupportedDeltaVersionError(f"delta container version {version} is not supported (need 1)")
    if header_length > limits.max_header_bytes:
        raise DeltaFormatError(f"delta header of {header_length} bytes exceeds {limits.max_header_bytes}")
    raw = handle.read(header_length)
    if len(raw) < header_length:
        raise DeltaFormatError("truncated delta: header cut short")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DeltaFormatError("delta header is not UTF-8 JSON") from exc
    if isinstance(document, dict) and document.get("format") != FORMAT:
        raise UnsupportedDeltaVersionError(
            f"delta format {str(document.get('format'))[:40]!r} is not supported"
        )
    try:
        header = DeltaHeader.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise DeltaFormatError(f"malformed delta header at {where}: {first['msg']}") from None
    payload_offset = PREAMBLE.size + header_length
    if file_size != payload_offset + header.payload_size:
        kind = "truncated delta" if file_size < payload_offset + header.payload_size else "trailing bytes"
        raise DeltaFormatError(
            f"{kind}: file is {file_size} bytes, header promises {payload_offset + header.payload_size}"
        )
    return OpenedDelta(header, payload_offset)


def read_blob(handle: BinaryIO, opened: OpenedDelta, ref: BlobRef) -> bytes:
    """The bytes of one payload reference, bounds-checked."""
    if ref.offset + ref.length > opened.header.payload_size:
        raise DeltaFormatError("a blob reference points past the payload")
    handle.seek(opened.payload_offset + ref.offset)
    data = handle.read(ref.length)
    if len(data) != ref.length:
        raise DeltaFormatError("truncated delta: blob cut short")
    return data
