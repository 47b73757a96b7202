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

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeAlias

__all__ = [
    "WHATSAPP_OBJECT",
    "ErrorInfo",
    "Event",
    "FieldError",
    "InboundMessage",
    "Media",
    "PreferenceUpdate",
    "Sender",
    "StatusUpdate",
    "TemplateStatusUpdate",
    "UnknownEvent",
    "is_whatsapp_payload",
    "parse",
]

WHATSAPP_OBJECT: Final = "whatsapp_business_account"

_MEDIA_KINDS: Final = frozenset({"image", "video", "audio", "document", "sticker"})


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """One Meta error object. Meta asks clients to act on `code` and `details`, not titles."""

    code: int | None
    title: str | None
    message: str | None
    details: str | None


@dataclass(frozen=True, slots=True)
class Sender:
    """Who wrote, as far as the payload tells.

    Either identity may be missing: a user with a username can arrive with only `user_id`
    (the business-scoped user id), and older payloads carry only the phone. `wa_id` is
    "+<digits>" so it compares equal to numbers stored in E.164. `phone_number_id` is our
    business number that received the update.
    """

    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    phone_number_id: str | None


@dataclass(frozen=True, slots=True)
class Media:
    """An inbound attachment; the bytes are fetched later through the Graph API by `id`."""

    id: str | None
    mime_type: str | None
    sha256: str | None
    filename: str | None
    caption: str | None
    url: str | None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a user sent to the business.

    `kind` is Meta's message type as sent (text, button, interactive, image, video, audio,
    document, sticker, reaction, location, contacts, system, unsupported, ...; "unknown" when
    absent). `text` is what a person would read: the text body, the template button label,
    the interactive reply title, a media caption, a reaction emoji or a system notice.
    `payload` is the machine value behind it: the button payload, the interactive reply id,
    or the system event type. `context_wamid` is the business message replied or reacted to.
    """

    wamid: str
    sender: Sender
    timestamp: datetime
    kind: str
    text: str | None
    payload: str | None
    media: Media | None
    context_wamid: str | None
    errors: tuple[ErrorInfo, ...]
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery status for a message the business sent.

    `status` is kept as Meta sent it (sent, delivered, read, failed, played, or anything
    newer). `callback_data` echoes the `biz_opaque_callback_data` given at send time.
    """

    wamid: str
    status: str
    timestamp: datetime
    recipient: str | None
    recipient_user_id: str | None
    callback_data: str | None
    errors: tuple[ErrorInfo, ...]
    phone_number_id: str | None
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def error_codes(self) -> tuple[int, ...]:
        return tuple(e.code for e in self.errors if e.code is not None)


@dataclass(frozen=True, slots=True)
class PreferenceUpdate:
    """A user's choice in WhatsApp's own marketing controls ("stop" or "resume").

    The timestamp may be absent in odd payloads; an opt-out is still an opt-out without it.
    """

    sender: Sender
    category: str
    value: str
    timestamp: datetime | None
    detail: str | None
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TemplateStatusUpdate:
    """A template review outcome (APPROVED, REJECTED, PAUSED, DISABLED, ...).

    `reason` is Meta's reason code (e.g. INVALID_FORMAT, or "NONE"); `detail` is the longer
    explanation Meta adds for some rejections and pauses.
    """

    template_name: str | None
    template_id: str | None
    language: str | None
    event: str
    reason: str | None
    category: str | None
    detail: str | None
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FieldError:
    """Errors Meta reports for a business number outside any message or status."""

    errors: tuple[ErrorInfo, ...]
    phone_number_id: str | None
    raw: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """Something the parser could not read; `description` says where and why."""

    description: str
    raw: Any = field(compare=False, repr=False)


