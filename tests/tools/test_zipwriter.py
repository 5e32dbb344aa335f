"""The publisher's ZIP writer: plain ZIPs any reader takes, big members in chunks a device re-deflates."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edge_shared.delta.deflate import deflate_pieces
from edge_tools.publish.zipwriter import (
    ONE_STREAM,
    PACK_CHUNK,
    PACKED_DEFAULT,
    PACKED_RLE,
    ZipEntry,
    pack_member,
    write_zip,
)

WEIGHTS = np.random.default_rng(3).standard_normal(700_000).astype(np.float32).tobytes()  # 2.8 MB
# Long repeats far apart: what LZ77 matching wins and run-length coding cannot.
REPETITIVE = (np.random.default_rng(4).integers(0, 256, 4096, dtype=np.uint8).tobytes() * 700)[:2_800_000]


def test_archive_reads_back_with_names_contents_times_and_modes() -> None:
    entries = [
        ZipEntry("model.onnx", WEIGHTS, date_time=(2024, 5, 6, 7, 8, 10)),
        ZipEntry("labels.txt", b"person\ncar\n", mode=0o600),
        ZipEntry("notes/überblick.md", b"", deflate=False),
    ]
    data = write_zip(entries)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [i.filename for i in infos] == ["model.onnx", "labels.txt", "notes/überblick.md"]
        assert [archive.read(i) for i in infos] == [e.data for e in entries]
        assert infos[0].date_time == (2024, 5, 6, 7, 8, 10)
        assert [i.external_attr >> 16 for i in infos] == [0o100644, 0o100600, 0o100644]
        assert [i.compress_type for i in infos] == [
            zipfile.ZIP_DEFLATED,
            zipfile.ZIP_DEFLATED,
            zipfile.ZIP_STORED,
        ]
        assert infos[2].flag_bits & 0x800  # UTF-8 name flag, so readers do not take it for CP437
    assert raw_member(data, "model.onnx") == pack_member(WEIGHTS)[1]  # RLE chunks


def test_same_entries_give_the_same_bytes() -> None:
    entries = [ZipEntry("model.onnx", WEIGHTS), ZipEntry("labels.txt", b"a\n")]
    assert write_zip(entries) == write_zip(list(entries))


def test_weights_take_rle_chunks_no_bigger_than_the_default_strategy() -> None:
    settings, stream = pack_member(WEIGHTS)
    assert settings == PACKED_RLE
    assert settings.chunk_size == PACK_CHUNK
    assert len(stream) <= len(b"".join(deflate_pieces(WEIGHTS, PACKED_DEFAULT))) * 1.01


def test_data_that_needs_matching_keeps_the_default_strategy() -> None:
    settings, stream = pack_member(REPETITIVE)
    assert settings == PACKED_DEFAULT
    assert len(stream) < len(REPETITIVE) / 50


def test_small_members_are_one_stream_as_zipfile_writes_them() -> None:
    small = WEIGHTS[:PACK_CHUNK]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m", small)
    assert pack_member(small) == (ONE_STREAM, raw_member(buffer.getvalue(), "m"))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([ZipEntry("old.txt", b"x", date_time=(1979, 12, 31, 0, 0, 0))], "1980"),
        ([ZipEntry(f"{i}", b"") for i in range(0x10000)], "65,535"),
    ],
)
def test_what_a_plain_zip_cannot_hold_is_refused(entries: list[ZipEntry], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_zip(entries)


def raw_member(archive: bytes, name: str) -> bytes:
    """A member's compressed bytes as they lie in the archive (after a local header with no extra field)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        info = opened.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode())
    return archive[start : start + info.compress_size]
