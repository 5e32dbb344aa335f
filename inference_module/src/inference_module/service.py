"""Model swaps from every source (start-up, routed message, reload): build, warm, switch, report.

Swaps are serialised by one asyncio lock and run their blocking work (hashing, loading, warm-up) in a
thread, so requests keep being served by the old model meanwhile. A swap that fails leaves the old model
serving; the failure is logged, counted in metrics and raised to the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from PIL import Image

from edge_shared.errors import EdgeSharedError, UnsafePathError
from edge_shared.logs import log_context
from edge_shared.reported import Runtime
from edge_shared.repository import MANIFEST_FILE, MODEL_SUFFIXES, ModelRepository
from inference_module.announcement import LoadRequest, parse_announcement
from inference_module.build_thread import build_nice, start_build
from inference_module.errors import (
    ChecksumMismatchError,
    InferenceError,
    InsufficientMemoryError,
    ModelError,
    ModelLoadError,
    ModelLoadTimeoutError,
    NoCurrentModelError,
    UnsafeModelPathError,
)
from inference_module.files import open_regular, require_regular
from inference_module.labels import load_labels, model_labels
from inference_module.memory import available_memory_bytes, give_back_memory, rss_bytes
from inference_module.metrics import Metrics
from inference_module.runtimes.base import DetectorFactory, RuntimeOptions
from inference_module.settings import InferenceSettings
from inference_module.slot import LoadedModel, ModelIdentity, ModelSlot
from inference_module.warmup import exercise, sample_frame

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
SwapSource = Literal["startup", "message", "reload"]
ActiveListener = Callable[[ModelIdentity], Awaitable[None]]
#: Told the version and the error after every swap of a known version that failed.
RefusedListener = Callable[[str, InferenceError], Awaitable[None]]
# After unloading for memory, how long to wait for requests still using the old model.
_DRAIN_TIMEOUT = 30.0


class Peers(Protocol):
    """The other worker processes serving beside this one (`INFERENCE_WORKERS` > 1): every swap is
    prepared in all of them (built and warmed beside their serving model) before any switches."""

    @property
    def count(self) -> int:
        """Workers besides this one that will hold a model: the memory check counts each."""

    async def prepare(self, request: LoadRequest) -> None:
        """Build and warm `request` in every peer; on any failure, drop what the others built and raise
        the `ModelError` (the serving model stays everywhere)."""

    async def commit(self) -> None:
        """Switch every peer to what it prepared."""

    async def abort(self) -> None:
        """Drop what the peers prepared."""


class ModelService:
    """Owns the slot's swaps. Tests inject the runtime registry and the memory probe."""

    def __init__(
        self,
        settings: InferenceSettings,
        slot: ModelSlot,
        metrics: Metrics,
        registry: Mapping[Runtime, DetectorFactory],
        *,
        memory_probe: Callable[[], int | None] = available_memory_bytes,
    ) -> None:
        self._settings = settings
        self._slot = slot
        self._metrics = metrics
        self._registry = registry
        self._memory_probe = memory_probe
        self._repository = ModelRepository(settings.model_root)
        self._swap_lock = asyncio.Lock()
        self._abandoned_loads = 0
        self._listeners: list[ActiveListener] = []
        self._refused_listeners: list[RefusedListener] = []
        self._peers: Peers | None = None
        self._remote_reload: Callable[[], Awaitable[ModelIdentity]] | None = None
        self._options = RuntimeOptions(
            ort_intra_op_threads=settings.ort_intra_op_threads,
            ort_inter_op_threads=settings.ort_inter_op_threads,
            tflite_threads=settings.tflite_threads,
            pipeline_threads=settings.pipeline_threads,
            onnx_input_size=settings.onnx_input_size,
            activation_factor=settings.model_activation_factor,
        )
        self._build_nice = build_nice(settings.load_nice, self._options)
        self._frame: Image.Image | None = None

    def add_listener(self, listener: ActiveListener) -> None:
        """Called with the new identity after every successful swap (e.g. the `ActiveModel` report)."""
        self._listeners.append(listener)

    def add_refused_listener(self, listener: RefusedListener) -> None:
        """Called after every swap of a known version that failed (e.g. the `InferenceStatus` message)."""
        self._refused_listeners.append(listener)

    def attach_peers(self, peers: Peers) -> None:
        """Coordinate every later swap with `peers` (the leading worker of several)."""
        self._peers = peers

    def delegate_reloads(self, reload: Callable[[], Awaitable[ModelIdentity]]) -> None:
        """A following worker: `POST /model/reload` asks the leading worker, which swaps every worker."""
        self._remote_reload = reload

    @property
    def repository(self) -> ModelRepository:
        return self._repository

    @property
    def swap_lock(self) -> asyncio.Lock:
        """Held by every swap; a worker joining takes it to copy the serving model without racing one."""
        return self._swap_lock

    async def build(self, request: LoadRequest) -> LoadedModel:
        """Build and warm `request` beside the serving model, not serving it yet (a following worker's
        half of a coordinated swap); `InsufficientMemoryError` when both do not fit."""
        return await self._build_with_room(request, self._slot.current)

    def serve(self, model: LoadedModel) -> None:
        """Switch to a built model and show it in the metrics. Not counted as a swap: `_swap` counts its
        own, and a following worker's commit is counted by the leader only (metrics are summed over
        workers)."""
        self._slot.install(model)
        self._metrics.set_active(model.identity.version, model.identity.runtime)

    # --- sources ------------------------------------------------------------------------------------
    async def load_current(self, source: SwapSource) -> ModelIdentity:
        """Load the version `current` names (start-up and `POST /model/reload`); no network needed."""
        if self._remote_reload is not None and source == "reload":
            return await self._remote_reload()
        try:
            request = await self._in_thread(self._request_from_current)
        except NoCurrentModelError:
            if source != "startup":  # an empty repository at start-up is normal, not a failure
                self._count_failure(source, NoCurrentModelError("nothing is installed"))
            raise
        except ModelError as exc:
            self._count_failure(source, exc)
            raise
        return await self._swap(request, source, force=True)

    async def load_fallback(self, version: str, *, instead_of: str | None, reason: str) -> ModelIdentity:
        """Load an installed `version` at start because `instead_of` (what `current` names) failed."""
        request = await self._in_thread(self._request_for, version)
        request = replace(request, fallback_from=instead_of, fallback_reason=reason)
        return await self._swap(request, "startup", force=True)

    async def load_announcement(self, data: bytes) -> ModelIdentity:
        """Handle a routed `DLModelOutput` body; a repeat of the serving version is a no-op."""
        try:
            request = parse_announcement(data, self._repository)
        except ModelError as exc:
            self._count_failure("message", exc)
            raise
        return await self._swap(request, "message", force=False)

    async def _in_thread(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Blocking load work on a build thread of its own, at a lower CPU priority than requests
        (`INFERENCE_LOAD_NICE`), with a deadline: a load that hangs must not keep the swap lock. Its
        thread cannot be stopped, so while one is still running no other load starts, and a model it
        builds late is closed instead of served."""
        if self._abandoned_loads:
            raise ModelLoadTimeoutError(
                "a previous load that timed out is still running; try again once it has ended"
            )
        work = start_build(self._build_nice, func, *args, **kwargs)
        try:
            return await asyncio.wait_for(asyncio.shield(work), self._settings.load_timeout_seconds)
        except TimeoutError:
            self._abandoned_loads += 1
            work.add_done_callback(self._abandoned_load_ended)
            raise ModelLoadTimeoutError(
                f"loading took longer than {self._settings.load_timeout_seconds:g} s; abandoned"
            ) from None

    def _abandoned_load_ended(self, work: asyncio.Future[Any]) -> None:
        self._abandoned_loads -= 1
        if work.cancelled():
            return
        if work.exception() is None and isinstance(work.result(), LoadedModel):
            logger.warning("a timed-out load finished late; its model is closed, not served")
            work.result().close()

    # --- the swap ------------------------------------------------------------------------------------
    async def _swap(self, request: LoadRequest, source: SwapSource, *, force: bool) -> ModelIdentity:
        async with self._swap_lock:
            with log_context(model_version=request.version, swap_source=source):
                serving = self._slot.current
                if not force and serving is not None and await self._already_serving(request, serving):
                    logger.info("model already serving; nothing to do")
                    return serving.identity
                try:
                    model = await self._build_with_room(request, serving)
                except ModelError as exc:
                    self._count_failure(source, exc)
                    await self.tell_refused(request.version, exc)
                    raise
                if self._peers is not None:
                    try:
                        # The bytes the leader verified, also for a message that named no SHA-256.
                        await self._peers.prepare(replace(request, expected_sha256=model.identity.sha256))
                    except ModelError as exc:
                        model.close()
                        self._count_failure(source, exc)
                        await self.tell_refused(request.version, exc)
                        raise
                    except BaseException:  # cancelled, or a bug: the built model is not leaked
                        model.close()
                        raise
                self.serve(model)
                if self._peers is not None:
                    await self._peers.commit()
                self._metrics.swaps.labels(source=source).inc()
                logger.info(
                    "model swapped in",
                    extra={
                        "previous_version": serving.identity.version if serving else None,
                        "runtime": model.identity.runtime,
                    },
                )
            for listener in self._listeners:
                try:
                    await listener(model.identity)
                except Exception:
                    logger.exception("active-model listener failed")
            return model.identity

    async def _already_serving(self, request: LoadRequest, serving: LoadedModel) -> bool:
        """Same version and same bytes. A message without `sha256` (the reference loader's) is compared
        by hashing the named file, so repeats of it are no-ops too."""
        if serving.identity.version != request.version:
            return False
        expected = request.expected_sha256
        if expected is None:
            if serving.identity.model_path != request.model_path:
                return False
            try:
                expected = await asyncio.to_thread(file_sha256, request.model_path)
            except ModelLoadError:
                return False  # the build reports the unreadable file properly
        return serving.identity.sha256 == expected

    async def tell_refused(self, version: str, exc: InferenceError) -> None:
        """Tell the refused-model listeners (also used for a serving model that keeps failing)."""
        for listener in self._refused_listeners:
            try:
                await listener(version, exc)
            except Exception:
                logger.exception("refused-model listener failed")

    async def _build_with_room(self, request: LoadRequest, serving: LoadedModel | None) -> LoadedModel:
        """Build the new model beside the old one, or (preserve-memory) after unloading it."""
        if serving is None or self._fits_beside(request):
            return await self._in_thread(self._build, request)
        if self._settings.swap_mode == "preserve-availability":
            raise InsufficientMemoryError(
                "not enough memory to load the new model beside the serving one; "
                "the serving model stays (set INFERENCE_SWAP_MODE=preserve-memory to unload it first)"
            )
        logger.warning("unloading the serving model to make room: 503s until the new one is ready")
        self._metrics.unloads.inc()
        self._metrics.set_active(None, None)
        self._slot.install(None)
        await asyncio.to_thread(serving.closed.wait, _DRAIN_TIMEOUT)
        try:
            return await self._in_thread(self._build, request)
        except ModelError:
            logger.exception("new model failed after unloading the old one; reloading the old one")
            try:
                old = await self._in_thread(self._build, serving.identity.load_request())
            except ModelError:
                logger.exception("the previous model could not be reloaded either; no model is serving")
            else:
                self.serve(old)
            raise

    def _fits_beside(self, request: LoadRequest) -> bool:
        available = self._memory_probe()
        if available is None:
            return True
        try:
            size = request.model_path.stat().st_size
        except OSError:
            return True  # the build reports the missing file properly
        workers = 1 + (self._peers.count if self._peers is not None else 0)  # each holds its copy
        needed = (
            int(size * self._settings.swap_memory_factor) * workers + self._settings.swap_memory_reserve_bytes
        )
        if available >= needed:
            return True
        logger.warning(
            "two models do not fit in memory", extra={"available_bytes": available, "needed_bytes": needed}
        )
        return False

    def _build(self, request: LoadRequest) -> LoadedModel:
        """Blocking: verify, read labels, load and warm the model. Runs on its own build thread.

        Freed heap goes back to the system before (what earlier models left) and after (the warm-up's
        temporaries, or all of a refused model): glibc keeps freed pages in its arenas, and a swap's
        peak was the serving model, the new one and that garbage.
        """
        cpu_started = time.thread_time()
        give_back_memory()
        rss_before = rss_bytes()
        try:
            model, options = self._load_and_warm(request)
        finally:
            give_back_memory()
        rss_after = rss_bytes()
        logger.info(
            "model loaded and warmed",
            extra={
                "memory_budget_bytes": options.memory_budget_bytes,
                "rss_growth_bytes": None
                if rss_before is None or rss_after is None
                else rss_after - rss_before,
                "build_cpu_ms": round((time.thread_time() - cpu_started) * 1000, 1),
            },
        )
        return model

    def _load_and_warm(self, request: LoadRequest) -> tuple[LoadedModel, RuntimeOptions]:
        """The build's steps; also returns the options it loaded with (for the log)."""
        runtime = MODEL_SUFFIXES.get(request.model_path.suffix.lower())
        if runtime is None:
            raise ModelLoadError(f"model file {request.model_path.name!r} is neither .onnx nor .tflite")
        if request.announced_runtime is not None and request.announced_runtime != runtime:
            raise ModelLoadError(
                f"announced runtime {request.announced_runtime!r} does not match the file extension"
            )
        factory = self._registry.get(runtime)
        if factory is None:
            raise ModelLoadError(f"runtime {runtime!r} is not available in this build")
        sha256 = file_sha256(request.model_path)
        if request.expected_sha256 is not None and sha256 != request.expected_sha256:
            raise ChecksumMismatchError(
                f"model file sha256 {sha256} differs from the announced {request.expected_sha256}"
            )
        file_labels = None if request.labels_path is None else load_labels(request.labels_path)
        options = self._options_with_budget(request.model_path)
        try:
            detector = factory(request.model_path, options)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"{runtime} runtime failed to load the model: {exc}") from exc
        try:
            labels = model_labels(file_labels, request.labels_path, detector.metadata)
            exercise(detector, labels.names, request.version, self._sample_frame())
        except ModelError:
            detector.close()
            raise
        identity = ModelIdentity(
            version=request.version,
            file_name=request.file_name,
            runtime=runtime,
            sha256=sha256,
            model_path=request.model_path,
            labels_path=request.labels_path,
            labels_source=labels.source,
            loaded_at=datetime.now(UTC),
            fallback_from=request.fallback_from,
            fallback_reason=request.fallback_reason,
        )
        return LoadedModel(detector, labels.names, identity), options

    def _sample_frame(self) -> Image.Image:
        """The warm-up's camera-like frame, drawn at the first build and kept (1.2 MB): drawing it took
        a fifth of every later build's CPU. Detectors only read their image."""
        if self._frame is None:
            self._frame = sample_frame()
        return self._frame

    def _options_with_budget(self, model_path: Path) -> RuntimeOptions:
        """The runtime options, with what the model's tensors may take: free memory now, less the
        reserve and its weights (file size × INFERENCE_SWAP_MEMORY_FACTOR)."""
        available = self._memory_probe()
        if available is None:
            return self._options
        try:
            weights = int(model_path.stat().st_size * self._settings.swap_memory_factor)
        except OSError:
            weights = 0  # the runtime reports the missing file properly
        budget = available - self._settings.swap_memory_reserve_bytes - weights
        return replace(self._options, memory_budget_bytes=budget)

    def _request_from_current(self) -> LoadRequest:
        try:
            require_regular(self._repository.current_path)
            version = self._repository.current_version()
        except (EdgeSharedError, ValueError) as exc:
            raise NoCurrentModelError(f"the installed model cannot be read: {exc}") from exc
        if version is None:
            raise NoCurrentModelError(f"no model is installed under {self._settings.model_root}")
        return self._request_for(version)

    def _request_for(self, version: str) -> LoadRequest:
        try:
            require_regular(self._repository.version_dir(version) / MANIFEST_FILE)
            model_path, labels_path, manifest = self._repository.model_paths(version)
        except UnsafePathError as exc:
            raise UnsafeModelPathError(f"the manifest names a path outside the root: {exc}") from exc
        except (EdgeSharedError, ValueError, KeyError) as exc:
            raise NoCurrentModelError(f"the installed model cannot be read: {exc}") from exc
        return LoadRequest(
            version=manifest.version,
            file_name=manifest.file_name,
            model_path=model_path,
            labels_path=labels_path,
            expected_sha256=manifest.files.get(manifest.model_file),
            announced_runtime=manifest.runtime,
        )

    def _count_failure(self, source: SwapSource, exc: InferenceError) -> None:
        self._metrics.swap_failures.labels(source=source, code=exc.code).inc()
        logger.error("model swap refused: %s", exc, extra={"code": exc.code, "swap_source": source})


def file_sha256(path: Path) -> str:
    try:
        with open_regular(path) as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise ModelLoadError(f"model file cannot be read: {exc.__class__.__name__}") from exc
