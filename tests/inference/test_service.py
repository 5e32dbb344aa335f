"""Swaps from routed messages and from `current`: validation, path safety, checksums, memory, failures."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from edge_shared.repository import ModelRepository
from edge_tools.bench.hostile_models import declared_input_onnx
from edge_tools.fixtures import FixtureCatalog
from inference_module import service as service_module
from inference_module.announcement import parse_announcement
from inference_module.errors import (
    ChecksumMismatchError,
    InsufficientMemoryError,
    InvalidAnnouncementError,
    ModelLoadError,
    ModelLoadTimeoutError,
    NoCurrentModelError,
    UnsafeModelPathError,
)
from inference_module.memory import rss_bytes
from inference_module.metrics import Metrics
from inference_module.runtimes import default_registry
from inference_module.runtimes.base import RuntimeOptions
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings, SwapMode
from inference_module.slot import ModelSlot
from tests.inference.helpers import GatedDetector, GatedFactory, install_model

GiB = 1024**3


def make_service(
    root: Path, factory: GatedFactory, *, memory: int | None = None, mode: SwapMode = "preserve-availability"
) -> tuple[ModelService, ModelSlot, Metrics]:
    settings = InferenceSettings(model_root=root, edgehub=False, swap_mode=mode)
    slot, metrics = ModelSlot(), Metrics()
    service = ModelService(
        settings, slot, metrics, {"onnx": factory, "tflite": factory}, memory_probe=lambda: memory
    )
    return service, slot, metrics


def failures(metrics: Metrics, source: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "inference_model_swap_failures_total", {"source": source, "code": code}
    )
    return value or 0.0


def announcement(**overrides: object) -> bytes:
    body: dict[str, object] = {
        "local_model_path": "models/v1/model.onnx",
        "local_labelmap_path": "models/v1/labels.txt",
        "version": "v1",
        "file_name": "v1.zip",
        "runtime": "onnx",
        "sha256": "a" * 64,
    }
    body.update(overrides)
    return json.dumps(body).encode()


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "models/../../etc/passwd"])
def test_paths_escaping_the_root_are_refused(model_root: Path, path: str) -> None:
    with pytest.raises(UnsafeModelPathError):
        parse_announcement(announcement(local_model_path=path), ModelRepository(model_root))


def test_a_symlink_leading_out_of_the_root_is_refused(model_root: Path, tmp_path: Path) -> None:
    (model_root / "models").mkdir()
    os.symlink(tmp_path, model_root / "models" / "v1")
    with pytest.raises(UnsafeModelPathError):
        parse_announcement(announcement(), ModelRepository(model_root))


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", announcement(runtime="pytorch"), announcement(sha256="x")]
)
def test_messages_that_are_not_announcements_are_refused(model_root: Path, body: bytes) -> None:
    with pytest.raises(InvalidAnnouncementError):
        parse_announcement(body, ModelRepository(model_root))


def test_the_reference_loaders_two_keys_name_a_model_version_from_its_folder(model_root: Path) -> None:
    body = {"local_model_path": "models/1.2/detect.tflite", "local_labelmap_path": "models/1.2/labelmap.txt"}
    request = parse_announcement(json.dumps(body).encode(), ModelRepository(model_root))
    assert (request.version, request.file_name, request.expected_sha256) == ("1.2", "detect.tflite", None)
    assert request.announced_runtime is None
    assert request.model_path == (model_root / "models/1.2/detect.tflite").resolve()


def test_an_absolute_path_inside_the_root_is_accepted(model_root: Path) -> None:
    body = {
        "local_model_path": f"{model_root}/models/v3/model.onnx",
        "local_labelmap_path": f"{model_root.resolve()}/models/v3/labels.txt",
    }
    request = parse_announcement(json.dumps(body).encode(), ModelRepository(model_root))
    assert request.version == "v3"
    assert request.labels_path == (model_root / "models/v3/labels.txt").resolve()


@pytest.mark.parametrize("path", ["/etc/models/v1/model.onnx", "{root}/../other/v1/model.onnx", "{root}"])
def test_an_absolute_path_outside_the_root_is_refused(model_root: Path, path: str) -> None:
    body = {"local_model_path": path.format(root=model_root), "local_labelmap_path": "models/v1/labels.txt"}
    with pytest.raises(UnsafeModelPathError):
        parse_announcement(json.dumps(body).encode(), ModelRepository(model_root))


def test_two_keys_with_a_model_at_the_root_name_no_version(model_root: Path) -> None:
    body = {"local_model_path": "model.onnx", "local_labelmap_path": "labels.txt"}
    with pytest.raises(InvalidAnnouncementError, match="folder name"):
        parse_announcement(json.dumps(body).encode(), ModelRepository(model_root))


async def test_the_reference_message_loads_the_model(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    body = {
        "local_model_path": str(model_root / "models/v2/model.onnx"),
        "local_labelmap_path": str(model_root / "models/v2/labels.txt"),
    }
    factory = GatedFactory()
    service, slot, _ = make_service(model_root, factory)
    await service.load_current("startup")
    identity = await service.load_announcement(json.dumps(body).encode())
    assert (identity.version, identity.runtime, identity.file_name) == ("v2", "onnx", "model.onnx")
    assert slot.current is not None and slot.current.identity.version == "v2"
    await service.load_announcement(json.dumps(body).encode())
    assert len(factory.detectors) == 2, "a repeated reference message (no sha256) must not reload"


async def test_message_swaps_in_the_announced_model_and_repeats_are_no_ops(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    factory = GatedFactory()
    service, slot, metrics = make_service(model_root, factory)
    await service.load_current("startup")
    identity = await service.load_announcement(message.to_json_bytes())
    assert (identity.version, slot.current and slot.current.identity.version) == ("v2", "v2")
    assert factory.detectors[0].closed.is_set()
    await service.load_announcement(message.to_json_bytes())
    assert len(factory.detectors) == 2, "a repeated announcement must not reload"
    assert metrics.registry.get_sample_value("inference_model_swaps_total", {"source": "message"}) == 1.0


async def test_checksum_mismatch_keeps_the_old_model(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    service, slot, metrics = make_service(model_root, GatedFactory())
    await service.load_current("startup")
    tampered = message.model_copy(update={"sha256": "b" * 64})
    with pytest.raises(ChecksumMismatchError):
        await service.load_announcement(tampered.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v1"
    assert failures(metrics, "message", "checksum_mismatch") == 1.0


async def test_a_model_that_fails_to_load_leaves_the_old_one_serving(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    factory = GatedFactory()
    service, slot, metrics = make_service(model_root, factory)
    await service.load_current("startup")
    factory.fail_next = True
    with pytest.raises(ModelLoadError):
        await service.load_announcement(message.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v1"
    assert not factory.detectors[0].closed.is_set()
    assert failures(metrics, "message", "load_failed") == 1.0


async def test_missing_label_file_is_a_load_failure(model_root: Path, catalog: FixtureCatalog) -> None:
    message = install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    assert message.local_labelmap_path is not None
    (model_root / message.local_labelmap_path).unlink()
    service, slot, _ = make_service(model_root, GatedFactory())
    with pytest.raises(ModelLoadError):
        await service.load_announcement(message.to_json_bytes())
    assert slot.current is None


async def test_runtime_must_match_the_file_extension(model_root: Path, catalog: FixtureCatalog) -> None:
    message = install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    service, _, _ = make_service(model_root, GatedFactory())
    with pytest.raises(ModelLoadError, match="runtime"):
        await service.load_announcement(message.model_copy(update={"runtime": "tflite"}).to_json_bytes())


async def test_nothing_installed_is_reported_as_no_current_model(model_root: Path) -> None:
    service, _, metrics = make_service(model_root, GatedFactory())
    with pytest.raises(NoCurrentModelError):
        await service.load_current("reload")
    assert failures(metrics, "reload", "no_current_model") == 1.0


async def test_two_models_that_do_not_fit_are_refused_in_preserve_availability(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    service, slot, metrics = make_service(model_root, GatedFactory(), memory=1024)
    await service.load_current("startup")  # the first model needs no room beside another
    with pytest.raises(InsufficientMemoryError):
        await service.load_announcement(message.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v1"
    assert failures(metrics, "message", "insufficient_memory") == 1.0


async def test_preserve_memory_unloads_first_then_serves_the_new_model(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    factory = GatedFactory()
    service, slot, metrics = make_service(model_root, factory, memory=1024, mode="preserve-memory")
    await service.load_current("startup")
    await service.load_announcement(message.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v2"
    assert factory.detectors[0].closed.is_set()
    assert metrics.registry.get_sample_value("inference_model_unloads_for_memory_total") == 1.0


async def test_preserve_memory_restores_the_old_model_when_the_new_one_fails(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    factory = GatedFactory()
    service, slot, _ = make_service(model_root, factory, memory=1024, mode="preserve-memory")
    await service.load_current("startup")
    factory.fail_next = True
    with pytest.raises(ModelLoadError):
        await service.load_announcement(message.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v1"
    assert len(factory.detectors) == 2  # v1 loaded again


async def test_enough_memory_loads_beside_the_old_model(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    service, slot, metrics = make_service(model_root, GatedFactory(), memory=4 * GiB, mode="preserve-memory")
    await service.load_current("startup")
    await service.load_announcement(message.to_json_bytes())
    assert slot.current is not None and slot.current.identity.version == "v2"
    assert metrics.registry.get_sample_value("inference_model_unloads_for_memory_total") == 0.0


async def test_a_manifest_naming_a_path_outside_the_root_is_refused(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    manifest_path = model_root / "models" / "v1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model_file"] = "../../../etc/passwd"
    manifest_path.write_text(json.dumps(manifest))
    service, slot, metrics = make_service(model_root, GatedFactory())
    with pytest.raises(UnsafeModelPathError):
        await service.load_current("reload")
    assert slot.current is None
    assert failures(metrics, "reload", "unsafe_path") == 1.0


async def test_a_broken_manifest_means_nothing_loadable(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    (model_root / "models" / "v1" / "manifest.json").write_text("{not json")
    service, _, _ = make_service(model_root, GatedFactory())
    with pytest.raises(NoCurrentModelError, match="cannot be read"):
        await service.load_current("startup")


async def test_unknown_extensions_and_missing_runtimes_are_load_failures(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    message = install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    settings = InferenceSettings(model_root=model_root, edgehub=False)
    only_tflite = ModelService(settings, ModelSlot(), Metrics(), {"tflite": GatedFactory()})
    with pytest.raises(ModelLoadError, match="not available"):
        await only_tflite.load_announcement(message.to_json_bytes())
    (model_root / "models" / "v1" / "model.pt").write_bytes(b"weights")
    renamed = message.model_copy(update={"local_model_path": "models/v1/model.pt"})
    service, _, _ = make_service(model_root, GatedFactory())
    with pytest.raises(ModelLoadError, match="neither"):
        await service.load_announcement(renamed.to_json_bytes())


async def test_preserve_memory_with_both_models_failing_leaves_nothing_serving(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    factory = GatedFactory()
    service, slot, metrics = make_service(model_root, factory, memory=1024, mode="preserve-memory")
    await service.load_current("startup")
    (model_root / "models" / "v1" / "labels.txt").unlink()  # the old model can no longer be rebuilt
    factory.fail_next = True
    with pytest.raises(ModelLoadError):
        await service.load_announcement(message.to_json_bytes())
    assert slot.current is None
    assert (
        metrics.registry.get_sample_value("inference_active_model_info", {"version": "v1", "runtime": "onnx"})
        is None
    )


def unblock_readers(fifo: Path) -> None:
    """Open the write end once, so that a reader stuck opening the FIFO gets EOF (test cleanup)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # no reader is waiting: nothing to unblock