Event: TypeAlias = (
    InboundMessage
    | StatusUpdate
    | PreferenceUpdate
    | TemplateStatusUpdate
    | FieldError
    | UnknownEvent
)


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
        _parse_messages_value(value, path, events)
    elif name == "user_preferences":
        _parse_preferences_value(value, path, events)
    elif name == "message_template_status_update":
        events.append(_template_status(value, path))
    else:
        events.append(UnknownEvent(f"{path}: field {name!r} is not handled", change))


def _parse_messages_value(value: dict[str, Any], path: str, events: list[Event]) -> None:
    phone_number_id = _metadata_phone_number_id(value)
    contacts = _Contacts(value.get("contacts"))
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
        parsed = _errors(errors)
        if parsed:
            events.append(FieldError(parsed, phone_number_id, value))
        else:
            events.append(UnknownEvent(f"{path}.errors: no readable error", errors))
    if not found:
        events.append(UnknownEvent(f"{path}: no messages, statuses or errors", value))


def _parse_preferences_value(value: dict[str, Any], path: str, events: list[Event]) -> None:
    items = value.get("user_preferences")
    if not isinstance(items, list):
        events.append(UnknownEvent(f"{path}: user_preferences is not a list", value))
        return
    phone_number_id = _metadata_phone_number_id(value)
    contacts = _Contacts(value.get("contacts"))
    for k, item in enumerate(items):
        item_path = f"{path}.user_preferences[{k}]"
        if not isinstance(item, dict):
            events.append(UnknownEvent(f"{item_path}: not an object", item))
            continue
        category = _str(item.get("category"))
        choice = _str(item.get("value"))
        sender = contacts.sender(
            _phone(item.get("wa_id")), _str(item.get("user_id")), phone_number_id
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
                    timestamp=_timestamp(item.get("timestamp")),
                    detail=_str(item.get("detail")),
                    raw=item,
                )
            )


def _template_status(value: dict[str, Any], path: str) -> Event:
    event = _str(value.get("event"))
    if event is None:
        return UnknownEvent(f"{path}: template status without event", value)
    return TemplateStatusUpdate(
        template_name=_str(value.get("message_template_name")),
        template_id=_id(value.get("message_template_id")),
        language=_str(value.get("message_template_language")),
        event=event,
        reason=_str(value.get("reason")),
        category=_str(value.get("message_template_category")),
        detail=_template_detail(value),
        raw=value,
    )


def _template_detail(value: dict[str, Any]) -> str | None:
    rejection = value.get("rejection_info")
    if isinstance(rejection, dict):
        parts = [_str(rejection.get("reason")), _str(rejection.get("recommendation"))]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    other = value.get("other_info")
    if isinstance(other, dict):
        return _str(other.get("description")) or _str(other.get("title"))
    return None


# --- messages and statuses -----------------------------------------------------------------


class _Contacts:
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
            wa_id = _phone(contact.get("wa_id"))
            user_id = _str(contact.get("user_id"))
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
            wa_id = wa_id or _phone(contact.get("wa_id"))
            user_id = user_id or _str(contact.get("user_id"))
            profile = contact.get("profile")
            if isinstance(profile, dict):
                name = _str(profile.get("name"))
        return Sender(wa_id, user_id, name, phone_number_id)


