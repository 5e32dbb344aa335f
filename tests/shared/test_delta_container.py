"""Strict parsing of untrusted delta files: magic, version, truncation, header bounds; and the byte codecs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_shared.delta import (
    DeltaFormatError,
    DeltaIntegrityError,
    DeltaLimits,
    UnsupportedDeltaVersionError,
    apply_delta,
    read_delta_header,
)
from edge_shared.delta.codecs import generic_apply, join_planes, split_planes, xor_bytes, zstd_decompress
from edge_shared.delta.container import MAGIC, PREAMBLE
from tests.shared.test_delta_apply import FAMILIES, install_base, write_delta


@pytest.fixture
def delta(tmp_path: Path) -> Path:
    install_base(FAMILIES["yolo-onnx"].base_zip, tmp_path / "base")
    return write_delta(tmp_path, FAMILIES["yolo-onnx"])


def _apply(delta: Path, limits: DeltaLimits | None = None) -> None:
    apply_delta(delta, delta.parent / "base", delta.parent / "out.zip", limits=limits)


def test_bad_magic(delta: Path) -> None:
    delta.write_bytes(b"PK\x03\x04" + delta.read_bytes()[4:])
    with pytest.raises(DeltaFormatError, match="bad magic"):
        _apply(delta)


def test_unsupported_container_version(delta: Path) -> None:
    data = delta.read_bytes()
    _, _, length = PREAMBLE.unpack(data[: PREAMBLE.size])
    delta.write_bytes(PREAMBLE.pack(MAGIC, 2, length) + data[PREAMBLE.size :])
    with pytest.raises(UnsupportedDeltaVersionError, match="version 2"):
        _apply(delta)


def test_unsupported_format_string(delta: Path) -> None:
    data = delta.read_bytes()
    _, _, length = PREAMBLE.unpack(data[: PREAMBLE.size])
    header = json.loads(data[PREAMBLE.size : PREAMBLE.size + length])
    header["format"] = "emdelta/2"
    text = json.dumps(header).encode()
    delta.write_bytes(PREAMBLE.pack(MAGIC, 1, len(text)) + text + data[PREAMBLE.size + length :])
    with pytest.raises(UnsupportedDeltaVersionError, match="emdelta/2"):
        _apply(delta)


@pytest.mark.parametrize("keep", [0, 5, PREAMBLE.size, PREAMBLE.size + 10, -1])
def test_truncated_delta(delta: Path, keep: int) -> None:
    data = delta.read_bytes()
    delta.write_bytes(data[:keep])
    with pytest.raises(DeltaFormatError, match="truncated"):
        _apply(delta)
    assert not (delta.parent / "out.zip").exists()


def test_trailing_bytes_are_refused(delta: Path) -> None:
    delta.write_bytes(delta.read_bytes() + b"\0")
    with pytest.raises(DeltaFormatError, match="trailing"):
        _apply(delta)


def test_header_over_the_limit_is_refused_before_reading_it(delta: Path) -> None:
    with pytest.raises(DeltaFormatError, match="exceeds"):
        _apply(delta, DeltaLimits(max_header_bytes=64))


def test_output_over_the_limit_is_refused(delta: Path) -> None:
    with pytest.raises(DeltaFormatError, match="more than"):
        _apply(delta, DeltaLimits(max_output_bytes=1000))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.update(extra_key=1), "extra_key"),
        (lambda h: h["target"].update(size="12"), "target.size"),
        (lambda h: h["skeleton"].update(offset=-1), "skeleton.offset"),
        (lambda h: h["files"][0].update(kind="xdelta"), "files.0"),
        (lambda h: h["members"][0].update(level=12), "members.0.level"),
        (lambda h: h["members"][0].update(strategy=5), "members.0.strategy"),
        (lambda h: h["members"][0].update(chunk_size=100), "members.0.chunk_size"),
    ],
)
def test_malformed_headers_name_the_bad_field(delta: Path, mutate: object, message: str) -> None:
    data = delta.read_bytes()
    _, _, length = PREAMBLE.unpack(data[: PREAMBLE.size])
    header = json.loads(data[PREAMBLE.size : PREAMBLE.size + length])
    mutate(header)  # type: ignore[operator]
    text = json.dumps(header).encode()
    delta.write_bytes(PREAMBLE.pack(MAGIC, 1, len(text)) + text + data[PREAMBLE.size + length :])
    with pytest.raises(DeltaFormatError, match=message.replace(".", r"\.")):
        read_delta_header(delta)


def test_header_that_is_not_json(delta: Path) -> None:
    delta.write_bytes(PREAMBLE.pack(MAGIC, 1, 4) + b"\xff{[}")
    with pytest.raises(DeltaFormatError, match="JSON"):
        read_delta_header(delta)


def test_blob_reference_past_the_payload(delta: Path) -> None:
    data = delta.read_bytes()
    _, _, length = PREAMBLE.unpack(data[: PREAMBLE.size])
    header = json.loads(data[PREAMBLE.size : PREAMBLE.size + length])
    header["skeleton"]["length"] = header["payload_size"] + 1
    text = json.dumps(header).encode()
    delta.write_bytes(PREAMBLE.pack(MAGIC, 1, len(text)) + text + data[PREAMBLE.size + length :])
    with pytest.raises(DeltaFormatError, match="past the payload"):
        _apply(delta)


def test_skeleton_larger_than_the_zip_is_refused_before_decoding(delta: Path) -> None:
    data = delta.read_bytes()
    _, _, length = PREAMBLE.unpack(data[: PREAMBLE.size])
    header = json.loads(data[PREAMBLE.size : PREAMBLE.size + length])
    header["skeleton_size"] = header["target"]["size"] + 1
    text = json.dumps(header).encode()
    delta.write_bytes(PREAMBLE.pack(MAGIC, 1, len(text)) + text + data[PREAMBLE.size + length :])
    with pytest.raises(DeltaFormatError, match="skeleton"):
        _apply(delta)


@pytest.mark.parametrize("item_size", [1, 2, 4, 8])
def test_byte_planes_round_trip(item_size: int) -> None:
    data = bytes(range(256)) * 3
    data = data[: len(data) - len(data) % item_size]
    planes = split_planes(data, item_size)
    assert join_planes(planes, item_size) == data
    if item_size > 1:
        assert planes[: len(data) // item_size] == data[::item_size]


def test_planes_that_are_not_whole_elements_are_refused() -> None:
    with pytest.raises(DeltaFormatError):
        join_planes(b"abc", 2)


def test_xor_is_its_own_inverse() -> None:
    a, b = bytes(range(200)), bytes(reversed(range(200)))
    assert xor_bytes(xor_bytes(a, b), b) == a
    with pytest.raises(ValueError, match="different lengths"):
        xor_bytes(a, b[:-1])


def test_zstd_frame_of_another_size_is_refused() -> None:
    import zstandard

    frame = zstandard.ZstdCompressor().compress(b"x" * 100)
    with pytest.raises(DeltaIntegrityError, match="expected 99"):
        zstd_decompress(frame, 99)
    with pytest.raises(DeltaIntegrityError, match="expected 101"):
        zstd_decompress(frame, 101)
    with pytest.raises(DeltaIntegrityError, match="corrupt"):
        zstd_decompress(b"\x28\xb5\x2f\xfd" + b"\xff" * 20, 100)


def test_unknown_generic_codec_is_refused() -> None:
    with pytest.raises(DeltaFormatError, match="unknown generic codec"):
        generic_apply("xdelta3", b"", b"", 0)
