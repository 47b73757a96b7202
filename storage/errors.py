"""The storage package's one base exception, so callers can translate at the boundary."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for errors raised by :mod:`storage`."""


class NotFound(StorageError):
    """A record that was asked for by name or id does not exist in the workspace."""


class Conflict(StorageError):
    """A uniqueness rule would be broken (duplicate sequence name, active enrollment...)."""
