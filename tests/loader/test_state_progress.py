"""Persisted loader state and throttled progress."""

from __future__ import annotations

from pathlib import Path

from edge_shared.desired import parse_desired
from loader_module.progress import ProgressThrottle
from loader_module.state import LoaderState, StateStore, UpdateRecord, target_key, url_digest
from tests.loader.conftest import ManualClock

PROPS = {"FileName": "m-1.zip", "DownloadUrl": "https://h/m.zip?sig=SECRETSIG", "ContentMD5": "00" * 16}


def test_state_round_trips_without_the_sas_url(tmp_path: Path) -> None:
    desired = parse_desired(PROPS)
    store = StateStore(tmp_path)
    state = LoaderState(
        update=UpdateRecord(
            target=target_key(desired), version="m-1", file_name="m-1.zip", url_digest=url_digest(desired)
        ),
        announced_version="m-0",
    )
    store.save(state)
    assert store.load() == state
    assert "SECRETSIG" not in store.path.read_text()


def test_a_new_url_for_the_same_bytes_keeps_the_target() -> None:
    first = parse_desired(PROPS)
    second = parse_desired({**PROPS, "DownloadUrl": "https://h/m.zip?sig=OTHER"})
    assert target_key(first) == target_key(second)
    assert url_digest(first) != url_digest(second)


def test_unreadable_state_file_means_clean_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text("{not json")
    assert store.load() == LoaderState()


async def test_progress_is_throttled_but_forced_reports_go_out(clock: ManualClock) -> None:
    published: list[float] = []

    async def publish() -> None:
        published.append(clock.monotonic())

    throttle = ProgressThrottle(clock, 5.0, publish)
    assert await throttle.tick()
    assert not await throttle.tick()
    clock.advance(4.9)
    assert not await throttle.tick()
    await throttle.force()
    clock.advance(5.0)
    assert await throttle.tick()
    assert published == [0.0, 4.9, 9.9]
