"""Typed events from WhatsApp Cloud API webhook payloads.

The parser is pure and total: it never raises, whatever JSON it is given. Meta batches up to
1000 updates per POST and retries a failed POST for days, so one odd item must not cost the
others: anything it cannot read becomes an `UnknownEvent` naming where it was found, and the
walk goes on. Upstream decides what to log; this module only reads.

Shapes follow Meta's webhook reference for the `messages`, `user_preferences` and
`message_template_status_update` fields. Unknown message types and unknown status values are
kept as they are rather than refused, since Meta adds new ones without notice.
"""

from __future__ import annotations

from typing import Any, Final

from bot.whatsapp.events import Event, UnknownEvent
from bot.whatsapp.webhook_fields import parse_preferences_value, template_status
from bot.whatsapp.webhook_messages import parse_messages_value

__all__ = [
    "WHATSAPP_OBJECT",
    "is_whatsapp_payload",
    "parse",
]

WHATSAPP_OBJECT: Final = "whatsapp_business_account"


def is_whatsapp_payload(payload: Any) -> bool:
    """Whether the JSON claims to be a WhatsApp Business Account webhook at all."""
    return isinstance(payload, dict) and payload.get("object") == WHATSAPP_OBJECT


def parse(payload: Any) -> list[Event]:
    """Every update in a webhook body, in the order Meta sent them. Never raises."""
    if not is_whatsapp_payload(payload):
        return [UnknownEvent("not a whatsapp_business_account payload", payload)]
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return [UnknownEvent("entry is not a list", payload)]
    events: list[Event] = []
    for i, entry in enumerate(entries):
        path = f"entry[{i}]"
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            events.append(UnknownEvent(f"{path}: no list of changes", entry))
            continue
        for j, change in enumerate(changes):
            _parse_change(change, f"{path}.changes[{j}]", events)
    return events


# --- changes -------------------------------------------------------------------------------


def _parse_change(change: Any, path: str, events: list[Event]) -> None:
    if not isinstance(change, dict):
        events.append(UnknownEvent(f"{path}: not an object", change))
        return
    name = change.get("field")
    value = change.get("value")
    if not isinstance(value, dict):
        events.append(UnknownEvent(f"{path}: value is not an object", change))
    elif name == "messages":
        parse_messages_value(value, path, events)
    elif name == "user_preferences":
        parse_preferences_value(value, path, events)
    elif name == "message_template_status_update":
        events.append(template_status(value, path))
    else:
        events.append(UnknownEvent(f"{path}: field {name!r} is not handled", change))
