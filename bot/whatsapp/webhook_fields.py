"""The WhatsApp webhook fields besides `messages`: `user_preferences` and template reviews.

Both follow Meta's webhook reference; anything missing what an event needs becomes an
`UnknownEvent` naming its path.
"""

from __future__ import annotations

from typing import Any

from bot.whatsapp.events import Event, PreferenceUpdate, TemplateStatusUpdate, UnknownEvent
from bot.whatsapp.webhook_values import (
    Contacts,
    as_id,
    as_phone,
    as_str,
    as_timestamp,
    metadata_phone_number_id,
)


def parse_preferences_value(value: dict[str, Any], path: str, events: list[Event]) -> None:
    items = value.get("user_preferences")
    if not isinstance(items, list):
        events.append(UnknownEvent(f"{path}: user_preferences is not a list", value))
        return
    phone_number_id = metadata_phone_number_id(value)
    contacts = Contacts(value.get("contacts"))
    for k, item in enumerate(items):
        item_path = f"{path}.user_preferences[{k}]"
        if not isinstance(item, dict):
            events.append(UnknownEvent(f"{item_path}: not an object", item))
            continue
        category = as_str(item.get("category"))
        choice = as_str(item.get("value"))
        sender = contacts.sender(
            as_phone(item.get("wa_id")), as_str(item.get("user_id")), phone_number_id
        )
        if category is None or choice is None:
            events.append(UnknownEvent(f"{item_path}: no category or value", item))
        elif sender.wa_id is None and sender.user_id is None:
            events.append(UnknownEvent(f"{item_path}: no user identity", item))
        else:
            events.append(
                PreferenceUpdate(
                    sender=sender,
                    category=category,
                    value=choice,
                    timestamp=as_timestamp(item.get("timestamp")),
                    detail=as_str(item.get("detail")),
                    raw=item,
                )
            )


def template_status(value: dict[str, Any], path: str) -> Event:
    event = as_str(value.get("event"))
    if event is None:
        return UnknownEvent(f"{path}: template status without event", value)
    return TemplateStatusUpdate(
        template_name=as_str(value.get("message_template_name")),
        template_id=as_id(value.get("message_template_id")),
        language=as_str(value.get("message_template_language")),
        event=event,
        reason=as_str(value.get("reason")),
        category=as_str(value.get("message_template_category")),
        detail=_template_detail(value),
        raw=value,
    )


def _template_detail(value: dict[str, Any]) -> str | None:
    rejection = value.get("rejection_info")
    if isinstance(rejection, dict):
        parts = [as_str(rejection.get("reason")), as_str(rejection.get("recommendation"))]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    other = value.get("other_info")
    if isinstance(other, dict):
        return as_str(other.get("description")) or as_str(other.get("title"))
    return None
