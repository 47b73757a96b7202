"""The rows an inbound message writes first: its contact, and the message's own record.

WhatsApp names a lead by phone, by business-scoped user id, or both: the contact is found by
either, created on first contact, and two records that turn out to be one person become one.
The message is recorded once per WhatsApp id (an insert that skips a conflict, on either
backend), which is what lets a replayed message be recognised and skipped.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.events import Identity, IncomingMessage
from handlers.optout import OptOutSource
from scheduler.contacts import ContactRecord, contact_record
from storage.database import Database
from storage.models import Contact, Enrollment, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)


async def is_recorded(db: Database, wamid: str) -> bool:
    async with db.engine.connect() as conn:
        query = select(exists().where(InboundMessage.wamid == wamid))
        return bool((await conn.execute(query)).scalar())


async def record_message(
    conn: AsyncConnection, workspace_id: int, contact_id: int, message: IncomingMessage
) -> bool:
    """Write the message once; False when its WhatsApp id was already recorded."""
    statement = (
        insert_or_skip(conn, InboundMessage)
        .values(
            workspace_id=workspace_id,
            contact_id=contact_id,
            wamid=message.wamid,
            kind=message.kind[:30],
            body=message.text,
            received_at=message.at,
        )
        .returning(InboundMessage.id)
    )
    return (await conn.execute(statement)).first() is not None


def insert_or_skip(conn: AsyncConnection, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either backend."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


async def ensure_contact(
    conn: AsyncConnection,
    workspace_id: int,
    who: Identity,
    *,
    now: datetime,
    window_at: datetime | None = None,
) -> tuple[ContactRecord, str | None]:
    """The contact WhatsApp means, created on first contact, with both ids kept.

    Returns the contact and, when two records turned out to be one person and only the
    other one was opted out, that opt-out's source for the caller to apply under the lock.
    ``window_at`` records a user message at that time (opening the 24-hour window).
    """
    if who.phone is None and who.user_id is None:
        raise ValueError("a WhatsApp user without phone or user id")
    by_phone, by_user = await contact_matches(conn, workspace_id, who)
    inherited: str | None = None
    # The user id can go on the record only when no other record holds it.
    may_take_user_id = by_user is None
    dirty = False
    if by_phone is not None and by_user is not None and by_phone.id != by_user.id:
        dirty, inherited = await _merge(conn, by_user, into=by_phone, now=now)
    found = by_phone or by_user
    if found is None:
        await conn.execute(
            insert_or_skip(conn, Contact).values(
                workspace_id=workspace_id,
                phone=who.phone,
                user_id=who.user_id,
                name=who.name,
                custom_fields={},
                created_at=now,
                updated_at=now,
            )
        )
        by_phone, by_user = await contact_matches(conn, workspace_id, who)
        found = by_phone or by_user
        assert found is not None, "the contact was just written"
    values: dict[str, Any] = {}
    if found.phone is None and who.phone is not None:
        values["phone"] = who.phone
    if found.user_id is None and who.user_id is not None and may_take_user_id:
        values["user_id"] = who.user_id
    if found.name is None and who.name:
        values["name"] = who.name
    if values:
        values["updated_at"] = now
        await conn.execute(update(Contact).where(Contact.id == found.id).values(**values))
    if window_at is not None:
        await conn.execute(
            update(Contact)
            .where(
                Contact.id == found.id,
                or_(Contact.last_inbound_at.is_(None), Contact.last_inbound_at < window_at),
            )
            .values(last_inbound_at=window_at)
        )
    if dirty or values or window_at is not None:
        found = contact_record(
            (await conn.execute(select(Contact).where(Contact.id == found.id))).one()
        )
    return found, inherited


async def contact_matches(
    conn: AsyncConnection, workspace_id: int, who: Identity
) -> tuple[ContactRecord | None, ContactRecord | None]:
    conditions = []
    if who.phone is not None:
        conditions.append(Contact.phone == who.phone)
    if who.user_id is not None:
        conditions.append(Contact.user_id == who.user_id)
    rows = [
        contact_record(row)
        for row in await conn.execute(
            select(Contact).where(Contact.workspace_id == workspace_id, or_(*conditions))
        )
    ]
    by_phone = next((c for c in rows if who.phone is not None and c.phone == who.phone), None)
    by_user = next((c for c in rows if who.user_id is not None and c.user_id == who.user_id), None)
    return by_phone, by_user


async def _merge(
    conn: AsyncConnection, other: ContactRecord, *, into: ContactRecord, now: datetime
) -> tuple[bool, str | None]:
    """Fold a user-id-only contact into the contact with the phone (same person).

    Returns whether it merged, and the opt-out the phone's contact inherits, if any.
    """
    if other.phone is not None:
        # The user id belongs to a record with another phone: leave both as they are.
        log.info("user id of contact %s also seen with contact %s's phone", other.id, into.id)
        return False, None
    await conn.execute(
        update(Contact).where(Contact.id == other.id).values(user_id=None, updated_at=now)
    )
    await conn.execute(
        update(Contact)
        .where(Contact.id == into.id)
        .values(
            user_id=other.user_id,
            name=func.coalesce(Contact.name, other.name),
            updated_at=now,
        )
    )
    if other.last_inbound_at is not None:
        await conn.execute(
            update(Contact)
            .where(
                Contact.id == into.id,
                or_(
                    Contact.last_inbound_at.is_(None),
                    Contact.last_inbound_at < other.last_inbound_at,
                ),
            )
            .values(last_inbound_at=other.last_inbound_at)
        )
    for table in (InboundMessage, OutboundMessage):
        await conn.execute(
            update(table).where(table.contact_id == other.id).values(contact_id=into.id)
        )
    enrolled = await conn.execute(select(exists().where(Enrollment.contact_id == other.id)))
    if not enrolled.scalar():
        await conn.execute(delete(Contact).where(Contact.id == other.id))
    if other.opted_out_at is not None and into.opted_out_at is None:
        return True, other.opt_out_source or OptOutSource.KEYWORD.value
    return True, None
