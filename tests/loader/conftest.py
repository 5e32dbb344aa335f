"""Loader test fixtures: model ZIPs, settings, a manual clock, Azurite over HTTPS, the fault proxy."""

from __future__ import annotations

import asyncio
import io
import os
import ssl
import stat
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Unpack

import httpx
import pytest

from edge_shared.desired import DesiredFields, desired_patch
from edge_tools.azurite import Azurite
from edge_tools.faultproxy import FaultProxy
from edge_tools.fixtures import build_ssd_tflite, build_yolo_onnx, digests, ssd_labelmap_text
from loader_module.edge import make_http_client
from loader_module.settings import LoaderSettings

#: The zoo's 91-line labelmap (`???` first): covers both fixture models' classes (80 and 90), as the
#: inference module requires of a label file.
LABELS = ssd_labelmap_text()


@cache
def onnx_model() -> bytes:
    return build_yolo_onnx()


@cache
def tflite_model() -> bytes:
    return build_ssd_tflite()


def zip_bytes(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    """A ZIP with the given members (names are not checked: tests build hostile archives too)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def model_zip(runtime: str = "onnx", *, top_folder: str | None = None, padding: int = 0) -> bytes:
    """A valid model ZIP; `padding` adds an incompressible extra file so downloads take a while."""
    model = onnx_model() if runtime == "onnx" else tflite_model()
    prefix = f"{top_folder}/" if top_folder else ""
    members = {f"{prefix}model.{runtime}": model, f"{prefix}labels.txt": LABELS.encode()}
    if padding:
        members[f"{prefix}padding.bin"] = os.urandom(padding)
    return zip_bytes(members)


def desired_for(data: bytes, url: str, file_name: str, **fields: Unpack[DesiredFields]) -> dict[str, Any]:
    """The reference architecture's three properties (MD5 as base64, as Blob reports it) plus `fields`."""
    return desired_patch(file_name, url, **(DesiredFields(content_md5=digests(data).md5_base64) | fields))


def make_settings(root: Path, **overrides: Any) -> LoaderSettings:
    values: dict[str, Any] = {
        "model_root": root,
        "min_free_bytes": 0,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "backoff_jitter": 0.0,
        "download_attempts": 4,
        "progress_interval": 0.0,
        "read_timeout": 5.0,
        "connect_timeout": 5.0,
        # No inference module here: `ready` at once (tests that play its part set a timeout).
        "serve_confirm_timeout": 0.0,
        # Never the environment's proxy: tests that want one say so.
        "https_proxy": None,
        "no_proxy": "",
        **overrides,
    }
    return LoaderSettings.model_validate(values)


class ManualClock:
    """Wall time that moves only when a test says so; `sleep_until` waits for `advance`."""

    def __init__(self) -> None:
        self._now = datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._changed = asyncio.Event()
        self.sleepers = 0
        self.sleeping = asyncio.Event()
        self.sleep_calls = 0
        self._called = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
        self._changed.set()

    async def wait_for_sleep_calls(self, count: int, within: float = 10.0) -> None:
        """Until `sleep_until` has been called `count` times in all."""
        async with asyncio.timeout(within):
            while self.sleep_calls < count:
                self._called.clear()
                await self._called.wait()

    async def sleep_until(self, when: datetime) -> None:
        self.sleep_calls += 1
        self._called.set()
        self.sleepers += 1
        self.sleeping.set()
        try:
            while self._now < when:
                self._changed.clear()
                await self._changed.wait()
        finally:
            self.sleepers -= 1


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy(azurite.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
async def http(azurite: Azurite) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context(cafile=str(azurite.ca_file))
    async with httpx.AsyncClient(verify=context, timeout=httpx.Timeout(2.0)) as client:
        yield client


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models-volume"
    root.mkdir()
    return root


@pytest.fixture
def settings(model_root: Path, azurite: Azurite) -> LoaderSettings:
    """Loader settings for service tests on Azurite (modules override it for other values)."""
    return make_settings(model_root, ca_file=azurite.ca_file, retry_after=60)


@pytest.fixture
async def client(settings: LoaderSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The loader's own HTTP client, trusting Azurite's CA."""
    async with make_http_client(settings) as http:
        yield http
