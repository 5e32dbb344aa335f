"""Build an `emdelta/1` delta from a base package ZIP to a target package ZIP (docs/delta.md).

Per file of the target: `same` when the base holds identical bytes; otherwise the smallest of `full`
(zstd), `generic-delta` (bsdiff4 or zstd-ref, both measured) and, for model files whose tensors match
the base by name, dtype and shape, `tensor-delta`. When the whole delta is not worth it (more than
`full_threshold` of the target ZIP), the caller is told to ship the full ZIP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Literal

from edge_shared.delta.container import (
    FORMAT,
    BlobRef,
    DeltaHeader,
    FileEntry,
    FullFile,
    GenericFile,
    GenericPatch,
    SameFile,
    TargetZip,
    TensorFile,
    TensorSegment,
    encode,
)
from edge_tools.delta.encode import generic_diff, tensor_chunks, zstd_frame
from edge_tools.delta.tensors import TensorRegion, find_tensors
from edge_tools.delta.zipscan import read_files, scan_zip

FULL_THRESHOLD = 0.85
CHUNK_SIZE = 4 * 1024 * 1024
TENSOR_LEVEL = 9

Put = Callable[[bytes], BlobRef]


@dataclass(frozen=True)
class FileReport:
    """How one file travels: chosen kind, its encoded size, and every candidate's size."""

    name: str
    kind: str
    size: int
    encoded: int
    candidates: dict[str, int | None]


@dataclass(frozen=True)
class DeltaBuild:
    """The delta (also when rejected, for the record) and the decision to ship it or the full ZIP."""

    delta: bytes
    decision: Literal["delta", "full"]
    reason: str
    full_size: int
    files: list[FileReport] = field(default_factory=list)
    verbatim_members: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return len(self.delta) / self.full_size if self.full_size else 1.0


@dataclass(frozen=True)
class _Candidate:
    kind: str
    size: int
    build: Callable[[Put], FileEntry]


def make_delta(
    base_zip: bytes,
    target_zip: bytes,
    *,
    base_version: str,
    target_version: str,
    full_threshold: float = FULL_THRESHOLD,
    chunk_size: int = CHUNK_SIZE,
    tensor_level: int = TENSOR_LEVEL,
    prefer: str | None = None,
) -> DeltaBuild:
    """Diff the files inside two package ZIPs and decide between the delta and the full ZIP.

    `prefer` (tests, comparisons) takes that kind for a file whenever it is a candidate, smaller or not.
    """
    base_files = read_files(base_zip)
    base_by_digest: dict[str, str] = {}
    for name, data in base_files.items():
        base_by_digest.setdefault(hashlib.sha256(data).hexdigest(), name)
    scanned = scan_zip(target_zip)
    payload = bytearray()

    def put(blob: bytes) -> BlobRef:
        ref = BlobRef(offset=len(payload), length=len(blob))
        payload.extend(blob)
        return ref

    skeleton_ref = put(zstd_frame(scanned.skeleton))
    entries: list[FileEntry] = []
    reports: list[FileReport] = []
    for name, data in scanned.files.items():
        digest = hashlib.sha256(data).hexdigest()
        if digest in base_by_digest:
            same_name = name if _digest(base_files.get(name)) == digest else base_by_digest[digest]
            entries.append(
                SameFile(kind="same", name=name, size=len(data), sha256=digest, base_name=same_name)
            )
            reports.append(FileReport(name, "same", len(data), 0, {"same": 0}))
            continue
        candidates = _candidates(name, data, digest, base_files, chunk_size, tensor_level)
        preferred = [c for c in candidates if c.kind == prefer]
        best = preferred[0] if preferred else min(candidates, key=lambda c: c.size)
        before = len(payload)
        entries.append(best.build(put))
        reports.append(
            FileReport(
                name, best.kind, len(data), len(payload) - before, {c.kind: c.size for c in candidates}
            )
        )
    header = DeltaHeader(
        format=FORMAT,
        base_version=base_version,
        target=TargetZip(
            version=target_version, sha256=hashlib.sha256(target_zip).hexdigest(), size=len(target_zip)
        ),
        skeleton=skeleton_ref,
        skeleton_size=len(scanned.skeleton),
        members=scanned.members,
        files=entries,
        payload_size=len(payload),
    )
    delta = encode(header, bytes(payload))
    limit = full_threshold * len(target_zip)
    if len(delta) > limit:
        decision: Literal["delta", "full"] = "full"
        reason = f"delta is {len(delta)} bytes, over {full_threshold:.0%} of the {len(target_zip)}-byte ZIP"
    else:
        decision, reason = "delta", f"delta is {len(delta) / len(target_zip):.2%} of the ZIP"
    return DeltaBuild(delta, decision, reason, len(target_zip), reports, scanned.verbatim)