@pytest.mark.parametrize("which", ["model", "labels", "model.json", "manifest.json", "current"])
async def test_a_fifo_in_the_model_folder_is_refused_and_frees_the_swap_lock(
    model_root: Path, catalog: FixtureCatalog, which: str
) -> None:
    first = install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    message = install_model(model_root, catalog, "tiny-yolo-2", version="v2")
    directory = model_root / "models" / "v2"
    assert message.local_labelmap_path is not None
    fifo = {
        "model": model_root / message.local_model_path,
        "labels": model_root / message.local_labelmap_path,
        "model.json": directory / "model.json",
        "manifest.json": directory / "manifest.json",
        "current": model_root / "current",
    }[which]
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    settings = InferenceSettings(model_root=model_root, edgehub=False)
    slot = ModelSlot()
    service = ModelService(settings, slot, Metrics(), default_registry(), memory_probe=lambda: None)
    try:
        await service.load_announcement(first.to_json_bytes())
        async with asyncio.timeout(10):
            with pytest.raises(ModelLoadError, match="not a regular file"):
                await service.load_current("reload")
            assert slot.current is not None and slot.current.identity.version == "v1"
            with pytest.raises(ModelLoadError):  # the lock was not kept
                await service.load_current("reload")
    finally:
        unblock_readers(fifo)
        slot.close()


