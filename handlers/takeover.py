"""Takeover: an admin answers a lead by hand, and automation steps aside for a while.

A lead's reply is forwarded into each admin chat; :func:`record_forward` remembers which chat
message stands for which contact. When an admin answers that message, :func:`answer_lead`
queues the answer as a one-off outbox row (the dispatcher sends it like any other message,
and the outbox's hold rule exempts it) and holds the contact's drips for
``takeover_hours``, so a scheduled drip never talks over the person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from scheduler.clock import Clock
from scheduler.contacts import get_contact
from scheduler.errors import Invalid
from scheduler.options import EngineOptions
from storage.database import Database
from storage.models import Contact, ForwardedMessage, OutboundMessage
from storage.states import MessageStatus

#: WhatsApp's limit for a text message body
MAX_TEXT = 4096
#: the 24-hour customer-service window inside which free text reaches a lead
WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Takeover:
    """What an admin's answer did: the message queued and how long the drips wait."""

    contact_id: int
    #: "Ana Lima (+15551234567)", as admins see contacts everywhere
    label: str
    outbox_id: int
    hold_until: datetime
    #: False when the lead last wrote more than 24 hours ago: WhatsApp refuses free text then
    window_open: bool


async def record_forward(
    db: Database, chat_id: int, message_id: int, contact_id: int, *, now: datetime
) -> None:
    """Remember that chat message ``message_id`` in ``chat_id`` carries ``contact_id``'s words.

    Recording the same message twice is harmless.
    """
    try:
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(ForwardedMessage).values(
                    chat_id=chat_id, message_id=message_id, contact_id=contact_id, created_at=now
                )
            )
    except IntegrityError:
        pass  # already recorded


async def forwarded_contact(db: Database, chat_id: int, message_id: int) -> int | None:
    """The contact whose forwarded words are message ``message_id`` of ``chat_id``, if any."""
    async with db.engine.connect() as conn:
        found = (
            await conn.execute(
                select(ForwardedMessage.contact_id).where(
                    ForwardedMessage.chat_id == chat_id, ForwardedMessage.message_id == message_id
                )
            )
        ).scalar_one_or_none()
    return None if found is None else int(found)


async def answer_lead(
    db: Database, clock: Clock, options: EngineOptions, contact_id: int, text: str
) -> Takeover:
    """Queue ``text`` to the lead now and hold their drips for ``options.takeover_hours``.

    Raises :class:`~scheduler.errors.Invalid` when nothing can be sent (empty or too long a
    text, an opted-out lead, a lead known only by a WhatsApp user id) and
    :class:`~scheduler.errors.NotFound` for an unknown contact.
    """
    body = text.strip()
    if not body:
        raise Invalid("there is nothing to send: the answer is empty")
    if len(body) > MAX_TEXT:
        raise Invalid(
            f"WhatsApp texts are at most {MAX_TEXT:,} characters; this answer has {len(body):,}"
        )
    now = clock.now()
    hold = now + timedelta(hours=options.takeover_hours)
    async with db.engine.begin() as conn:
        contact = await get_contact(conn, contact_id)
        if contact.opted_out_at is not None:
            raise Invalid(f"{contact.label} opted out; nothing more is sent to them")
        if not contact.phone:
            raise Invalid(f"{contact.label} has no phone number, so WhatsApp cannot be answered")
        outbox_id = (
            await conn.execute(
                insert(OutboundMessage)
                .values(
                    workspace_id=db.workspace_id,
                    contact_id=contact.id,
                    purpose="takeover",
                    status=MessageStatus.SCHEDULED.value,
                    due_at=now,
                    attempts=0,
                    payload={"message": {"kind": "text", "text": body}},
                    dry_run=False,
                    business_initiated=False,
                    created_at=now,
                    updated_at=now,
                )
                .returning(OutboundMessage.id)
            )
        ).scalar_one()
        # A later hold already in place (an earlier, longer takeover) is kept.
        await conn.execute(
            update(Contact)
            .where(
                Contact.id == contact.id,
                or_(Contact.hold_until.is_(None), Contact.hold_until < hold),
            )
            .values(hold_until=hold, updated_at=now)
        )
        held = (
            await conn.execute(select(Contact.hold_until).where(Contact.id == contact.id))
        ).scalar_one()
    window_open = contact.last_inbound_at is not None and contact.last_inbound_at > now - WINDOW
    return Takeover(
        contact_id=contact.id,
        label=contact.label,
        outbox_id=int(outbox_id),
        hold_until=held or hold,
        window_open=window_open,
    )