def _message(item: Any, path: str, contacts: _Contacts, phone_number_id: str | None) -> Event:
    if not isinstance(item, dict):
        return UnknownEvent(f"{path}: not an object", item)
    wamid = _str(item.get("id"))
    if wamid is None:
        return UnknownEvent(f"{path}: message without id", item)
    timestamp = _timestamp(item.get("timestamp"))
    if timestamp is None:
        return UnknownEvent(f"{path}: message without a readable timestamp", item)
    sender = contacts.sender(
        _phone(item.get("from")), _str(item.get("from_user_id")), phone_number_id
    )
    if sender.wa_id is None and sender.user_id is None:
        return UnknownEvent(f"{path}: message without a sender", item)

    kind = _str(item.get("type")) or "unknown"
    section = item.get(kind)
    body: dict[str, Any] = section if isinstance(section, dict) else {}
    text: str | None = None
    payload: str | None = None
    media: Media | None = None
    context = item.get("context")
    context_wamid = _str(context.get("id")) if isinstance(context, dict) else None

    if kind == "text":
        text = _str(body.get("body"))
    elif kind == "button":
        text = _str(body.get("text"))
        payload = _str(body.get("payload"))
    elif kind == "interactive":
        reply_type = body.get("type")
        reply = body.get(reply_type) if isinstance(reply_type, str) else None
        if isinstance(reply, dict):
            if reply_type == "nfm_reply":
                text = _str(reply.get("body"))
                payload = _str(reply.get("response_json"))
            else:
                text = _str(reply.get("title"))
                payload = _str(reply.get("id"))
    elif kind in _MEDIA_KINDS:
        media = Media(
            id=_id(body.get("id")),
            mime_type=_str(body.get("mime_type")),
            sha256=_str(body.get("sha256")),
            filename=_str(body.get("filename")),
            caption=_str(body.get("caption")),
            url=_str(body.get("url")),
        )
        text = media.caption
    elif kind == "reaction":
        text = _str(body.get("emoji"))
        context_wamid = _str(body.get("message_id")) or context_wamid
    elif kind == "system":
        text = _str(body.get("body"))
        payload = _str(body.get("type"))

    return InboundMessage(
        wamid=wamid,
        sender=sender,
        timestamp=timestamp,
        kind=kind,
        text=text,
        payload=payload,
        media=media,
        context_wamid=context_wamid,
        errors=_errors(item.get("errors")),
        raw=item,
    )


def _status(item: Any, path: str, contacts: _Contacts, phone_number_id: str | None) -> Event:
    if not isinstance(item, dict):
        return UnknownEvent(f"{path}: not an object", item)
    wamid = _str(item.get("id"))
    status = _str(item.get("status"))
    if wamid is None or status is None:
        return UnknownEvent(f"{path}: status without id or status", item)
    timestamp = _timestamp(item.get("timestamp"))
    if timestamp is None:
        return UnknownEvent(f"{path}: status without a readable timestamp", item)
    recipient = _phone(item.get("recipient_id"))
    recipient_user_id = _str(item.get("recipient_user_id"))
    if recipient_user_id is None and recipient is not None:
        recipient_user_id = contacts.sender(recipient, None, None).user_id
    return StatusUpdate(
        wamid=wamid,
        status=status,
        timestamp=timestamp,
        recipient=recipient,
        recipient_user_id=recipient_user_id,
        callback_data=_str(item.get("biz_opaque_callback_data")),
        errors=_errors(item.get("errors")),
        phone_number_id=phone_number_id,
        raw=item,
    )


# --- scalars -------------------------------------------------------------------------------


def _metadata_phone_number_id(value: dict[str, Any]) -> str | None:
    metadata = value.get("metadata")
    return _id(metadata.get("phone_number_id")) if isinstance(metadata, dict) else None


def _errors(items: Any) -> tuple[ErrorInfo, ...]:
    if not isinstance(items, list):
        return ()
    found: list[ErrorInfo] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        data = item.get("error_data")
        found.append(
            ErrorInfo(
                code=_int(item.get("code")),
                title=_str(item.get("title")),
                message=_str(item.get("message")),
                details=_str(data.get("details")) if isinstance(data, dict) else None,
            )
        )
    return tuple(found)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _id(value: Any) -> str | None:
    """Ids are strings in Meta's payloads, except where the reference shows integers."""
    number = _int(value)
    return str(number) if number is not None else _str(value)


def _phone(value: Any) -> str | None:
    """ "+<digits>" from a wa_id. Meta sends bare digits; anything else is not a phone."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    digits = value.removeprefix("+")
    return "+" + digits if digits.isascii() and digits.isdigit() else None


def _timestamp(value: Any) -> datetime | None:
    """Unix seconds (a string in most payloads, an integer in some) as aware UTC."""
    seconds = _int(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
