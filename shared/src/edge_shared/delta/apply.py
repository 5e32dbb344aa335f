"""Rebuild the exact target ZIP from an installed base version and an `emdelta/1` delta.

Blocking work (call through `asyncio.to_thread`). Members are handled one at a time in ZIP order: each
file is reconstructed, checked against its SHA-256, deflated with the recorded zlib settings (chunked
members on `DeltaLimits.deflate_threads` threads) and written into the ZIP at once, so memory stays near
base model + target model. The rebuilt ZIP's SHA-256 must be the one the delta names (and the caller's,
when given): the loader can then verify, unpack and install it exactly as a downloaded ZIP, signature
included.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edge_shared.delta.codecs import generic_apply, join_planes, xor_bytes, zstd_decompress
from edge_shared.delta.container import (
    DeltaHeader,
    DeltaLimits,
    FileEntry,
    FullFile,
    GenericFile,
    Member,
    OpenedDelta,
    SameFile,
    TensorFile,
    read_blob,
    read_header,
)
from edge_shared.delta.deflate import deflate_pieces
from edge_shared.delta.errors import DeltaBaseError, DeltaFormatError, DeltaIntegrityError
from edge_shared.errors import UnsafePathError
from edge_shared.repository import resolve_under

logger = logging.getLogger(__name__)
_Emit = Callable[[bytes | memoryview], None]


@dataclass(frozen=True)
class ApplyResult:
    """What was rebuilt: the ZIP's digest and size, each file's digest, and how each was carried."""

    zip_path: Path
    zip_sha256: str
    zip_size: int
    delta_size: int
    files: dict[str, str]
    kinds: dict[str, str]
    deflate_seconds: float
    """Of the apply's time, what went into re-deflating members (the price of an exact ZIP)."""


def read_delta_header(delta_path: Path, limits: DeltaLimits | None = None) -> DeltaHeader:
    """Validate a delta file's container and header without applying it (cheap: no payload read)."""
    limits = limits or DeltaLimits()
    with delta_path.open("rb") as handle:
        return read_header(handle, os.fstat(handle.fileno()).st_size, limits).header


def apply_delta(
    delta_path: Path,
    base_dir: Path,
    out_zip: Path,
    *,
    base_version: str | None = None,
    base_files: Mapping[str, str] | None = None,
    expected_zip_sha256: str | None = None,
    limits: DeltaLimits | None = None,
) -> ApplyResult:
    """Write the target ZIP to `out_zip` (removed again on any failure) and return its digests.

    `base_dir` is the installed base version's folder; `base_files` its manifest's `files` (name →
    sha256), used to refuse a wrong base before reading anything. Raises a `DeltaError` subclass.
    """
    limits = limits or DeltaLimits()
    with delta_path.open("rb") as handle:
        opened = read_header(handle, os.fstat(handle.fileno()).st_size, limits)
        header = opened.header
        _check_header(header, base_version, base_files, expected_zip_sha256, limits)
        try:
            result = _rebuild(handle, opened, base_dir, out_zip, limits)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out_zip.unlink()
            raise
    logger.info(
        "delta applied",
        extra={
            "base_version": header.base_version,
            "version": header.target.version,
            "bytes": result.zip_size,
        },
    )
    return ApplyResult(
        zip_path=out_zip,
        zip_sha256=result.zip_sha256,
        zip_size=result.zip_size,
        delta_size=opened.payload_offset + header.payload_size,
        files=result.files,
        kinds={entry.name: entry.kind for entry in header.files},
        deflate_seconds=result.deflate_seconds,
    )


