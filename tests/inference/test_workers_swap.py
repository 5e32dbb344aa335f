"""A swap across several workers, from the leader's side: prepared in every peer before any switches,
dropped everywhere when one peer fails, and a memory check that counts a copy per worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_tools.fixtures import FixtureCatalog
from inference_module.announcement import LoadRequest
from inference_module.errors import InferenceError, InsufficientMemoryError, ModelLoadError
from inference_module.metrics import Metrics
from inference_module.service import ModelService
from inference_module.settings import InferenceSettings
from inference_module.slot import ModelSlot
from inference_module.workers.messages import Reply, model_error
from tests.inference.helpers import GatedFactory, install_model


@dataclass
class FakePeers:
    """Records the calls in order; `fail_with` makes `prepare` raise (after its own clean-up)."""

    count: int = 1
    fail_with: Exception | None = None
    calls: list[str] = field(default_factory=list)
    serving_when_committed: list[str | None] = field(default_factory=list)
    slot: ModelSlot | None = None
    hashes: list[str | None] = field(default_factory=list)

    async def prepare(self, request: LoadRequest) -> None:
        self.calls.append(f"prepare {request.version}")
        self.hashes.append(request.expected_sha256)
        if self.fail_with is not None:
            raise self.fail_with

    async def commit(self) -> None:
        current = None if self.slot is None else self.slot.current
        self.serving_when_committed.append(None if current is None else current.identity.version)
        self.calls.append("commit")

    async def abort(self) -> None:
        self.calls.append("abort")


def leader(
    root: Path, factory: GatedFactory, memory: int | None = None
) -> tuple[ModelService, ModelSlot, Metrics]:
    settings = InferenceSettings(model_root=root, edgehub=False, workers=2, swap_memory_reserve_bytes=0)
    slot, metrics = ModelSlot(), Metrics()
    service = ModelService(settings, slot, metrics, {"onnx": factory}, memory_probe=lambda: memory)
    return service, slot, metrics


async def test_every_peer_prepares_before_the_leader_switches_then_commits(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    service, slot, _ = leader(model_root, GatedFactory())
    peers = FakePeers()
    peers.slot = slot
    service.attach_peers(peers)
    try:
        await service.load_current("startup")
        install_model(model_root, catalog, "tiny-yolo-2", version="v2")
        await service.load_current("reload")
        assert peers.calls == ["prepare v1", "commit", "prepare v2", "commit"]
        # The leader switched before telling the peers to: the commits are the last step.
        assert peers.serving_when_committed == ["v1", "v2"]
        # The peers are asked for the very bytes the leader verified.
        assert slot.current is not None and peers.hashes[-1] == slot.current.identity.sha256
    finally:
        slot.close()


async def test_a_peer_that_cannot_prepare_refuses_the_swap_everywhere(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    factory = GatedFactory()
    service, slot, metrics = leader(model_root, factory)
    peers = FakePeers()
    peers.slot = slot
    service.attach_peers(peers)
    told: list[tuple[str, str]] = []

    async def refused(version: str, exc: InferenceError) -> None:
        told.append((version, exc.code))

    service.add_refused_listener(refused)
    try:
        await service.load_current("startup")
        install_model(model_root, catalog, "tiny-yolo-2", version="v2")
        peers.fail_with = ModelLoadError("worker 1: the runtime refused the model")
        with pytest.raises(ModelLoadError):
            await service.load_current("reload")
        assert slot.current is not None and slot.current.identity.version == "v1"
        built_for_v2 = factory.detectors[-1]
        assert built_for_v2.name == "v2" and built_for_v2.closed.is_set()  # the leader's copy is dropped
        assert peers.calls == ["prepare v1", "commit", "prepare v2"]
        assert told == [("v2", "load_failed")]
        value = metrics.registry.get_sample_value(
            "inference_model_swap_failures_total", {"source": "reload", "code": "load_failed"}
        )
        assert value == 1.0
    finally:
        slot.close()


async def test_the_memory_check_counts_a_copy_per_worker(model_root: Path, catalog: FixtureCatalog) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    install_model(model_root, catalog, "tiny-yolo-2", version="v2", make_current=False)
    size = (
        (model_root / "models" / "v2")
        .joinpath(next(p.name for p in (model_root / "models" / "v2").iterdir() if p.suffix == ".onnx"))
        .stat()
        .st_size
    )
    one_copy = int(size * InferenceSettings(model_root=model_root, edgehub=False).swap_memory_factor)
    # Room for one more copy of the model, not for two: one worker could swap, two cannot.
    service, slot, _ = leader(model_root, GatedFactory(), memory=one_copy + one_copy // 2)
    peers = FakePeers(count=1)
    service.attach_peers(peers)
    try:
        await service.load_current("startup")
        (model_root / "current").write_text("v2\n")
        with pytest.raises(InsufficientMemoryError):
            await service.load_current("reload")
        assert slot.current is not None and slot.current.identity.version == "v1"
    finally:
        slot.close()
    alone, alone_slot, _ = leader(model_root, GatedFactory(), memory=one_copy + one_copy // 2)
    try:
        await alone.load_current("startup")
        (model_root / "current").write_text("v1\n")
        assert (await alone.load_current("reload")).version == "v1"  # one worker: room for the swap
    finally:
        alone_slot.close()


def test_errors_cross_the_channel_as_their_own_class() -> None:
    reply = Reply.failed(ModelLoadError("the runtime refused it"))
    error = reply.error()
    assert type(error) is ModelLoadError and str(error) == "the runtime refused it"
    assert type(model_error("load_timeout", "slow")).__name__ == "ModelLoadTimeoutError"
    assert type(model_error("no_such_code", "?")).__name__ == "ModelError"


def test_several_workers_refuse_the_unload_first_swap_mode() -> None:
    with pytest.raises(ValueError, match="preserve-availability"):
        InferenceSettings(workers=2, swap_mode="preserve-memory")


async def test_an_unexpected_error_from_the_peers_drops_the_leaders_copy(
    model_root: Path, catalog: FixtureCatalog
) -> None:
    install_model(model_root, catalog, "tiny-yolo-1", version="v1")
    factory = GatedFactory()
    service, slot, _ = leader(model_root, factory)
    peers = FakePeers()
    service.attach_peers(peers)
    try:
        await service.load_current("startup")
        install_model(model_root, catalog, "tiny-yolo-2", version="v2")
        peers.fail_with = RuntimeError("a bug")
        with pytest.raises(RuntimeError):
            await service.load_current("reload")
        assert slot.current is not None and slot.current.identity.version == "v1"
        built_for_v2 = factory.detectors[-1]
        assert built_for_v2.name == "v2" and built_for_v2.closed.is_set()
    finally:
        slot.close()
