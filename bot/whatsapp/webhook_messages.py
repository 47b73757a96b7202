"""The `messages` field of a WhatsApp webhook: inbound messages, delivery statuses and errors.

One change's value can carry any of the three lists at once, all about the same business
number. Each item that cannot be read becomes an `UnknownEvent` naming its path, and the walk
goes on to the next.
"""

from __future__ import annotations

from typing import Any, Final

from bot.whatsapp.events import (
    Event,
    FieldError,
    InboundMessage,
    Media,
    StatusUpdate,
    UnknownEvent,
)
from bot.whatsapp.webhook_values import (
    Contacts,
    as_id,
    as_phone,
    as_str,
    as_timestamp,
    error_infos,
    metadata_phone_number_id,
)

_MEDIA_KINDS: Final = frozenset({"image", "video", "audio", "document", "sticker"})


def parse_messages_value(value: dict[str, Any], path: str, events: list[Event]) -> None:
    phone_number_id = metadata_phone_number_id(value)
    contacts = Contacts(value.get("contacts"))
    found = False
    messages = value.get("messages")
    if messages is not None:
        found = True
        if isinstance(messages, list):
            for k, item in enumerate(messages):
                events.append(_message(item, f"{path}.messages[{k}]", contacts, phone_number_id))
        else:
            events.append(UnknownEvent(f"{path}.messages: not a list", messages))
    statuses = value.get("statuses")
    if statuses is not None:
        found = True
        if isinstance(statuses, list):
            for k, item in enumerate(statuses):
                events.append(_status(item, f"{path}.statuses[{k}]", contacts, phone_number_id))
        else:
            events.append(UnknownEvent(f"{path}.statuses: not a list", statuses))
    errors = value.get("errors")
    if errors is not None:
        found = True
        parsed = error_infos(errors)
        if parsed:
            events.append(FieldError(parsed, phone_number_id, value))
        else:
            events.append(UnknownEvent(f"{path}.errors: no readable error", errors))
    if not found:
        events.append(UnknownEvent(f"{path}: no messages, statuses or errors", value))


def _message(item: Any, path: str, contacts: Contacts, phone_number_id: str | None) -> Event:
    if not isinstance(item, dict):
        return UnknownEvent(f"{path}: not an object", item)
    wamid = as_str(item.get("id"))
    if wamid is None:
        return UnknownEvent(f"{path}: message without id", item)
    timestamp = as_timestamp(item.get("timestamp"))
    if timestamp is None:
        return UnknownEvent(f"{path}: message without a readable timestamp", item)
    sender = contacts.sender(
        as_phone(item.get("from")), as_str(item.get("from_user_id")), phone_number_id
    )
    if sender.wa_id is None and sender.user_id is None:
        return UnknownEvent(f"{path}: message without a sender", item)

    kind = as_str(item.get("type")) or "unknown"
    section = item.get(kind)
    body: dict[str, Any] = section if isinstance(section, dict) else {}
    text: str | None = None
    payload: str | None = None
    media: Media | None = None
    context = item.get("context")
    context_wamid = as_str(context.get("id")) if isinstance(context, dict) else None

    if kind == "text":
        text = as_str(body.get("body"))
    elif kind == "button":
        text = as_str(body.get("text"))
        payload = as_str(body.get("payload"))
    elif kind == "interactive":
        reply_type = body.get("type")
        reply = body.get(reply_type) if isinstance(reply_type, str) else None
        if isinstance(reply, dict):
            if reply_type == "nfm_reply":
                text = as_str(reply.get("body"))
                payload = as_str(reply.get("response_json"))
            else:
                text = as_str(reply.get("title"))
                payload = as_str(reply.get("id"))
    elif kind in _MEDIA_KINDS:
        media = Media(
            id=as_id(body.get("id")),
            mime_type=as_str(body.get("mime_type")),
            sha256=as_str(body.get("sha256")),
            filename=as_str(body.get("filename")),
            caption=as_str(body.get("caption")),
            url=as_str(body.get("url")),
        )
        text = media.caption
    elif kind == "reaction":
        text = as_str(body.get("emoji"))
        context_wamid = as_str(body.get("message_id")) or context_wamid
    elif kind == "system":
        text = as_str(body.get("body"))
        payload = as_str(body.get("type"))

    return InboundMessage(
        wamid=wamid,
        sender=sender,
        timestamp=timestamp,
        kind=kind,
        text=text,
        payload=payload,
        media=media,
        context_wamid=context_wamid,
        errors=error_infos(item.get("errors")),
        raw=item,
    )


def _status(item: Any, path: str, contacts: Contacts, phone_number_id: str | None) -> Event:
    if not isinstance(item, dict):
        return UnknownEvent(f"{path}: not an object", item)
    wamid = as_str(item.get("id"))
    status = as_str(item.get("status"))
    if wamid is None or status is None:
        return UnknownEvent(f"{path}: status without id or status", item)
    timestamp = as_timestamp(item.get("timestamp"))
    if timestamp is None:
        return UnknownEvent(f"{path}: status without a readable timestamp", item)
    recipient = as_phone(item.get("recipient_id"))
    recipient_user_id = as_str(item.get("recipient_user_id"))
    if recipient_user_id is None and recipient is not None:
        recipient_user_id = contacts.sender(recipient, None, None).user_id
    return StatusUpdate(
        wamid=wamid,
        status=status,
        timestamp=timestamp,
        recipient=recipient,
        recipient_user_id=recipient_user_id,
        callback_data=as_str(item.get("biz_opaque_callback_data")),
        errors=error_infos(item.get("errors")),
        phone_number_id=phone_number_id,
        raw=item,
    )