def _check_header(
    header: DeltaHeader,
    base_version: str | None,
    base_files: Mapping[str, str] | None,
    expected_zip_sha256: str | None,
    limits: DeltaLimits,
) -> None:
    if base_version is not None and header.base_version != base_version:
        raise DeltaBaseError(f"delta is from base {header.base_version!r}, not {base_version!r}")
    if expected_zip_sha256 is not None and header.target.sha256 != expected_zip_sha256.lower():
        raise DeltaIntegrityError("delta rebuilds another ZIP than the desired ContentSHA256")
    if header.target.size > limits.max_output_bytes:
        raise DeltaFormatError(
            f"delta rebuilds {header.target.size} bytes, more than {limits.max_output_bytes}"
        )
    if header.skeleton_size > header.target.size:
        raise DeltaFormatError("delta skeleton is larger than the ZIP it rebuilds")
    names = [entry.name for entry in header.files]
    if len(set(names)) != len(names):
        raise DeltaFormatError("delta names a file twice")
    if sum(entry.size for entry in header.files) > limits.max_output_bytes:
        raise DeltaFormatError("delta files add up to more than the output limit")
    if sorted(member.file for member in header.members) != sorted(names):
        raise DeltaFormatError("delta members and files do not correspond one to one")
    if base_files is not None:
        for entry in header.files:
            needed = _base_need(entry)
            if needed is not None and base_files.get(needed[0]) != needed[1]:
                raise DeltaBaseError(f"base version has no file {needed[0]!r} with the expected digest")


def _base_need(entry: FileEntry) -> tuple[str, str] | None:
    """(name, sha256) of the base file an entry reads, if any."""
    if isinstance(entry, SameFile):
        return entry.base_name, entry.sha256
    if isinstance(entry, GenericFile | TensorFile):
        return entry.base_name, entry.base_sha256
    return None


@dataclass(frozen=True)
class _Rebuilt:
    zip_sha256: str
    zip_size: int
    files: dict[str, str]
    deflate_seconds: float


def _rebuild(
    handle: BinaryIO, opened: OpenedDelta, base_dir: Path, out_zip: Path, limits: DeltaLimits
) -> _Rebuilt:
    header = opened.header
    skeleton = zstd_decompress(
        read_blob(handle, opened, header.skeleton), header.skeleton_size, max_window_log=limits.max_window_log
    )
    entries = {entry.name: entry for entry in header.files}
    members = sorted(header.members, key=lambda member: member.skeleton_offset)
    digest = hashlib.sha256()
    written = 0
    position = 0
    files: dict[str, str] = {}
    deflate_seconds = 0.0
    with out_zip.open("wb") as out:

        def emit(chunk: bytes | memoryview) -> None:
            nonlocal written
            written += len(chunk)
            if written > header.target.size:
                raise DeltaIntegrityError("rebuilt ZIP grows past the size the delta promises")
            digest.update(chunk)
            out.write(chunk)

        for member in members:
            if member.skeleton_offset < position or member.skeleton_offset > len(skeleton):
                raise DeltaFormatError("member offsets are out of order or past the skeleton")
            emit(memoryview(skeleton)[position : member.skeleton_offset])
            position = member.skeleton_offset
            entry = entries[member.file]
            data = _reconstruct(handle, opened, entry, base_dir, limits)
            files[entry.name] = entry.sha256
            started = time.perf_counter()
            _emit_member(member, data, emit, limits.deflate_threads)
            deflate_seconds += time.perf_counter() - started
            del data
        emit(memoryview(skeleton)[position:])
        out.flush()
        os.fsync(out.fileno())
    if written != header.target.size or digest.hexdigest() != header.target.sha256:
        raise DeltaIntegrityError("rebuilt ZIP does not match the target's SHA-256")
    return _Rebuilt(digest.hexdigest(), written, files, deflate_seconds)


def _emit_member(member: Member, data: bytes | bytearray, emit: _Emit, workers: int) -> None:
    produced = 0
    if member.method == 0:
        produced = len(data)
        emit(memoryview(data))
    else:
        for piece in deflate_pieces(data, member.deflate, workers):
            produced += len(piece)
            emit(piece)
    if produced != member.compressed_size:
        raise DeltaIntegrityError(f"{member.file}: recompressed size differs from the target ZIP's")


