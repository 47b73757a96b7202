"""Sequences as the REST API sees them: by id, replaced whole, and their enrollments in pages.

Chat commands edit one step at a time; an API client sends the whole sequence back. Replacing
it is one transaction that keeps the rule of every edit: pending messages follow the new
steps, nothing already sent is sent again, and nothing whose time has passed for a contact is
sent retroactively. Steps are matched rather than rebuilt, so a step that did not change
keeps its identity (its statistics, its place in each contact's history): identical steps are
kept as they are, the remaining ones are paired in send order and edited, and what is left
over is removed or added.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.contacts import ContactRecord, contact_record
from scheduler.errors import Conflict, Invalid, NotFound
from scheduler.options import EngineOptions, Window
from scheduler.sequence_records import (
    SequenceRecord,
    StepRecord,
    load_steps,
    name_key,
    normalize_keyword,
    sequence_record,
    step_values,
)
from scheduler.sequence_status import apply_status
from scheduler.sequences import Created
from scheduler.step_edits import (
    cancel,
    live_enrollments,
    outbox_row,
    planned_due,
    renumber,
    retime_step,
    window_warnings,
)
from scheduler.steps import StepSpec
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step
from storage.states import EnrollmentStatus, MessageStatus, SequenceStatus

#: the largest id either backend stores (PostgreSQL BIGINT, SQLite INTEGER)
MAX_ID = 2**63 - 1


async def sequence_by_id(
    conn: AsyncConnection, workspace_id: int, sequence_id: int
) -> SequenceRecord:
    """A sequence by its id only (a name made of digits never stands in for an id here)."""
    if not 1 <= sequence_id <= MAX_ID:
        raise NotFound(f"no sequence {sequence_id}")
    row = (
        await conn.execute(
            select(Sequence).where(
                Sequence.workspace_id == workspace_id, Sequence.id == sequence_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no sequence {sequence_id}")
    return sequence_record(row)


async def sequence_by_name(
    conn: AsyncConnection, workspace_id: int, name: str
) -> SequenceRecord | None:
    """A sequence by its name (case and spacing ignored) only."""
    row = (
        await conn.execute(
            select(Sequence).where(
                Sequence.workspace_id == workspace_id, Sequence.name_key == name_key(name)
            )
        )
    ).first()
    return None if row is None else sequence_record(row)


def engine_ref(name: str, sequence_id: int) -> str | int:
    """How to name a sequence to the engine's look-ups, which read digits as an id.

    Its name, unless the name is made of digits other than 0-9 (``"²"``): those pass
    ``str.isdigit`` without being a number ``int`` can read, so the id names it instead.
    """
    return sequence_id if name.isdigit() and not name.isascii() else name


async def replace_sequence(
    db: Database,
    sequence_id: int,
    *,
    name: str,
    description: str,
    status: SequenceStatus,
    send_window: str | None,
    stop_on_reply: bool,
    keyword: str | None,
    steps: Seq[StepSpec],
    now: datetime,
    options: EngineOptions,
) -> Created:
    """Make the sequence exactly what the caller describes, in one transaction."""
    name = " ".join(name.split())
    if not name:
        raise Invalid("a sequence needs a name")
    if len(name) > 200:
        raise Invalid("a sequence name is at most 200 characters")
    if send_window is not None:
        try:
            Window.parse(send_window)
        except ValueError as err:
            raise Invalid(str(err)) from None
    keyword = normalize_keyword(keyword) if keyword and keyword.strip() else None
    try:
        async with db.engine.begin() as conn:
            current = await sequence_by_id(conn, db.workspace_id, sequence_id)
            if current.status == SequenceStatus.ARCHIVED:
                raise Conflict(f"sequence {current.name!r} is archived; clone it to use it again")
            await conn.execute(
                update(Sequence)
                .where(Sequence.id == sequence_id)
                .values(
                    name=name,
                    name_key=name_key(name),
                    description=description,
                    send_window=send_window,
                    stop_on_reply=stop_on_reply,
                    keyword=keyword,
                    updated_at=now,
                )
            )
            updated = await sequence_by_id(conn, db.workspace_id, sequence_id)
            await _replace_steps(conn, db.workspace_id, updated, steps, now=now, options=options)
            if status != updated.status:
                await apply_status(conn, updated, status, now=now)
            record = await sequence_by_id(conn, db.workspace_id, sequence_id)
            step_records = await load_steps(conn, sequence_id)
    except IntegrityError as err:
        if "keyword" in str(err.orig).lower() and keyword:
            raise Conflict(f"another sequence already uses the keyword {keyword!r}") from None
        raise Conflict(f"a sequence named {name!r} already exists") from None
    warnings = window_warnings([s.spec for s in step_records], has_keyword=bool(record.keyword))
    return Created(record, step_records, warnings)


async def _replace_steps(
    conn: AsyncConnection,
    workspace_id: int,
    sequence: SequenceRecord,
    specs: Seq[StepSpec],
    *,
    now: datetime,
    options: EngineOptions,
) -> None:
    old = await load_steps(conn, sequence.id)
    wanted = sorted(specs, key=lambda s: s.timing.nominal_offset())
    unmatched_old = list(old)
    unmatched_new: list[StepSpec] = []
    for spec in wanted:
        same = next((step for step in unmatched_old if step.spec == spec), None)
        if same is None:
            unmatched_new.append(spec)
        else:
            unmatched_old.remove(same)
    for step, spec in zip(unmatched_old, unmatched_new, strict=False):
        await conn.execute(update(Step).where(Step.id == step.id).values(**step_values(spec)))
        if spec.timing != step.spec.timing:
            await retime_step(conn, sequence, step.id, spec, now=now, options=options)
    paired = min(len(unmatched_old), len(unmatched_new))
    for step in unmatched_old[paired:]:
        await _remove_step(conn, step, now=now)
    for spec in unmatched_new[paired:]:
        await _add_step(conn, workspace_id, sequence, spec, now=now, options=options)
    await renumber(conn, sequence.id)


async def _remove_step(conn: AsyncConnection, step: StepRecord, *, now: datetime) -> None:
    # Soft delete: sent messages keep pointing at the step they came from.
    await conn.execute(update(Step).where(Step.id == step.id).values(deleted_at=now))
    pending = await conn.execute(
        select(OutboundMessage.id).where(
            OutboundMessage.step_id == step.id,
            OutboundMessage.status == MessageStatus.SCHEDULED.value,
        )
    )
    await cancel(conn, list(pending.scalars()), now, "step removed")


async def _add_step(
    conn: AsyncConnection,
    workspace_id: int,
    sequence: SequenceRecord,
    spec: StepSpec,
    *,
    now: datetime,
    options: EngineOptions,
) -> None:
    step_id = (
        await conn.execute(
            insert(Step)
            .values(sequence_id=sequence.id, position=10_000, created_at=now, **step_values(spec))
            .returning(Step.id)
        )
    ).scalar_one()
    window = sequence.window(options)
    rows = []
    for enrollment in await live_enrollments(conn, sequence.id):
        due = planned_due(
            spec, enrollment.enrolled_at, enrollment.shift_seconds, enrollment.timezone, window
        )
        if due >= now:  # a time already past for this contact is never sent retroactively
            rows.append(outbox_row(workspace_id, sequence.id, enrollment, int(step_id), due, now))
    if rows:
        await conn.execute(insert(OutboundMessage), rows)


# --- enrollments ------------------------------------------------------------------------


async def enrollment_counts(
    conn: AsyncConnection, sequence_ids: Seq[int]
) -> dict[int, dict[str, int]]:
    """Enrollments per sequence and state; every state is present, zero or not."""
    counts = {sid: {s.value: 0 for s in EnrollmentStatus} for sid in sequence_ids}
    if not sequence_ids:
        return counts
    rows = await conn.execute(
        select(Enrollment.sequence_id, Enrollment.status, func.count())
        .where(Enrollment.sequence_id.in_(list(sequence_ids)))
        .group_by(Enrollment.sequence_id, Enrollment.status)
    )
    for sequence_id, status, count in rows:
        counts[sequence_id][status] = int(count)
    return counts


@dataclass(frozen=True)
class EnrollmentDetail:
    id: int
    sequence_id: int
    sequence: str
    status: str
    source: str
    timezone: str
    enrolled_at: datetime
    paused_at: datetime | None
    replied_at: datetime | None
    completed_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    contact: ContactRecord
    #: the next scheduled message: when it is due and the 1-based step it sends
    next_due: datetime | None
    next_step: int | None


def _enrollment_query() -> Any:
    return (
        select(
            Enrollment.id.label("enrollment_id"),
            Enrollment.sequence_id,
            Sequence.name.label("sequence_name"),
            Enrollment.status.label("enrollment_status"),
            Enrollment.source,
            Enrollment.timezone.label("enrollment_timezone"),
            Enrollment.enrolled_at,
            Enrollment.paused_at.label("enrollment_paused_at"),
            Enrollment.replied_at,
            Enrollment.completed_at,
            Enrollment.ended_at,
            Enrollment.end_reason,
            Contact,
        )
        .join(Sequence, Sequence.id == Enrollment.sequence_id)
        .join(Contact, Contact.id == Enrollment.contact_id)
    )


async def _details(conn: AsyncConnection, rows: list[Any]) -> list[EnrollmentDetail]:
    ids = [row.enrollment_id for row in rows]
    upcoming: dict[int, tuple[datetime, int]] = {}
    if ids:
        pending = await conn.execute(
            select(OutboundMessage.enrollment_id, OutboundMessage.due_at, Step.position)
            .join(Step, Step.id == OutboundMessage.step_id)
            .where(
                OutboundMessage.enrollment_id.in_(ids),
                OutboundMessage.status == MessageStatus.SCHEDULED.value,
            )
            .order_by(OutboundMessage.due_at, OutboundMessage.id)
        )
        for enrollment_id, due_at, position in pending:
            if enrollment_id is not None:
                upcoming.setdefault(enrollment_id, (due_at, position))
    details = []
    for row in rows:
        due, step = upcoming.get(row.enrollment_id, (None, None))
        details.append(
            EnrollmentDetail(
                id=row.enrollment_id,
                sequence_id=row.sequence_id,
                sequence=row.sequence_name,
                status=row.enrollment_status,
                source=row.source,
                timezone=row.enrollment_timezone,
                enrolled_at=row.enrolled_at,
                paused_at=row.enrollment_paused_at,
                replied_at=row.replied_at,
                completed_at=row.completed_at,
                ended_at=row.ended_at,
                end_reason=row.end_reason,
                contact=contact_record(row),
                next_due=due,
                next_step=step,
            )
        )
    return details


async def enrollment_page(
    conn: AsyncConnection,
    workspace_id: int,
    sequence_id: int,
    *,
    status: EnrollmentStatus | None,
    offset: int,
    limit: int,
) -> tuple[int, list[EnrollmentDetail]]:
    """One page of a sequence's enrollments, oldest first, and how many there are in all."""
    conditions = [Enrollment.workspace_id == workspace_id, Enrollment.sequence_id == sequence_id]
    if status is not None:
        conditions.append(Enrollment.status == status.value)
    total = (
        await conn.execute(select(func.count()).select_from(Enrollment).where(*conditions))
    ).scalar_one()
    rows = list(
        await conn.execute(
            _enrollment_query()
            .where(*conditions)
            .order_by(Enrollment.id)
            .offset(offset)
            .limit(limit)
        )
    )
    return int(total), await _details(conn, rows)


async def enrollment_by_id(
    conn: AsyncConnection, workspace_id: int, enrollment_id: int
) -> EnrollmentDetail:
    if not 1 <= enrollment_id <= MAX_ID:
        raise NotFound(f"no enrollment {enrollment_id}")
    rows = list(
        await conn.execute(
            _enrollment_query().where(
                Enrollment.workspace_id == workspace_id, Enrollment.id == enrollment_id
            )
        )
    )
    if not rows:
        raise NotFound(f"no enrollment {enrollment_id}")
    return (await _details(conn, rows))[0]
