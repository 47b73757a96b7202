"""Between WhatsApp's parsed webhook and the handlers: each parsed update as the handler
event it stands for (or a log line for what nobody acts on), inbound attachments fetched
through the Graph API under the size cap, and the admin numbers the handlers recognise. The
handlers never see the parser's types or the Graph client.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.config import Settings
from bot.whatsapp import events as wa
from bot.whatsapp.client import GraphClient
from bot.whatsapp.errors import MediaTooLargeError, WhatsAppError
from handlers.events import (
    DeliveryStatus,
    Identity,
    InboundEvent,
    IncomingMessage,
    MediaRef,
    PreferenceChange,
    TemplateReview,
)
from handlers.inbound_context import MediaUnavailable
from scheduler.phones import InvalidPhone, normalize_phone

log = logging.getLogger(__name__)


class GraphMedia:
    """Inbound attachments through the Graph API, refused over the size cap."""

    def __init__(self, graph: GraphClient, max_bytes: int) -> None:
        self.graph = graph
        self.max_bytes = max_bytes

    async def fetch(self, media_id: str) -> bytes:
        try:
            _info, data = await self.graph.fetch_media(media_id, self.max_bytes)
        except MediaTooLargeError as err:
            limit = self.max_bytes / (1024 * 1024)
            raise MediaUnavailable(f"the file is larger than the {limit:g} MB limit") from err
        except WhatsAppError as err:
            raise MediaUnavailable(f"WhatsApp did not hand it over ({err})") from err
        return data


# --- parser events to handler events ----------------------------------------------------


def to_inbound_event(event: wa.Event) -> InboundEvent | None:
    """The handlers' view of a parsed update; None for what only gets logged."""
    if isinstance(event, wa.InboundMessage):
        media = event.media
        return IncomingMessage(
            wamid=event.wamid,
            sender=_identity(event.sender),
            at=event.timestamp,
            kind=event.kind,
            text=event.text or _readable(event.kind, event.raw),
            payload=event.payload,
            media=MediaRef(media.id, media.filename, media.mime_type) if media else None,
            context_wamid=event.context_wamid,
        )
    if isinstance(event, wa.StatusUpdate):
        error = event.errors[0] if event.errors else None
        recipient = None
        if event.recipient is not None or event.recipient_user_id is not None:
            recipient = Identity(event.recipient, event.recipient_user_id)
        return DeliveryStatus(
            wamid=event.wamid,
            status=event.status,
            at=event.timestamp,
            recipient=recipient,
            callback_data=event.callback_data,
            error_code=event.error_codes[0] if event.error_codes else None,
            error_detail=(error.details or error.message or error.title) if error else None,
        )
    if isinstance(event, wa.PreferenceUpdate):
        return PreferenceChange(
            sender=_identity(event.sender),
            category=event.category,
            value=event.value,
            at=event.timestamp,
        )
    if isinstance(event, wa.TemplateStatusUpdate):
        return TemplateReview(
            name=event.template_name,
            language=event.language,
            event=event.event,
            reason=event.reason,
            detail=event.detail,
        )
    return None


def _readable(kind: str, raw: dict[str, Any]) -> str | None:
    """Words for the message kinds the parser leaves without text, for forwarded replies."""
    body = raw.get(kind)
    if kind == "location" and isinstance(body, dict):
        place = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
        where = f"{body.get('latitude')}, {body.get('longitude')}"
        return f"{place} ({where})" if place else where
    if kind == "contacts" and isinstance(body, list):
        names = [
            str(card["name"].get("formatted_name"))
            for card in body
            if isinstance(card, dict)
            and isinstance(card.get("name"), dict)
            and card["name"].get("formatted_name")
        ]
        return ", ".join(names) or None
    return None


def _identity(sender: wa.Sender) -> Identity:
    return Identity(sender.wa_id, sender.user_id, sender.profile_name)


def describe_unhandled(event: wa.Event) -> str:
    """A log line for an update nobody acts on (never the raw payload: it holds numbers)."""
    if isinstance(event, wa.FieldError):
        codes = ", ".join(
            f"{e.code} {e.details or e.message or e.title or ''}".strip() for e in event.errors
        )
        return f"WhatsApp reported errors for the business number: {codes}"
    if isinstance(event, wa.UnknownEvent):
        return f"unknown shape, acknowledged: {event.description}"
    return f"unhandled {type(event).__name__}"


def admin_numbers(settings: Settings) -> frozenset[str]:
    """The admin WhatsApp numbers in E.164.

    A number the phone library doubts but that is written in full international form is
    still taken as written (WhatsApp's ``wa_id`` is exactly those digits); anything else is
    logged and left out.
    """
    found = set()
    for raw in settings.admin_whatsapp_numbers:
        try:
            found.add(normalize_phone(raw, settings.default_region))
        except InvalidPhone as err:
            digits = "".join(ch for ch in raw if ch in "0123456789")
            if raw.strip().startswith("+") and 7 <= len(digits) <= 15:
                found.add("+" + digits)
                log.warning("DRIPBOT_ADMIN_WHATSAPP_NUMBERS: %r taken as written (%s)", raw, err)
            else:
                log.warning("DRIPBOT_ADMIN_WHATSAPP_NUMBERS: ignoring %r (%s)", raw, err)
    return frozenset(found)
