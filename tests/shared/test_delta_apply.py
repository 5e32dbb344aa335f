"""The delta applier: v1→v2 of each fixture family rebuilds the exact ZIP; bad bases and patches fail."""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_shared.delta import (
    DeltaBaseError,
    DeltaError,
    DeltaFormatError,
    DeltaIntegrityError,
    DeltaLimits,
    apply_delta,
    read_delta_header,
)
from edge_shared.delta.container import PREAMBLE
from edge_tools.delta import make_delta
from edge_tools.delta.zipscan import read_files
from edge_tools.fixtures import (
    build_ssd_tflite,
    build_yolo_onnx,
    coco_labels_text,
    make_model_zip,
    ssd_labelmap_text,
)
from edge_tools.publish.zipwriter import PACK_CHUNK, ZipEntry, write_zip


@dataclass(frozen=True)
class Pair:
    base_zip: bytes
    target_zip: bytes


def yolo_zip(variant: str, *, labels: str | None = None, top_folder: str | None = None) -> bytes:
    return make_model_zip(
        build_yolo_onnx(variant),
        "model.onnx",
        labels or coco_labels_text(),
        "coco_classes.txt",
        top_folder=top_folder,
    )


def ssd_zip(variant: str, *, float_input: bool = False) -> bytes:
    return make_model_zip(
        build_ssd_tflite(variant, float_input=float_input),
        "detect.tflite",
        ssd_labelmap_text(),
        "labelmap.txt",
    )


FAMILIES = {
    "yolo-onnx": Pair(yolo_zip("v1"), yolo_zip("v2")),
    "yolo-onnx-M3": Pair(
        make_model_zip(
            build_yolo_onnx("v1", indices_layout="M3"), "m.onnx", coco_labels_text(), "labels.txt"
        ),
        make_model_zip(
            build_yolo_onnx("v2", indices_layout="M3"), "m.onnx", coco_labels_text(), "labels.txt"
        ),
    ),
    "ssd-tflite": Pair(ssd_zip("v1"), ssd_zip("v2")),
    "ssd-tflite-float": Pair(ssd_zip("v1", float_input=True), ssd_zip("v2", float_input=True)),
    "yolo-into-top-folder": Pair(yolo_zip("v1"), yolo_zip("v2", top_folder="tiny-yolo-2")),
}


