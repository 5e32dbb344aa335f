"""Fixtures of the reliability suite: Azurite over HTTPS (one per worker), a fresh model volume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_tools.azurite import Azurite


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models-volume"
    root.mkdir()
    return root
