"""The engine's exceptions: each carries one line an admin can act on."""

from __future__ import annotations


class EngineError(Exception):
    """Base class for errors the engine reports to whoever asked (chat, CLI, REST)."""


class NotFound(EngineError):
    """A sequence, step, contact or enrollment named by the caller does not exist."""


class Conflict(EngineError):
    """The request clashes with existing state (duplicate name, already enrolled...)."""


class Invalid(EngineError):
    """The request is well-formed but cannot be carried out as asked."""
