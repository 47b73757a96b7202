"""The typed events the WhatsApp webhook parser turns a payload into.

Each update Meta sends becomes one of these frozen records, so upstream code matches on a type
instead of digging through JSON. `raw` keeps the item as it came, out of equality and repr,
for logging what the fields do not carry. Unknown message types and unknown status values are
kept as strings rather than closed enums, since Meta adds new ones without notice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

__all__ = [
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
]


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
