"""Class names packed inside a `.tflite` (TF Lite metadata's associated files, an appended ZIP): used
when the package has no label file, ignored when it has one, refused when ambiguous."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from edge_shared.repository import ModelRepository
from edge_tools.fixtures import FixtureCatalog
from inference_module.errors import ModelLoadError
from inference_module.labels import model_labels, parse_labels
from inference_module.metrics import Metrics
from inference_module.runtimes import RuntimeOptions, default_registry
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from tests.inference.helpers import install_model

OPTIONS = RuntimeOptions(pipeline_threads=1)
LABELMAP = "???\nperson\nbicycle\n" + "".join(f"thing {i}\n" for i in range(3, 91))


def with_packed(catalog: FixtureCatalog, members: dict[str, str]) -> bytes:
    """The fixture SSD with `members` appended as TF Lite metadata packs its associated files."""
    model = catalog.path(catalog.model("ssd-lite-1").model_file).read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as packed:
        for name, text in members.items():
            packed.writestr(name, text)
    return model + archive.getvalue()


def test_a_packed_label_file_names_the_classes(catalog: FixtureCatalog, tmp_path: Path) -> None:
    detector = default_registry()["tflite"](
        _write(tmp_path, with_packed(catalog, {"labelmap.txt": LABELMAP})), OPTIONS
    )
    try:
        chosen = model_labels(None, None, detector.metadata)
    finally:
        detector.close()
    assert chosen.source == "TFLite metadata labelmap.txt"
    assert (chosen.names.offset, chosen.names.name(1)) == (1, "person")


def test_a_label_file_in_the_package_wins(catalog: FixtureCatalog, tmp_path: Path) -> None:
    path = _write(tmp_path, with_packed(catalog, {"labelmap.txt": LABELMAP}))
    detector = default_registry()["tflite"](path, OPTIONS)
    try:
        mine = parse_labels("???\n" + "".join(f"mine {i}\n" for i in range(1, 91)))
        chosen = model_labels(mine, tmp_path / "labels.txt", detector.metadata)
    finally:
        detector.close()
    assert (chosen.source, chosen.names.name(1)) == ("label file labels.txt", "mine 1")


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"labelmap.txt": LABELMAP, "vocab.txt": "a\n"}, "found 2: labelmap.txt, vocab.txt"),
        ({"labelmap.txt": "\n\n"}, "holds no labels"),
        ({"labelmap.txt": "???\nperson\n"}, "ends at class id 1 but the model outputs 90 classes"),
    ],
)
def test_ambiguous_empty_or_short_packed_labels_fail_the_load(
    catalog: FixtureCatalog, tmp_path: Path, members: dict[str, str], match: str
) -> None:
    detector = default_registry()["tflite"](_write(tmp_path, with_packed(catalog, members)), OPTIONS)
    try:
        with pytest.raises(ModelLoadError, match=match):
            model_labels(None, None, detector.metadata)
    finally:
        detector.close()


async def test_a_package_without_a_label_file_serves_with_the_packed_names(
    catalog: FixtureCatalog, model_root: Path
) -> None:
    message = install_model(
        model_root, catalog, "ssd-lite-1", model_bytes=with_packed(catalog, {"labelmap.txt": LABELMAP})
    )
    repository = ModelRepository(model_root)
    manifest = repository.read_manifest(message.version)
    assert manifest.labels_file is not None
    (repository.version_dir(message.version) / manifest.labels_file).unlink()
    repository.write_manifest(
        repository.version_dir(message.version), manifest.model_copy(update={"labels_file": None})
    )
    slot = ModelSlot()
    service = ModelService(
        InferenceSettings(model_root=model_root, edgehub=False), slot, Metrics(), default_registry()
    )
    identity = await service.load_current("startup")
    assert identity.labels_source == "TFLite metadata labelmap.txt" and identity.labels_path is None
    assert slot.current is not None and slot.current.labels.name(1) == "person"
    slot.close()


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "detect.tflite"
    path.write_bytes(data)
    return path