async def test_a_load_that_hangs_times_out_frees_the_lock_and_its_late_model_is_closed(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    gate, built = threading.Event(), threading.Event()
    factory = GatedFactory()
    settings = InferenceSettings(model_root=model_root, edgehub=False, load_timeout_seconds=0.2)
    slot, metrics = ModelSlot(), Metrics()

    def hanging(model_path: Path, options: RuntimeOptions) -> GatedDetector:
        if not gate.wait(timeout=30):
            raise TimeoutError("gate never opened")
        detector = factory(model_path, options)
        built.set()
        return detector

    service = ModelService(settings, slot, metrics, {"onnx": hanging}, memory_probe=lambda: None)
    try:
        async with asyncio.timeout(10):
            with pytest.raises(ModelLoadTimeoutError):
                await service.load_current("startup")
            with pytest.raises(ModelLoadTimeoutError, match="still running"):
                await service.load_current("reload")  # answered at once: the lock is free
            assert failures(metrics, "reload", "load_timeout") == 1.0
            gate.set()
            assert await asyncio.to_thread(built.wait, 10)
            (late,) = factory.detectors
            assert await asyncio.to_thread(late.closed.wait, 10)  # closed, never installed
            assert slot.current is None
            identity = await service.load_current("reload")
            assert identity.version == "v1" and slot.current is not None
    finally:
        gate.set()
        slot.close()


def real_service(root: Path, memory: int | None) -> tuple[ModelService, ModelSlot, Metrics]:
    settings = InferenceSettings(model_root=root, edgehub=False, swap_memory_reserve_bytes=0)
    slot, metrics = ModelSlot(), Metrics()
    return (
        ModelService(settings, slot, metrics, default_registry(), memory_probe=lambda: memory),
        slot,
        metrics,
    )


@pytest.mark.parametrize(("model_id", "fits", "short"), [("tiny-yolo-1", 256, 32), ("ssd-lite-1", 32, 4)])
async def test_the_tensors_a_model_declares_must_fit_before_any_is_allocated(
    model_root: Path, catalog: FixtureCatalog, model_id: str, fits: int, short: int
) -> None:
    """Declared input × INFERENCE_MODEL_ACTIVATION_FACTOR × pipeline threads, against what is free."""
    install_model(model_root, catalog, model_id, version="v1")
    service, slot, metrics = real_service(model_root, short * 1024 * 1024)
    with pytest.raises(InsufficientMemoryError, match="declares"):
        await service.load_current("startup")  # the first model too: nothing is beside it
    assert slot.current is None
    assert failures(metrics, "startup", "insufficient_memory") == 1.0
    service, slot, _ = real_service(model_root, fits * 1024 * 1024)
    await service.load_current("startup")
    assert slot.current is not None
    slot.close()


async def test_a_tiny_model_declaring_a_huge_input_is_refused_without_allocating_it(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    """The review's attack: 10000×10000 float input (1.2 GB a tensor) in a model of a few kB."""
    install_model(model_root, catalog, "tiny-yolo-1", version="v1", model_bytes=declared_input_onnx(10_000))
    service, slot, _ = real_service(model_root, 4 * GiB)
    before = rss_bytes()
    with pytest.raises(InsufficientMemoryError, match="10000"):
        await service.load_current("startup")
    after = rss_bytes()
    assert slot.current is None
    assert before is not None and after is not None
    assert after - before < 256 * 1024 * 1024  # the 1.2 GB tensor was never allocated


async def test_a_build_gives_freed_memory_back_before_and_after_even_when_it_fails(
    model_root: Path, catalog: FixtureCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    trims: list[int] = []
    monkeypatch.setattr(service_module, "give_back_memory", lambda: trims.append(threading.get_native_id()))
    service, _, _ = make_service(model_root, GatedFactory(fail_next=True))
    with pytest.raises(ModelLoadError):
        await service.load_current("startup")
    assert len(trims) == 2 and threading.get_native_id() not in trims  # on the build thread, not the loop
    await service.load_current("startup")
    assert len(trims) == 4
