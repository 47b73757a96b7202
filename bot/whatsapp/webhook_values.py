"""Readers for the values inside a WhatsApp webhook payload, shared by every part of the walk.

Each takes whatever JSON sits at a key and returns what it can read of it, never raising:
Meta sends ids and timestamps as strings in some payloads and integers in others, and phones
without their "+". `Contacts` resolves who an item is about from the change's contact cards.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.whatsapp.events import ErrorInfo, Sender


class Contacts:
    """The change's `contacts[]`, looked up by phone or by business-scoped user id."""

    __slots__ = ("_by_user_id", "_by_wa_id", "_only")

    def __init__(self, contacts: Any) -> None:
        self._by_wa_id: dict[str, dict[str, Any]] = {}
        self._by_user_id: dict[str, dict[str, Any]] = {}
        self._only: dict[str, Any] | None = None
        if not isinstance(contacts, list):
            return
        usable = [c for c in contacts if isinstance(c, dict)]
        for contact in usable:
            wa_id = as_phone(contact.get("wa_id"))
            user_id = as_str(contact.get("user_id"))
            if wa_id is not None:
                self._by_wa_id.setdefault(wa_id, contact)
            if user_id is not None:
                self._by_user_id.setdefault(user_id, contact)
        if len(usable) == 1:
            self._only = usable[0]

    def sender(self, wa_id: str | None, user_id: str | None, phone_number_id: str | None) -> Sender:
        """Merge what the item says with its contact card; the item's own ids win.

        When the item names nobody, a change with a single contact card can only be about
        that contact.
        """
        contact: dict[str, Any] | None = None
        if wa_id is not None:
            contact = self._by_wa_id.get(wa_id)
        if contact is None and user_id is not None:
            contact = self._by_user_id.get(user_id)
        if contact is None and wa_id is None and user_id is None:
            contact = self._only
        name: str | None = None
        if contact is not None:
            wa_id = wa_id or as_phone(contact.get("wa_id"))
            user_id = user_id or as_str(contact.get("user_id"))
            profile = contact.get("profile")
            if isinstance(profile, dict):
                name = as_str(profile.get("name"))
        return Sender(wa_id, user_id, name, phone_number_id)


def metadata_phone_number_id(value: dict[str, Any]) -> str | None:
    metadata = value.get("metadata")
    return as_id(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None


def error_infos(items: Any) -> tuple[ErrorInfo, ...]:
    if not isinstance(items, list):
        return ()
    found: list[ErrorInfo] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        data = item.get("error_data")
        found.append(
            ErrorInfo(
                code=as_int(item.get("code")),
                title=as_str(item.get("title")),
                message=as_str(item.get("message")),
                details=as_str(data.get("details")) if isinstance(data, dict) else None,
            )
        )
    return tuple(found)


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def as_id(value: Any) -> str | None:
    """Ids are strings in Meta's payloads, except where the reference shows integers."""
    number = as_int(value)
    return str(number) if number is not None else as_str(value)


def as_phone(value: Any) -> str | None:
    """ "+<digits>" from a wa_id. Meta sends bare digits; anything else is not a phone."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    digits = value.removeprefix("+")
    return "+" + digits if digits.isascii() and digits.isdigit() else None


def as_timestamp(value: Any) -> datetime | None:
    """Unix seconds (a string in most payloads, an integer in some) as aware UTC."""
    seconds = as_int(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
