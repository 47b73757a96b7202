"""Pausing, resuming and archiving a sequence, and the enrollment-wide moves they make.

Pausing only marks the sequence; resuming moves every pending message later by the time
spent paused so the remaining steps keep their spacing, and archiving ends the live
enrollments. The same moves serve other callers: Meta's per-user marketing cap shifts one
contact's later steps, and an opt-out or a reply stops enrollments.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from scheduler.errors import Invalid
from scheduler.sequence_records import SequenceRecord, find_sequence
from storage.database import Database
from storage.models import Enrollment, OutboundMessage, Sequence, Step
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus, SequenceStatus


async def set_status(
    db: Database, ref: str | int, status: SequenceStatus, *, now: datetime
) -> SequenceRecord:
    """Pause, resume or archive; resuming shifts what is left by the time spent paused."""
    async with db.engine.begin() as conn:
        sequence = await find_sequence(conn, db.workspace_id, ref)
        if sequence.status == SequenceStatus.ARCHIVED:
            raise Invalid(f"sequence {sequence.name!r} is archived; /clone it to use it again")
        if status == SequenceStatus.PAUSED and sequence.status == SequenceStatus.PAUSED:
            raise Invalid(f"sequence {sequence.name!r} is already paused")
        await apply_status(conn, sequence, status, now=now)
        return await find_sequence(conn, db.workspace_id, sequence.id)


async def apply_status(
    conn: AsyncConnection, sequence: SequenceRecord, status: SequenceStatus, *, now: datetime
) -> None:
    """Move a sequence to ``status`` with what that means for its steps and enrollments."""
    if status == SequenceStatus.PAUSED:
        await conn.execute(
            update(Sequence)
            .where(Sequence.id == sequence.id)
            .values(status=status.value, paused_at=now, updated_at=now)
        )
    elif status == SequenceStatus.ACTIVE:
        # resuming also clears steps paused by a rejected template
        await conn.execute(
            update(Step)
            .where(Step.sequence_id == sequence.id, Step.paused_at.is_not(None))
            .values(paused_at=None, pause_reason=None)
        )
        if sequence.status == SequenceStatus.PAUSED and sequence.paused_at is not None:
            await shift_pending(conn, now - sequence.paused_at, now=now, sequence_id=sequence.id)
        await conn.execute(
            update(Sequence)
            .where(Sequence.id == sequence.id)
            .values(status=status.value, paused_at=None, updated_at=now)
        )
    else:
        await conn.execute(
            update(Sequence)
            .where(Sequence.id == sequence.id)
            .values(status=status.value, paused_at=None, keyword=None, updated_at=now)
        )
        await stop_enrollments(conn, now=now, reason="sequence archived", sequence_id=sequence.id)


async def shift_pending(
    conn: AsyncConnection,
    delta: timedelta,
    *,
    now: datetime,
    sequence_id: int | None = None,
    enrollment_id: int | None = None,
    contact_id: int | None = None,
    after: datetime | None = None,
) -> int:
    """Move the scheduled messages of live enrollments later by ``delta``.

    Used when a pause ends (the remaining steps keep their spacing) and when Meta's per-user
    marketing cap defers one step (the contact's later steps move with it).
    """
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return 0
    conditions: list[ColumnElement[bool]] = [
        Enrollment.status.in_([s.value for s in LIVE_ENROLLMENT])
    ]
    if sequence_id is not None:
        conditions.append(Enrollment.sequence_id == sequence_id)
    if enrollment_id is not None:
        conditions.append(Enrollment.id == enrollment_id)
    if contact_id is not None:
        conditions.append(Enrollment.contact_id == contact_id)
    enrollment_ids = select(Enrollment.id).where(*conditions)
    pending = select(OutboundMessage.id, OutboundMessage.due_at).where(
        OutboundMessage.enrollment_id.in_(enrollment_ids),
        OutboundMessage.status == MessageStatus.SCHEDULED.value,
    )
    if after is not None:
        pending = pending.where(OutboundMessage.due_at >= after)
    rows = [{"mid": r.id, "due": r.due_at + delta} for r in await conn.execute(pending)]
    if rows:
        await conn.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == bindparam("mid"))
            .values(due_at=bindparam("due"), updated_at=now),
            rows,
        )
    await conn.execute(
        update(Enrollment)
        .where(*conditions)
        .values(shift_seconds=Enrollment.shift_seconds + seconds)
    )
    return len(rows)


async def stop_enrollments(
    conn: AsyncConnection,
    *,
    now: datetime,
    reason: str,
    status: EnrollmentStatus = EnrollmentStatus.STOPPED,
    sequence_id: int | None = None,
    contact_id: int | None = None,
    enrollment_id: int | None = None,
) -> int:
    """End live enrollments and cancel what they still had scheduled."""
    conditions: list[ColumnElement[bool]] = [
        Enrollment.status.in_([s.value for s in LIVE_ENROLLMENT])
    ]
    if sequence_id is not None:
        conditions.append(Enrollment.sequence_id == sequence_id)
    if contact_id is not None:
        conditions.append(Enrollment.contact_id == contact_id)
    if enrollment_id is not None:
        conditions.append(Enrollment.id == enrollment_id)
    ids = list((await conn.execute(select(Enrollment.id).where(*conditions))).scalars())
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        await conn.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.enrollment_id.in_(chunk),
                OutboundMessage.status == MessageStatus.SCHEDULED.value,
            )
            .values(status=MessageStatus.CANCELLED.value, error_detail=reason, updated_at=now)
        )
        await conn.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(chunk))
            .values(status=status.value, ended_at=now, end_reason=reason)
        )
    return len(ids)
