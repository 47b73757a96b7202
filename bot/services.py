"""Everything one running dripbot holds, built once and handed to each edge.

The aiohttp app keeps it under :data:`SERVICES`; the CLI builds the same object for
``dripbot admin`` so commands behave identically in every channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, web

from bot.config import Settings
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.options import EngineOptions
from scheduler.ports import Alerts, MessageSender
from storage.database import Database

if TYPE_CHECKING:
    from bot.whatsapp.client import GraphClient
    from scheduler.dispatcher import Dispatcher


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    options: EngineOptions
    alerts: Alerts
    sender: MessageSender
    locks: ContactLocks = field(default_factory=ContactLocks)
    http: ClientSession | None = None
    #: the Graph API client when WhatsApp is configured (media downloads, sends)
    graph: GraphClient | None = None
    dispatcher: Dispatcher | None = None
    #: per-feature extras (interpreter, Telegram application, metrics...) set by their owners
    extras: dict[str, Any] = field(default_factory=dict)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
