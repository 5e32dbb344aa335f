"""Name rules shared by twin properties, the repository layout and messages."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

FILE_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
VERSION_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_version(value: str) -> str:
    """A version names a folder, so it must be a safe single path segment."""
    if not VERSION_RE.fullmatch(value) or value.startswith("."):
        raise ValueError("must be 1-64 characters of A-Z a-z 0-9 . _ - and must not start with '.'")
    return value


def check_file_name(value: str) -> str:
    """A model ZIP name: one safe path segment ending in `.zip`."""
    if not FILE_NAME_RE.fullmatch(value) or value.startswith("."):
        raise ValueError(
            "must be 1-128 characters of A-Z a-z 0-9 . _ - with no path parts and must not start with '.'"
        )
    if not value.lower().endswith(".zip") or len(value) == 4:
        raise ValueError("must name a .zip file")
    return value


def version_from_file_name(file_name: str) -> str:
    """`tiny-yolov3-1.1.zip` → `tiny-yolov3-1.1`, as the reference architecture names folders."""
    return file_name[: -len(".zip")]


Version = Annotated[str, AfterValidator(check_version)]
FileName = Annotated[str, AfterValidator(check_file_name)]
