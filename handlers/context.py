"""What a command handler gets to work with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from handlers.replies import Actor, Upload
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.options import EngineOptions
from scheduler.ports import Alerts
from storage.database import Database


@dataclass
class CommandContext:
    db: Database
    clock: Clock
    options: EngineOptions
    alerts: Alerts
    actor: Actor
    upload: Upload | None = None
    csv_max_bytes: int = 50 * 1024 * 1024
    csv_max_rows: int = 1_000_000
    extras: dict[str, Any] = field(default_factory=dict)
    #: shared with the dispatcher: an opt-out commits under the contact's send lock
    locks: ContactLocks = field(default_factory=ContactLocks)
