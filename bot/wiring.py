"""Building the pieces every entry point shares from the settings."""

from __future__ import annotations

from bot.config import Settings
from handlers.interpreter import Admins, Interpreter
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.phones import InvalidPhone, normalize_phone
from scheduler.ports import Alerts, LogAlerts
from storage.database import Database


def admins_from(settings: Settings) -> Admins:
    numbers = set()
    for raw in settings.admin_whatsapp_numbers:
        try:
            numbers.add(normalize_phone(raw, settings.default_region))
        except InvalidPhone:
            continue  # validated at start-up by serve; never let one typo lock everyone out
    return Admins(
        telegram_ids=frozenset(str(i) for i in settings.admin_telegram_ids),
        whatsapp_numbers=frozenset(numbers),
    )


def build_interpreter(
    settings: Settings,
    db: Database,
    clock: Clock,
    alerts: Alerts | None = None,
    locks: ContactLocks | None = None,
) -> Interpreter:
    return Interpreter(
        locks=locks if locks is not None else ContactLocks(),
        db=db,
        clock=clock,
        options=settings.engine_options(),
        admins=admins_from(settings),
        alerts=alerts or LogAlerts(),
        csv_max_bytes=settings.csv_max_bytes,
        csv_max_rows=settings.csv_max_rows,
    )