def install_base(base_zip: bytes, directory: Path) -> dict[str, str]:
    """Unpack like the loader does; returns the manifest's `files` (name → sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, data in read_files(base_zip).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
        files[name] = hashlib.sha256(data).hexdigest()
    return files


def write_delta(tmp_path: Path, pair: Pair) -> Path:
    build = make_delta(pair.base_zip, pair.target_zip, base_version="1", target_version="2")
    path = tmp_path / "delta.emdelta"
    path.write_bytes(build.delta)
    return path


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_delta_v1_to_v2_rebuilds_the_target_zip_byte_for_byte(tmp_path: Path, family: str) -> None:
    pair = FAMILIES[family]
    base_files = install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    out = tmp_path / "out.zip"
    result = apply_delta(
        delta,
        tmp_path / "base",
        out,
        base_version="1",
        base_files=base_files,
        expected_zip_sha256=hashlib.sha256(pair.target_zip).hexdigest(),
    )
    assert out.read_bytes() == pair.target_zip
    assert result.zip_sha256 == hashlib.sha256(pair.target_zip).hexdigest()
    assert result.zip_size == len(pair.target_zip)
    target_files = {n: hashlib.sha256(d).hexdigest() for n, d in read_files(pair.target_zip).items()}
    assert result.files == target_files
    assert result.delta_size == delta.stat().st_size < len(pair.target_zip)


def test_unchanged_label_file_is_carried_as_same(tmp_path: Path) -> None:
    delta = write_delta(tmp_path, FAMILIES["ssd-tflite"])
    kinds = {entry.name: entry.kind for entry in read_delta_header(delta).files}
    assert kinds["labelmap.txt"] == "same"
    assert kinds["detect.tflite"] in {"tensor-delta", "generic-delta", "full"}


def test_tampered_patch_fails_and_leaves_no_output(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    data = bytearray(delta.read_bytes())
    data[-20] ^= 0xFF  # inside the last payload blob
    delta.write_bytes(bytes(data))
    out = tmp_path / "out.zip"
    with pytest.raises(DeltaError):
        apply_delta(delta, tmp_path / "base", out)
    assert not out.exists()


def test_every_flipped_payload_byte_is_caught(tmp_path: Path) -> None:
    pair = FAMILIES["ssd-tflite"]
    install_base(pair.base_zip, tmp_path / "base")
    original = write_delta(tmp_path, pair).read_bytes()
    header_length = PREAMBLE.unpack(original[: PREAMBLE.size])[2]
    start = PREAMBLE.size + header_length
    for position in range(start, len(original), max(1, (len(original) - start) // 40)):
        data = bytearray(original)
        data[position] ^= 0x55
        path = tmp_path / "flipped.emdelta"
        path.write_bytes(bytes(data))
        with pytest.raises(DeltaError):
            apply_delta(path, tmp_path / "base", tmp_path / "out.zip")


def test_wrong_base_is_refused_as_a_base_error(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(yolo_zip("v2"), tmp_path / "other")  # another version's files under the base's names
    delta = write_delta(tmp_path, pair)
    with pytest.raises(DeltaBaseError, match="not the one the delta was made from"):
        apply_delta(delta, tmp_path / "other", tmp_path / "out.zip")


def test_wrong_base_manifest_is_refused_before_reading_files(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    files = install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    wrong = dict.fromkeys(files, "0" * 64)
    with pytest.raises(DeltaBaseError, match="expected digest"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip", base_files=wrong)


def test_missing_base_file_is_a_base_error(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    (tmp_path / "base" / "model.onnx").unlink()
    delta = write_delta(tmp_path, pair)
    with pytest.raises(DeltaBaseError, match="missing"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")


def test_delta_from_another_base_version_is_refused(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    with pytest.raises(DeltaBaseError, match="base '1'"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip", base_version="0.9")


def test_delta_for_another_target_than_desired_is_refused(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    with pytest.raises(DeltaIntegrityError, match="ContentSHA256"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip", expected_zip_sha256="ab" * 32)


def _rewrite_header(delta: Path, edit: dict[str, object] | None = None, **replace: object) -> None:
    data = delta.read_bytes()
    magic, version, length = PREAMBLE.unpack(data[: PREAMBLE.size])
    header = json.loads(data[PREAMBLE.size : PREAMBLE.size + length])
    header.update(replace)
    if edit:
        header.update(edit)
    text = json.dumps(header).encode()
    delta.write_bytes(PREAMBLE.pack(magic, version, len(text)) + text + data[PREAMBLE.size + length :])


def _header(delta: Path) -> dict[str, object]:
    data = delta.read_bytes()
    length = PREAMBLE.unpack(data[: PREAMBLE.size])[2]
    header: dict[str, object] = json.loads(data[PREAMBLE.size : PREAMBLE.size + length])
    return header


def test_recorded_target_digest_is_checked_on_the_rebuilt_zip(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    header = _header(delta)
    target = dict(header["target"])  # type: ignore[call-overload]
    target["sha256"] = "cd" * 32
    _rewrite_header(delta, target=target)
    with pytest.raises(DeltaIntegrityError, match="rebuilt ZIP"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_file_digest_mismatch_names_the_file(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    header = _header(delta)
    files = [dict(f) for f in header["files"]]  # type: ignore[attr-defined]
    for entry in files:
        if entry["kind"] != "same":
            entry["sha256"] = "ef" * 32
    _rewrite_header(delta, files=files)
    with pytest.raises(DeltaIntegrityError, match="model.onnx"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")


def test_base_name_escaping_the_base_folder_is_refused(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    files = [dict(f) for f in _header(delta)["files"]]  # type: ignore[attr-defined]
    for entry in files:
        if entry["kind"] == "same":
            entry["base_name"] = "../secret.txt"
    _rewrite_header(delta, files=files)
    with pytest.raises(DeltaFormatError, match="leaves the base folder"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")


def test_members_that_do_not_match_the_files_are_refused(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    members = [dict(m) for m in _header(delta)["members"]]  # type: ignore[attr-defined]
    members[0]["file"] = "other.bin"
    _rewrite_header(delta, members=members)
    with pytest.raises(DeltaFormatError, match="one to one"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")


def test_wrong_recorded_deflate_level_is_caught(tmp_path: Path) -> None:
    pair = FAMILIES["yolo-onnx"]
    install_base(pair.base_zip, tmp_path / "base")
    delta = write_delta(tmp_path, pair)
    members = [dict(m) for m in _header(delta)["members"]]  # type: ignore[attr-defined]
    for member in members:
        member["level"] = 1
    _rewrite_header(delta, members=members)
    with pytest.raises(DeltaIntegrityError):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")


def test_overlapping_tensor_regions_are_refused(tmp_path: Path) -> None:
    base = make_model_zip(weights_model(1), "model.onnx", "a\n", "labels.txt")
    target = make_model_zip(weights_model(1, relative=1e-3), "model.onnx", "a\n", "labels.txt")
    install_base(base, tmp_path / "base")
    delta = write_delta(tmp_path, Pair(base, target))
    files = [dict(f) for f in _header(delta)["files"]]  # type: ignore[attr-defined]
    tensor_files = [f for f in files if f["kind"] == "tensor-delta"]
    assert tensor_files, "the fine-tuned model should travel as a tensor delta"
    tensors = [dict(t) for t in tensor_files[0]["tensors"]]
    assert len(tensors) >= 2
    tensors[1]["base_offset"] = tensors[0]["base_offset"]
    tensor_files[0]["tensors"] = tensors
    _rewrite_header(delta, files=files)
    with pytest.raises(DeltaFormatError, match="overlap"):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")


def weights_model(seed: int, *, params: int = 300_000, relative: float = 0.0, tweak_seed: int = 0) -> bytes:
    """The YOLO fixture plus three random float32 initializers (optionally fine-tuned by `relative`)."""
    rng = np.random.default_rng(seed)
    model = onnx.load_from_string(build_yolo_onnx("v1"))
    tweak = np.random.default_rng(tweak_seed)
    for index, share in enumerate((0.6, 0.3, 0.1)):
        value = rng.standard_normal(int(params * share)).astype(np.float32)
        if relative:
            value = (value * (1 + relative * tweak.standard_normal(value.shape))).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(value, name=f"layer{index}"))
    return bytes(model.SerializeToString())


def test_bsdiff_size_claim_is_checked_before_allocating() -> None:
    from edge_shared.delta.codecs import bsdiff_apply

    patch = b"BSDIFF40" + struct.pack("<QQQ", 0, 0, 1 << 40)
    with pytest.raises(DeltaIntegrityError, match="another target size"):
        bsdiff_apply(b"base", patch, 10)
    with pytest.raises(DeltaIntegrityError, match="not a bsdiff4 patch"):
        bsdiff_apply(b"base", b"garbage", 10)


@functools.cache
def published_pair() -> Pair:
    """A fine-tuned 3.6 MB model, both ZIPs packed as `edge-model publish <folder>` packs them."""

    def packed(model: bytes) -> bytes:
        return write_zip([ZipEntry("model.onnx", model), ZipEntry("labels.txt", b"person\ncar\n")])

    return Pair(
        packed(weights_model(5, params=900_000)), packed(weights_model(5, params=900_000, relative=1e-3))
    )


@functools.cache
def published_delta() -> bytes:
    pair = published_pair()
    return make_delta(pair.base_zip, pair.target_zip, base_version="1", target_version="2").delta


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_published_zip_with_a_chunked_model_is_rebuilt_exactly_on_any_thread_count(
    tmp_path: Path, threads: int
) -> None:
    pair = published_pair()
    base_files = install_base(pair.base_zip, tmp_path / "base")
    delta = tmp_path / "delta.emdelta"
    delta.write_bytes(published_delta())
    model = next(m for m in read_delta_header(delta).members if m.file == "model.onnx")
    assert (model.strategy, model.chunk_size) == (zlib.Z_RLE, PACK_CHUNK)
    out = tmp_path / "out.zip"
    result = apply_delta(
        delta, tmp_path / "base", out, base_files=base_files, limits=DeltaLimits(deflate_threads=threads)
    )
    assert out.read_bytes() == pair.target_zip
    assert result.kinds["model.onnx"] == "tensor-delta"


@pytest.mark.parametrize(
    "recipe",
    [{"chunk_size": 2 * PACK_CHUNK}, {"chunk_size": None}, {"strategy": zlib.Z_DEFAULT_STRATEGY}],
    ids=["other-chunk-size", "one-stream", "default-strategy"],
)
def test_wrong_recorded_chunking_or_strategy_is_caught(tmp_path: Path, recipe: dict[str, object]) -> None:
    pair = published_pair()
    install_base(pair.base_zip, tmp_path / "base")
    delta = tmp_path / "delta.emdelta"
    delta.write_bytes(published_delta())
    members = [dict(m) for m in _header(delta)["members"]]  # type: ignore[attr-defined]
    for member in members:
        if member["file"] == "model.onnx":
            member.update(recipe)
    _rewrite_header(delta, members=members)
    with pytest.raises(DeltaIntegrityError):
        apply_delta(delta, tmp_path / "base", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()
