"""Contacts: finding them, pausing them, opting them out, and what they get next.

Opt-out is the one rule that must never bend: it ends every live enrollment and cancels every
pending message for the number in one transaction, so nothing is claimed after it commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.contact_locks import ContactLocks
from scheduler.errors import Invalid, NotFound
from scheduler.phones import InvalidPhone, normalize_phone
from scheduler.sequence_records import find_sequence
from scheduler.sequence_status import shift_pending, stop_enrollments
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus


@dataclass(frozen=True)
class ContactRecord:
    id: int
    phone: str | None
    user_id: str | None
    name: str | None
    first_name: str | None
    email: str | None
    company: str | None
    timezone: str | None
    custom_fields: dict[str, Any]
    opted_out_at: datetime | None
    opt_out_source: str | None
    undeliverable_at: datetime | None
    last_inbound_at: datetime | None
    hold_until: datetime | None
    paused_at: datetime | None

    @property
    def label(self) -> str:
        who = self.phone or self.user_id or f"contact {self.id}"
        return f"{self.name} ({who})" if self.name else who


def contact_record(row: Row[Any] | Any) -> ContactRecord:
    return ContactRecord(
        id=row.id,
        phone=row.phone,
        user_id=row.user_id,
        name=row.name,
        first_name=row.first_name,
        email=row.email,
        company=row.company,
        timezone=row.timezone,
        custom_fields=dict(row.custom_fields or {}),
        opted_out_at=row.opted_out_at,
        opt_out_source=row.opt_out_source,
        undeliverable_at=row.undeliverable_at,
        last_inbound_at=row.last_inbound_at,
        hold_until=row.hold_until,
        paused_at=row.paused_at,
    )


def parse_phone(text: str, default_region: str | None) -> str:
    try:
        return normalize_phone(text, default_region)
    except InvalidPhone as err:
        raise Invalid(f"{text!r} is not a valid phone number: {err}") from None


async def find_contact(
    conn: AsyncConnection, workspace_id: int, ref: str, default_region: str | None
) -> ContactRecord:
    """A contact by phone number (any common spelling) or by WhatsApp user id."""
    query = select(Contact).where(Contact.workspace_id == workspace_id)
    if "." in ref and ref[:2].isalpha():  # a business-scoped user id such as US.1349...
        row = (await conn.execute(query.where(Contact.user_id == ref))).first()
    else:
        phone = parse_phone(ref, default_region)
        row = (await conn.execute(query.where(Contact.phone == phone))).first()
    if row is None:
        raise NotFound(f"no contact with number {ref}")
    return contact_record(row)


async def get_contact(conn: AsyncConnection, contact_id: int) -> ContactRecord:
    row = (await conn.execute(select(Contact).where(Contact.id == contact_id))).first()
    if row is None:
        raise NotFound(f"no contact {contact_id}")
    return contact_record(row)


async def find_by_whatsapp(
    conn: AsyncConnection, workspace_id: int, phone: str | None, user_id: str | None
) -> ContactRecord | None:
    """The contact WhatsApp means, matched by phone or by business-scoped user id."""
    conditions = []
    if phone:
        conditions.append(Contact.phone == phone)
    if user_id:
        conditions.append(Contact.user_id == user_id)
    if not conditions:
        return None
    rows = list(
        await conn.execute(
            select(Contact).where(Contact.workspace_id == workspace_id, or_(*conditions))
        )
    )
    if not rows:
        return None
    # Prefer the row that matches the phone: it is the one enrollments hang on.
    rows.sort(key=lambda r: (r.phone != phone, r.id))
    return contact_record(rows[0])


# --- pausing ----------------------------------------------------------------------------


async def pause_contact(
    db: Database, ref: str, *, now: datetime, region: str | None
) -> ContactRecord:
    async with db.engine.begin() as conn:
        contact = await find_contact(conn, db.workspace_id, ref, region)
        if contact.paused_at is not None:
            raise Invalid(f"{contact.label} is already paused")
        await conn.execute(
            update(Contact).where(Contact.id == contact.id).values(paused_at=now, updated_at=now)
        )
        return contact


async def resume_contact(
    db: Database, ref: str, *, now: datetime, region: str | None
) -> ContactRecord:
    async with db.engine.begin() as conn:
        contact = await find_contact(conn, db.workspace_id, ref, region)
        if contact.paused_at is None:
            raise Invalid(f"{contact.label} is not paused")
        await shift_pending(conn, now - contact.paused_at, now=now, contact_id=contact.id)
        await conn.execute(
            update(Contact).where(Contact.id == contact.id).values(paused_at=None, updated_at=now)
        )
        return contact


async def set_enrollment_status(
    db: Database,
    sequence_ref: str | int,
    contact_ref: str,
    status: EnrollmentStatus,
    *,
    now: datetime,
    region: str | None,
) -> tuple[str, ContactRecord]:
    """Pause, resume or stop (unenroll) one contact in one sequence."""
    async with db.engine.begin() as conn:
        sequence = await find_sequence(conn, db.workspace_id, sequence_ref)
        contact = await find_contact(conn, db.workspace_id, contact_ref, region)
        row = (
            await conn.execute(
                select(Enrollment.id, Enrollment.status, Enrollment.paused_at).where(
                    Enrollment.sequence_id == sequence.id,
                    Enrollment.contact_id == contact.id,
                    Enrollment.status.in_([s.value for s in LIVE_ENROLLMENT]),
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"{contact.label} is not enrolled in {sequence.name!r}")
        if status == EnrollmentStatus.STOPPED:
            await stop_enrollments(
                conn, now=now, reason="unenrolled by an admin", enrollment_id=row.id
            )
        elif status == EnrollmentStatus.PAUSED:
            if row.status == EnrollmentStatus.PAUSED:
                raise Invalid(f"{contact.label} is already paused in {sequence.name!r}")
            await conn.execute(
                update(Enrollment)
                .where(Enrollment.id == row.id)
                .values(status=status.value, paused_at=now)
            )
        else:
            if row.status != EnrollmentStatus.PAUSED:
                raise Invalid(f"{contact.label} is not paused in {sequence.name!r}")
            await conn.execute(
                update(Enrollment)
                .where(Enrollment.id == row.id)
                .values(status=EnrollmentStatus.ACTIVE.value, paused_at=None)
            )
            if row.paused_at is not None:
                await shift_pending(conn, now - row.paused_at, now=now, enrollment_id=row.id)
        return sequence.name, contact


# --- opt-out ----------------------------------------------------------------------------


async def opt_out(conn: AsyncConnection, contact_id: int, *, source: str, now: datetime) -> bool:
    """Opt a contact out everywhere; False when they already were (nothing changes)."""
    changed = await conn.execute(
        update(Contact)
        .where(Contact.id == contact_id, Contact.opted_out_at.is_(None))
        .values(opted_out_at=now, opt_out_source=source, updated_at=now)
    )
    # Cancel whatever is still pending even if they were opted out already: belt and braces.
    await stop_enrollments(
        conn,
        now=now,
        reason=f"opted out ({source})",
        status=EnrollmentStatus.OPTED_OUT,
        contact_id=contact_id,
    )
    await conn.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.contact_id == contact_id,
            OutboundMessage.status == MessageStatus.SCHEDULED.value,
            OutboundMessage.purpose != "notice",
        )
        .values(status=MessageStatus.CANCELLED.value, error_detail="opted out", updated_at=now)
    )
    return bool(changed.rowcount)


async def opt_in(conn: AsyncConnection, contact_id: int, *, now: datetime) -> bool:
    """Undo an opt-out (the lead wrote START). Enrollments are not restarted."""
    changed = await conn.execute(
        update(Contact)
        .where(Contact.id == contact_id, Contact.opted_out_at.is_not(None))
        .values(opted_out_at=None, opt_out_source=None, updated_at=now)
    )
    return bool(changed.rowcount)


async def opt_out_number(
    db: Database,
    ref: str,
    *,
    now: datetime,
    region: str | None,
    source: str = "admin",
    locks: ContactLocks | None = None,
) -> tuple[ContactRecord, bool]:
    """An admin's /optout: works for numbers we have never seen too (creates the contact).

    The opt-out commits under the contact's send lock, like every opt-out, so no send
    already on its way can land after it.
    """
    async with db.engine.begin() as conn:
        try:
            contact = await find_contact(conn, db.workspace_id, ref, region)
        except NotFound:
            phone = parse_phone(ref, region)
            await conn.execute(
                insert(Contact).values(
                    workspace_id=db.workspace_id,
                    phone=phone,
                    custom_fields={},
                    created_at=now,
                    updated_at=now,
                )
            )
            contact = await find_contact(conn, db.workspace_id, phone, region)
    locks = locks if locks is not None else ContactLocks()
    async with locks.hold(contact.id), db.engine.begin() as conn:
        changed = await opt_out(conn, contact.id, source=source, now=now)
    return contact, changed


async def list_opted_out(db: Database, limit: int = 200) -> list[ContactRecord]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(Contact)
            .where(Contact.workspace_id == db.workspace_id, Contact.opted_out_at.is_not(None))
            .order_by(Contact.opted_out_at.desc())
            .limit(limit)
        )
        return [contact_record(r) for r in rows]


# --- what comes next --------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSend:
    message_id: int
    sequence: str
    step_position: int
    step_count: int
    due_at: datetime
    timezone: str
    status: str
    deferred_reason: str | None
    held_by: str | None  # why it will not go out at due_at (paused sequence, contact...)


async def pending_sends(
    conn: AsyncConnection, contact: ContactRecord, *, limit: int = 20
) -> list[PendingSend]:
    """The contact's scheduled messages, soonest first, with what holds them."""
    rows = await conn.execute(
        select(
            OutboundMessage.id,
            OutboundMessage.due_at,
            OutboundMessage.status,
            OutboundMessage.deferred_reason,
            Step.position,
            Step.paused_at.label("step_paused"),
            Sequence.id.label("sequence_id"),
            Sequence.name,
            Sequence.status.label("sequence_status"),
            Enrollment.status.label("enrollment_status"),
            Enrollment.timezone,
        )
        .join(Enrollment, Enrollment.id == OutboundMessage.enrollment_id)
        .join(Sequence, Sequence.id == OutboundMessage.sequence_id)
        .join(Step, Step.id == OutboundMessage.step_id)
        .where(
            OutboundMessage.contact_id == contact.id,
            OutboundMessage.status.in_(
                [MessageStatus.SCHEDULED.value, MessageStatus.SENDING.value]
            ),
        )
        .order_by(OutboundMessage.due_at, OutboundMessage.id)
        .limit(limit)
    )
    rows_list = list(rows)
    sequence_ids = {row.sequence_id for row in rows_list}
    counts: dict[int, int] = {}
    if sequence_ids:
        counted = await conn.execute(
            select(Step.sequence_id, func.count())
            .where(Step.sequence_id.in_(sequence_ids), Step.deleted_at.is_(None))
            .group_by(Step.sequence_id)
        )
        counts = {sequence_id: int(n) for sequence_id, n in counted}
    result = []
    for row in rows_list:
        held = None
        if contact.paused_at is not None:
            held = "contact paused"
        elif row.sequence_status != "active":
            held = f"sequence {row.sequence_status}"
        elif row.enrollment_status != "active":
            held = f"enrollment {row.enrollment_status}"
        elif row.step_paused is not None:
            held = "step paused (template rejected)"
        elif contact.hold_until is not None and contact.hold_until > row.due_at:
            held = "held while an admin talks to the lead"
        result.append(
            PendingSend(
                message_id=row.id,
                sequence=row.name,
                step_position=row.position,
                step_count=counts[row.sequence_id],
                due_at=row.due_at,
                timezone=row.timezone,
                status=row.status,
                deferred_reason=row.deferred_reason,
                held_by=held,
            )
        )
    return result


