"""The delta figures script (`python -m edge_tools.bench.delta_rows`) on a 0.4 MB cut of its model: every row
is produced, applied in a fresh process, checked byte-identical, and the deflate table is well formed."""

from __future__ import annotations

import zlib
from pathlib import Path

from edge_tools.bench.delta_rows import (
    EXTRA_ROWS,
    DeltaBenchOptions,
    base_weights,
    build_model,
    deflate_options,
    markdown,
    run,
    scenarios,
)


def test_every_row_is_measured_and_the_retrain_ships_the_full_zip(tmp_path: Path) -> None:
    rows = run(
        DeltaBenchOptions(repeat=1, layers=4), tmp_path
    )  # the first four convolutions: 0.1 M parameters
    by_change = {row.change: row for row in rows}
    assert list(by_change) == [*scenarios(4), *EXTRA_ROWS]
    for row in rows:
        assert len(row.apply_seconds) == len(row.deflate_seconds) == 1
        assert 0 < row.deflate_seconds[0] <= row.apply_seconds[0]
        assert row.apply_peak_mb > 0 and row.delta_bytes > 0
    assert by_change["label file only"].delta_bytes < 4096
    assert by_change["full retrain (new random weights)"].decision == "full"
    table = markdown(rows).splitlines()
    assert len(table) == 2 + len(rows) and all(line.count("|") == 11 for line in table)


def test_deflate_table_covers_each_setting_with_its_ratio() -> None:
    model = build_model(base_weights(layers=5))
    lines = deflate_options(model).splitlines()
    assert len(lines) == 10
    ratios = [float(line.split("|")[2]) for line in lines[2:]]
    assert all(0.8 < ratio < 1.0 for ratio in ratios)  # float weights: every setting saves a little
    one_stream = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert ratios[0] == round(len(one_stream.compress(model) + one_stream.flush()) / len(model), 4)
    assert ratios[4] == ratios[5] and ratios[6] == ratios[7]  # threads never change the bytes
