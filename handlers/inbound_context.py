"""What handling an inbound WhatsApp message needs from the running service, and what
becomes of the message. The command interpreter and the attachment source are protocols, so
the handlers never learn which chat channel or HTTP client stands behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from handlers.replies import Actor, Reply, Upload
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.options import EngineOptions
from scheduler.ports import Alerts, MessageSender
from storage.database import Database


class CommandRunner(Protocol):
    """The admin command interpreter shared by every chat channel."""

    async def run(self, actor: Actor, text: str, upload: Upload | None = None) -> Reply: ...


class MediaUnavailable(Exception):
    """An attachment could not be fetched; the message says why, fit for an admin."""


class MediaSource(Protocol):
    """Fetches an inbound attachment's bytes (size-capped by the implementation)."""

    async def fetch(self, media_id: str) -> bytes: ...


@dataclass
class InboundContext:
    """What handling a message needs from the running service."""

    db: Database
    clock: Clock
    options: EngineOptions
    alerts: Alerts
    sender: MessageSender
    locks: ContactLocks
    #: admin WhatsApp numbers, E.164
    admin_numbers: frozenset[str] = frozenset()
    commands: CommandRunner | None = None
    media: MediaSource | None = None


class Handled(StrEnum):
    """What became of a message (for logs, metrics and tests)."""

    DUPLICATE = "duplicate"
    COMMAND = "command"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    ENROLLED = "enrolled"
    REPLY = "reply"
    RECORDED = "recorded"
