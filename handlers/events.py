"""What WhatsApp tells us, as plain values the handlers act on.

The webhook edge (``bot``) reads Meta's payloads and maps them into these types, so the
handlers never see a Graph API shape and can be driven from tests or other channels alike.
Every instant is aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Identity:
    """A WhatsApp user: an E.164 phone, a business-scoped user id (BSUID), or both.

    A user with a WhatsApp username may arrive with only ``user_id``; either one identifies
    the contact.
    """

    phone: str | None
    user_id: str | None
    #: the WhatsApp profile name, when the payload carries it
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MediaRef:
    """An attachment that stays on Meta's servers until fetched by ``id``."""

    id: str | None
    filename: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message a user sent to the business.

    ``kind`` is WhatsApp's message type (text, button, interactive, image, document, reaction,
    location, contacts, system, unsupported, ...). ``text`` is what a person would read (the
    body, a button label, a caption, an emoji); ``payload`` the machine value behind it (a
    button payload, a reply id, a system event type).
    """

    wamid: str
    sender: Identity
    at: datetime
    kind: str
    text: str | None = None
    payload: str | None = None
    media: MediaRef | None = None
    #: the business message this one answers or reacts to
    context_wamid: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """What happened to a message we sent: sent, delivered, read, failed (or newer values).

    ``callback_data`` echoes what the send carried (``dripbot:<outbox id>``), which is how a
    send whose answer was lost finds its record.
    """

    wamid: str
    status: str
    at: datetime
    recipient: Identity | None = None
    callback_data: str | None = None
    error_code: int | None = None
    #: Meta's explanation of the failure (details, else message, else title)
    error_detail: str | None = None


@dataclass(frozen=True, slots=True)
class PreferenceChange:
    """A user's choice in WhatsApp's own marketing controls: ``stop`` or ``resume``."""

    sender: Identity
    category: str
    value: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TemplateReview:
    """Meta's verdict on a message template (APPROVED, REJECTED, PAUSED, DISABLED, ...)."""

    name: str | None
    language: str | None
    event: str
    reason: str | None = None
    detail: str | None = None


InboundEvent = IncomingMessage | DeliveryStatus | PreferenceChange | TemplateReview