@dataclass(frozen=True)
class EnrollmentView:
    sequence: str
    status: str
    enrolled_at: datetime
    replied_at: datetime | None
    end_reason: str | None


async def enrollments_of(conn: AsyncConnection, contact_id: int) -> list[EnrollmentView]:
    rows = await conn.execute(
        select(
            Sequence.name,
            Enrollment.status,
            Enrollment.enrolled_at,
            Enrollment.replied_at,
            Enrollment.end_reason,
        )
        .join(Sequence, Sequence.id == Enrollment.sequence_id)
        .where(Enrollment.contact_id == contact_id)
        .order_by(Enrollment.enrolled_at.desc(), Enrollment.id.desc())
    )
    return [EnrollmentView(*row) for row in rows]


@dataclass(frozen=True)
class SentView:
    sequence: str | None
    step_position: int | None
    status: str
    at: datetime
    error_code: int | None
    detail: str | None


async def recent_messages(conn: AsyncConnection, contact_id: int, limit: int = 5) -> list[SentView]:
    rows = await conn.execute(
        select(
            Sequence.name,
            Step.position,
            OutboundMessage.status,
            OutboundMessage.updated_at,
            OutboundMessage.error_code,
            OutboundMessage.error_detail,
        )
        .outerjoin(Sequence, Sequence.id == OutboundMessage.sequence_id)
        .outerjoin(Step, Step.id == OutboundMessage.step_id)
        .where(
            OutboundMessage.contact_id == contact_id,
            OutboundMessage.status.not_in(
                [MessageStatus.SCHEDULED.value, MessageStatus.SENDING.value]
            ),
        )
        .order_by(OutboundMessage.updated_at.desc(), OutboundMessage.id.desc())
        .limit(limit)
    )
    return [SentView(*row) for row in rows]
