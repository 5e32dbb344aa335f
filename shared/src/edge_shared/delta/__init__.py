"""Package deltas (`emdelta/1`, docs/delta.md): the container and the applier the loader runs.

Public surface: `apply_delta`, `read_delta_header`, `ApplyResult`, `DeltaLimits`, `FORMAT`, and the
error tree in `edge_shared.delta.errors`. The producer lives in `edge_tools.delta`.
"""

from edge_shared.delta.apply import ApplyResult, apply_delta, read_delta_header
from edge_shared.delta.container import FORMAT, DeltaHeader, DeltaLimits
from edge_shared.delta.errors import (
    DeltaBaseError,
    DeltaError,
    DeltaFormatError,
    DeltaIntegrityError,
    UnsupportedDeltaVersionError,
)

__all__ = [
    "FORMAT",
    "ApplyResult",
    "DeltaBaseError",
    "DeltaError",
    "DeltaFormatError",
    "DeltaHeader",
    "DeltaIntegrityError",
    "DeltaLimits",
    "UnsupportedDeltaVersionError",
    "apply_delta",
    "read_delta_header",
]