def _reconstruct(
    handle: BinaryIO, opened: OpenedDelta, entry: FileEntry, base_dir: Path, limits: DeltaLimits
) -> bytes | bytearray:
    data: bytes | bytearray
    if isinstance(entry, FullFile):
        data = zstd_decompress(
            read_blob(handle, opened, entry.blob), entry.size, max_window_log=limits.max_window_log
        )
    elif isinstance(entry, SameFile):
        data = _read_base(base_dir, entry.base_name, entry.sha256)
    elif isinstance(entry, GenericFile):
        base = _read_base(base_dir, entry.base_name, entry.base_sha256)
        patch = read_blob(handle, opened, entry.patch.blob)
        data = generic_apply(entry.patch.codec, base, patch, entry.size, max_window_log=limits.max_window_log)
    else:
        data = _apply_tensor_delta(handle, opened, entry, base_dir, limits)
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise DeltaIntegrityError(f"{entry.name}: reconstructed file does not match its SHA-256")
    return data


def _read_base(base_dir: Path, name: str, sha256: str) -> bytes:
    try:
        path = resolve_under(base_dir, name)
        data = path.read_bytes()
    except UnsafePathError as exc:
        raise DeltaFormatError(f"base file name {name!r} leaves the base folder") from exc
    except OSError as exc:
        raise DeltaBaseError(f"base file {name!r} is missing or unreadable") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DeltaBaseError(f"base file {name!r} is not the one the delta was made from")
    return data


def _apply_tensor_delta(
    handle: BinaryIO, opened: OpenedDelta, entry: TensorFile, base_dir: Path, limits: DeltaLimits
) -> bytearray:
    """Residual by generic patch, tensors by XOR; returns the bytearray itself (no 35 MB copy)."""
    base = _read_base(base_dir, entry.base_name, entry.base_sha256)
    tensors = sorted(entry.tensors, key=lambda tensor: tensor.target_offset)
    base_regions = sorted((tensor.base_offset, tensor.length) for tensor in tensors)
    _check_regions(base_regions, len(base), "base")
    _check_regions([(tensor.target_offset, tensor.length) for tensor in tensors], entry.size, "target")
    kept = []
    cursor = 0
    for offset, length in base_regions:
        kept.append(memoryview(base)[cursor:offset])
        cursor = offset + length
    kept.append(memoryview(base)[cursor:])
    base_residual = b"".join(kept)
    residual_size = entry.size - sum(tensor.length for tensor in tensors)
    residual = generic_apply(
        entry.residual.codec,
        base_residual,
        read_blob(handle, opened, entry.residual.blob),
        residual_size,
        max_window_log=limits.max_window_log,
    )
    del base_residual, kept
    out = bytearray(entry.size)
    position = residual_position = 0
    for tensor in tensors:
        gap = tensor.target_offset - position
        out[position : tensor.target_offset] = residual[residual_position : residual_position + gap]
        residual_position += gap
        chunk_size = entry.chunk_size - entry.chunk_size % tensor.item_size
        expected_chunks = -(-tensor.length // chunk_size) if tensor.length else 0
        if len(tensor.chunks) != expected_chunks:
            raise DeltaFormatError(
                f"tensor {tensor.name[:80]!r} has {len(tensor.chunks)} chunks, expected {expected_chunks}"
            )
        for index, ref in enumerate(tensor.chunks):
            start = index * chunk_size
            length = min(chunk_size, tensor.length - start)
            planes = zstd_decompress(
                read_blob(handle, opened, ref), length, max_window_log=limits.max_window_log
            )
            base_start = tensor.base_offset + start
            out[tensor.target_offset + start : tensor.target_offset + start + length] = xor_bytes(
                join_planes(planes, tensor.item_size), memoryview(base)[base_start : base_start + length]
            )
        position = tensor.target_offset + tensor.length
    out[position:] = residual[residual_position:]
    if residual_position + (entry.size - position) != len(residual):
        raise DeltaFormatError("tensor layout does not account for the residual bytes")
    return out


def _check_regions(regions: list[tuple[int, int]], size: int, which: str) -> None:
    end = 0
    for offset, length in sorted(regions):
        if offset < end or offset + length > size:
            raise DeltaFormatError(f"tensor regions overlap or leave the {which} file")
        end = offset + length
