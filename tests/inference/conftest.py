"""Fixtures for the inference module's tests: fixture models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_tools.fixtures import FixtureCatalog, ensure_fixtures

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> FixtureCatalog:
    """The fixture models and images: `build/fixtures` when `make fixtures` made it, else a fresh build."""
    built = REPO_ROOT / "build" / "fixtures"
    if (built / "catalog.json").is_file():
        return ensure_fixtures(built)  # a no-op when up to date; rebuilds what is stale
    return ensure_fixtures(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    root = tmp_path / "models-root"
    root.mkdir()
    return root
