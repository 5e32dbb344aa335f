"""Errors raised by the shared contracts.

Tree:
    EdgeSharedError
    ├── InvalidDesiredError   desired twin properties fail validation (names the field, never echoes values)
    ├── UnsafePathError       a path would escape the model root (absolute, `..`, symlink out)
    ├── RepositoryError       the model repository is missing or inconsistent (bad `current`, bad manifest)
    └── LabelError            a label file is missing its names, ambiguous (two candidates) or unreadable
"""

from __future__ import annotations


class EdgeSharedError(Exception):
    """Base of every error raised by `edge_shared`."""


class InvalidDesiredError(EdgeSharedError):
    """Desired properties that cannot be applied; `problems` lists `(field, message)` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.problems]


class UnsafePathError(EdgeSharedError, ValueError):
    """A relative path that would resolve outside the root it must stay under."""


class RepositoryError(EdgeSharedError):
    """The model repository on disk is not in the shape architecture §6 describes."""


class LabelError(EdgeSharedError, ValueError):
    """A model package's label file cannot be used: none of its lines names a class, or it is ambiguous."""
