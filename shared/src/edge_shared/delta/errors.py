"""Errors raised while reading or applying a package delta.

Tree:
    DeltaError                      any reason a delta cannot be used (the loader then downloads the full ZIP)
    ├── DeltaFormatError            not a delta, truncated, malformed header, out-of-bounds reference
    ├── UnsupportedDeltaVersionError a container or `Format` this applier does not know
    ├── DeltaBaseError              the base is missing or is not the one the delta was made from
    └── DeltaIntegrityError         a patch decodes to the wrong bytes: file or ZIP digest mismatch
"""

from __future__ import annotations


class DeltaError(Exception):
    """Base of every delta failure; messages name what failed, never a URL."""


class DeltaFormatError(DeltaError):
    """The delta file is not well formed (bad magic, truncated, malformed or out-of-bounds)."""


class UnsupportedDeltaVersionError(DeltaError):
    """The container version or `Format` string is not one this applier implements."""


class DeltaBaseError(DeltaError):
    """A base file the delta needs is missing or has other content (wrong base version)."""


class DeltaIntegrityError(DeltaError):
    """A reconstructed file or the rebuilt ZIP does not have the digest the delta promises."""
