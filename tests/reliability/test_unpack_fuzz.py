"""Hypothesis over the archive extractor: mutated and hostile ZIPs raise only the documented errors
(`unsafe_archive`, `invalid_model`, `disk_full`), leave nothing in staging on failure, and never write
a byte outside the staging folder."""

from __future__ import annotations

import os
import tempfile
import warnings
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loader_module.errors import DiskFullError, InvalidModelError, UnsafeArchiveError
from loader_module.failures import classify
from loader_module.unpack import UnpackLimits, unpack_model
from tests.loader.conftest import LABELS, model_zip, zip_bytes

# A failing example is a ZIP of some kB: let hypothesis show it rather than turn its warning into the error.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Generating overly large repr:hypothesis.errors.HypothesisWarning"
)

EXAMPLES = 300
DOCUMENTED = (UnsafeArchiveError, InvalidModelError, DiskFullError)


LIMITS = UnpackLimits(max_members=16, max_unpacked_bytes=8 * 1024 * 1024, min_free_bytes=0)


@cache
def seeds() -> tuple[bytes, ...]:
    """Valid archives to mutate: both runtimes, with and without a top folder."""
    return (model_zip("onnx"), model_zip("tflite", top_folder="m"), model_zip("onnx", top_folder="x"))


@st.composite
def mutated_zips(draw: st.DrawFn) -> bytes:
    """0–4 mutations of a valid archive. Most bytes are deflated data under a CRC, so a mutated archive
    rarely unpacks; zero mutations is the control that shows the extractor accepts what it should."""
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
            if not data:
                break
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at : at + len(chunk)] = chunk
    return bytes(data)


member_names = st.one_of(
    st.sampled_from(["model.onnx", "labels.txt", "m/model.tflite", "m/labels.txt", "model.json"]),
    st.sampled_from(["../evil.txt", "/abs.txt", "C:/win.txt", "a/../../up.txt", "..\\back.txt", "a/./b.txt"]),
    st.sampled_from(["dir/", "LABELS.TXT", "__MACOSX/x", "", "/", "a\\..\\..\\b"]),
    st.text(min_size=1, max_size=20),
)


@st.composite
def hostile_zips(draw: st.DrawFn) -> bytes:
    members = draw(
        st.dictionaries(member_names, st.binary(max_size=64) | st.just(LABELS.encode()), max_size=5)
    )
    links = draw(
        st.dictionaries(
            member_names.filter(lambda n: n not in members),
            st.sampled_from(["/etc/passwd", "../..", "x"]),
            max_size=1,
        )
    )
    with warnings.catch_warnings():
        # Names that collide once zipfile normalises them are hostile input the extractor must refuse.
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        return zip_bytes(members, symlinks=links)


def _snapshot(sandbox: Path) -> set[str]:
    return {p.relative_to(sandbox).as_posix() for p in sandbox.rglob("*") if ".staging" not in p.parts}


def _unpack_checked(data: bytes) -> str:
    """Unpack in a sandbox; check the rules whatever the outcome; return the outcome's name."""
    with tempfile.TemporaryDirectory(prefix="unpack-fuzz-") as name:
        sandbox = Path(name)
        archive = sandbox / "archive.zip"
        archive.write_bytes(data)
        staging = sandbox / ".staging"
        before = _snapshot(sandbox)
        try:
            unpacked = unpack_model(archive, staging, LIMITS)
        except Exception as exc:
            if not isinstance(exc, DOCUMENTED):
                raise
            assert os.listdir(staging) == [], "a refused archive left files in staging"
            assert name not in classify(exc).message, "a device path would be reported"
            outcome = type(exc).__name__
        else:
            assert unpacked.directory.parent == staging
            assert {p.name for p in staging.iterdir()} == {unpacked.directory.name}
            written = {p.relative_to(unpacked.directory).as_posix() for p in unpacked.directory.rglob("*")}
            assert set(unpacked.files) <= written
            assert unpacked.model_file in unpacked.files
            # No label file is legitimate when the model carries its class names.
            assert unpacked.labels_file is None or unpacked.labels_file in unpacked.files
            outcome = "unpacked"
        assert _snapshot(sandbox) == before, "something was written outside staging"
        return outcome


@pytest.fixture(scope="module")
def examples(soak_factor: int) -> int:
    return EXAMPLES * soak_factor


def test_mutated_archives_raise_only_documented_errors(examples: int) -> None:
    outcomes: set[str] = set()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=mutated_zips())
    def check(data: bytes) -> None:
        outcomes.add(_unpack_checked(data))

    check()
    assert {"unpacked", "InvalidModelError"} <= outcomes, outcomes


def test_hostile_member_names_and_links_raise_only_documented_errors(examples: int) -> None:
    outcomes: set[str] = set()

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=hostile_zips())
    def check(data: bytes) -> None:
        outcomes.add(_unpack_checked(data))

    check()
    assert {"UnsafeArchiveError", "InvalidModelError"} <= outcomes, outcomes
