"""Delta producer (`emdelta/1`): `make_delta(base_zip, target_zip, ...)` → `DeltaBuild`; see docs/delta.md."""

from edge_tools.delta.produce import FULL_THRESHOLD, DeltaBuild, FileReport, make_delta

__all__ = ["FULL_THRESHOLD", "DeltaBuild", "FileReport", "make_delta"]
