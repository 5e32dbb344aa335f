"""Deltas end to end on one `LocalStack`: the real `edge-model publish --delta-from` CLI, Azurite, the
edgeHub simulator, the loader process and the inference process (issue 9)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_shared.repository import MANIFEST_FILE, ModelRepository
from edge_tools.delta.zipscan import read_files, scan_zip
from edge_tools.fixtures import FixtureCatalog, coco_labels_text
from edge_tools.publish.zipwriter import PACK_CHUNK
from edge_tools.stack.demo import wait_until_serving
from edge_tools.stack.stack import LocalStack
from tests.integration.test_system import cli, model_update
from tests.shared.test_delta_apply import weights_model

pytestmark = pytest.mark.integration

WAIT = 60.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("delta-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-model-cache")


def edge_model(stack: LocalStack, cache_dir: Path, *args: str) -> dict[str, Any]:
    """`edge-model publish ... --json` as a user runs it; returns its JSON output."""
    done = cli(stack, "publish", *args, "--json", EDGE_MODEL_CACHE_DIR=str(cache_dir))
    assert done.returncode == 0, done.stderr
    assert "sig=" not in done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def installed_files(stack: LocalStack, version: str) -> dict[str, bytes]:
    folder = ModelRepository(stack.endpoints.model_root).version_dir(version)
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name != MANIFEST_FILE}


def relabelled(zip_path: Path, tmp_path: Path) -> Path:
    """The same package with the first label renamed: only the label file changes."""
    out = io.BytesIO()
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".txt"):
                first, _, rest = data.partition(b"\n")
                data = b"relabelled\n" + rest
                assert first != b"relabelled"
            target.writestr(info, data, compress_type=info.compress_type)
    path = tmp_path / "relabelled.zip"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize(("v1_id", "v2_id"), [("tiny-yolo-1", "tiny-yolo-2"), ("ssd-lite-1", "ssd-lite-2")])
def test_published_delta_installs_and_serves_v2_byte_identical_to_the_full_zip(
    v1_id: str, v2_id: str, stack: LocalStack, catalog: FixtureCatalog, cache_dir: Path
) -> None:
    v1_zip = catalog.path(catalog.model(v1_id).zip_file)
    v2_zip = catalog.path(catalog.model(v2_id).zip_file)
    first = edge_model(stack, cache_dir, str(v1_zip), "--version", v1_id)
    assert first["delta"] is None
    wait_until_serving(stack, v1_id, timeout=WAIT)
    assert model_update(stack)["source"] == "full"

    second = edge_model(stack, cache_dir, str(v2_zip), "--version", v2_id, "--delta-from", v1_id)
    delta = second["delta"]
    assert delta["published"] is True and delta["size"] < v2_zip.stat().st_size
    served = wait_until_serving(stack, v2_id, timeout=WAIT)
    update = model_update(stack)
    assert update["source"] == "delta" and update["bytesDone"] == delta["size"]
    assert installed_files(stack, v2_id) == read_files(v2_zip.read_bytes())
    manifest = ModelRepository(stack.endpoints.model_root).read_manifest(v2_id)
    assert manifest.source == "delta" and served["sha256"] == manifest.model_sha256


def test_label_only_change_travels_in_under_4_kb(
    stack: LocalStack, catalog: FixtureCatalog, cache_dir: Path, tmp_path: Path
) -> None:
    base_zip = catalog.path(catalog.model("tiny-yolo-2").zip_file)
    edge_model(stack, cache_dir, str(base_zip), "--version", "labels-1")
    wait_until_serving(stack, "labels-1", timeout=WAIT)
    new_zip = relabelled(base_zip, tmp_path)
    published = edge_model(
        stack, cache_dir, str(new_zip), "--version", "labels-2", "--delta-from", "labels-1"
    )
    assert published["delta"]["published"] is True and published["delta"]["size"] < 4096
    wait_until_serving(stack, "labels-2", timeout=WAIT)
    update = model_update(stack)
    assert update["source"] == "delta" and update["bytesDone"] == published["delta"]["size"] < 4096
    _, labels, _ = ModelRepository(stack.endpoints.model_root).model_paths("labels-2")
    assert labels is not None and labels.read_text().startswith("relabelled\n")
    model = httpx.get(f"{stack.endpoints.inference_url}/model", timeout=5.0).json()
    assert model["version"] == "labels-2"


def test_folder_published_model_in_chunks_installs_v2_through_a_delta(
    stack: LocalStack, cache_dir: Path, tmp_path: Path
) -> None:
    """A 2.8 MB model zipped by the CLI (three deflate chunks) is rebuilt on the device from a delta."""
    folders = {}
    for version, relative in (("chunked-1", 0.0), ("chunked-2", 1e-3)):
        folder = tmp_path / version / "detector"
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(weights_model(11, params=700_000, relative=relative))
        (folder / "coco_classes.txt").write_text(coco_labels_text())
        folders[version] = folder
    edge_model(stack, cache_dir, str(folders["chunked-1"]), "--version", "chunked-1")
    wait_until_serving(stack, "chunked-1", timeout=WAIT)

    published = edge_model(
        stack, cache_dir, str(folders["chunked-2"]), "--version", "chunked-2", "--delta-from", "chunked-1"
    )
    assert published["delta"]["published"] is True
    assert published["delta"]["files"] == {"model.onnx": "tensor-delta", "coco_classes.txt": "same"}
    recipes = {m.file: m.chunk_size for m in scan_zip((cache_dir / "chunked-2.zip").read_bytes()).members}
    assert recipes == {"model.onnx": PACK_CHUNK, "coco_classes.txt": None}
    served = wait_until_serving(stack, "chunked-2", timeout=WAIT)
    update = model_update(stack)
    assert update["source"] == "delta" and update["bytesDone"] == published["delta"]["size"]
    installed = installed_files(stack, "chunked-2")
    assert installed == {p.name: p.read_bytes() for p in folders["chunked-2"].iterdir()}
    manifest = ModelRepository(stack.endpoints.model_root).read_manifest("chunked-2")
    assert manifest.source == "delta" and served["sha256"] == manifest.model_sha256
