"""Options for the whole test tree: `--long` (soak: more iterations) and `--reliability-seed`.

The reliability suite (`tests/reliability/`) draws its random fault points from one seed printed in
the report header, so any failing run can be replayed exactly with `--reliability-seed N`.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from edge_tools.fixtures import FixtureCatalog, ensure_fixtures
from edge_tools.stack.stack import REPO_ROOT

#: How many times more iterations (and hypothesis examples) a `--long` run makes.
LONG_FACTOR = 10


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help=f"soak run: multiply the reliability suite's iterations by {LONG_FACTOR}",
    )
    parser.addoption(
        "--reliability-seed",
        type=int,
        default=None,
        help="seed for the reliability suite's random fault points (default: a fresh one, printed)",
    )


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own pytest_configure reads --hypothesis-seed
def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and "reliability_seed" in workerinput:
        # An xdist worker takes the controller's seed, so one printed seed replays the whole run.
        config.option.reliability_seed = workerinput["reliability_seed"]
    elif config.getoption("--reliability-seed") is None:
        config.option.reliability_seed = secrets.randbelow(2**32)
    if getattr(config.option, "hypothesis_seed", None) is None:
        # Property tests draw from the same seed, so the printed seed replays them too.
        config.option.hypothesis_seed = str(config.option.reliability_seed)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller side): hand the run's seed to each worker."""
    node.workerinput["reliability_seed"] = node.config.option.reliability_seed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A soak run makes the reliability tests `LONG_FACTOR` times longer: so is their time limit."""
    if not config.getoption("--long"):
        return
    for item in items:
        if "reliability" in item.nodeid.split("/"):
            limit = float(config.getini("timeout") or 300) * LONG_FACTOR
            item.add_marker(pytest.mark.timeout(limit))


def _describe(config: pytest.Config) -> str:
    factor = LONG_FACTOR if config.getoption("--long") else 1
    return f"reliability: seed {config.getoption('--reliability-seed')}, iterations x{factor}"


def pytest_report_header(config: pytest.Config) -> str:
    return _describe(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Also at the end (the header is hidden by `-q`), when reliability tests ran."""
    reports = [r for group in terminalreporter.stats.values() for r in group if hasattr(r, "nodeid")]
    if any("tests/reliability/" in r.nodeid for r in reports):
        terminalreporter.write_line(_describe(config) + " (replay with --reliability-seed)")


@pytest.fixture(scope="session")
def soak_factor(pytestconfig: pytest.Config) -> int:
    """1 normally, `LONG_FACTOR` with `--long`."""
    return LONG_FACTOR if pytestconfig.getoption("--long") else 1


@pytest.fixture(scope="session")
def reliability_seed(pytestconfig: pytest.Config) -> int:
    seed: int = pytestconfig.getoption("--reliability-seed")
    return seed


@pytest.fixture(scope="session")
def catalog() -> FixtureCatalog:
    """The fixture models and images `make fixtures` built (built here when missing or stale)."""
    return ensure_fixtures(REPO_ROOT / "build" / "fixtures")