def _digest(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


def _candidates(
    name: str, data: bytes, digest: str, base_files: dict[str, bytes], chunk_size: int, tensor_level: int
) -> list[_Candidate]:
    full = zstd_frame(data)
    out = [
        _Candidate(
            "full",
            len(full),
            lambda put: FullFile(kind="full", name=name, size=len(data), sha256=digest, blob=put(full)),
        )
    ]
    base_name = _base_for(name, base_files)
    if base_name is None:
        return out
    base = base_files[base_name]
    base_digest = hashlib.sha256(base).hexdigest()
    choice = generic_diff(base, data)
    tensor = _tensor_candidate(name, data, digest, base_name, base, base_digest, chunk_size, tensor_level)
    if tensor is not None:
        out.append(tensor)
    if choice is None:
        return out

    def build_generic(put: Put) -> FileEntry:
        return GenericFile(
            kind="generic-delta", name=name, size=len(data), sha256=digest, base_name=base_name,
            base_sha256=base_digest,
            patch=GenericPatch(codec=choice.codec, blob=put(choice.patch), comparison=choice.comparison),
        )  # fmt: skip

    out.append(_Candidate("generic-delta", len(choice.patch), build_generic))
    return out


def _base_for(name: str, base_files: dict[str, bytes]) -> str | None:
    """The base file to diff against: same name, else the one file with the same suffix (a renamed model)."""
    if name in base_files:
        return name
    suffix = PurePosixPath(name).suffix.lower()
    same_suffix = [n for n in base_files if PurePosixPath(n).suffix.lower() == suffix]
    return same_suffix[0] if len(same_suffix) == 1 else None


def _match(target: list[TensorRegion], base: list[TensorRegion]) -> list[tuple[TensorRegion, TensorRegion]]:
    by_key: dict[tuple[str, int, tuple[int, ...]], TensorRegion] = {}
    for region in base:
        by_key.setdefault(region.key, region)
    pairs = []
    for region in target:
        found = by_key.pop(region.key, None)
        if found is not None and found.length == region.length and found.item_size == region.item_size:
            pairs.append((region, found))
    return pairs


def _item_size(size: int) -> Literal[1, 2, 4, 8]:
    sizes: dict[int, Literal[1, 2, 4, 8]] = {1: 1, 2: 2, 4: 4, 8: 8}
    if size in sizes:
        return sizes[size]
    raise ValueError(f"unsupported element size {size}")


def _without(data: bytes, regions: list[tuple[int, int]]) -> bytes:
    parts, cursor = [], 0
    for offset, length in sorted(regions):
        parts.append(data[cursor:offset])
        cursor = offset + length
    parts.append(data[cursor:])
    return b"".join(parts)


def _tensor_candidate(
    name: str,
    data: bytes,
    digest: str,
    base_name: str,
    base: bytes,
    base_digest: str,
    chunk_size: int,
    level: int,
) -> _Candidate | None:
    pairs = _match(find_tensors(name, data), find_tensors(base_name, base))
    if not pairs:
        return None
    residual = generic_diff(
        _without(base, [(b.offset, b.length) for _, b in pairs]),
        _without(data, [(t.offset, t.length) for t, _ in pairs]),
    )
    if residual is None:
        return None
    encoded = [
        (t, b, tensor_chunks(base[b.offset : b.offset + b.length], data[t.offset : t.offset + t.length],
                             t.item_size, chunk_size, level=level))
        for t, b in pairs
    ]  # fmt: skip
    size = len(residual.patch) + sum(len(frame) for _, _, frames in encoded for frame in frames)

    def build(put: Put) -> FileEntry:
        tensors = [
            TensorSegment(
                name=t.name,
                target_offset=t.offset,
                base_offset=b.offset,
                length=t.length,
                item_size=_item_size(t.item_size),
                chunks=[put(frame) for frame in frames],
            )  # fmt: skip
            for t, b, frames in encoded
        ]
        return TensorFile(
            kind="tensor-delta", name=name, size=len(data), sha256=digest, base_name=base_name,
            base_sha256=base_digest, chunk_size=chunk_size,
            residual=GenericPatch(codec=residual.codec, blob=put(residual.patch),
                                  comparison=residual.comparison),
            tensors=tensors,
        )  # fmt: skip

    return _Candidate("tensor-delta", size, build)
