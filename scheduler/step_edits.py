"""Steps of a sequence: adding, editing, re-timing and removing them, one at a time.

Edits reach active enrollments: the outbox rows of steps not yet sent are re-timed, added or
cancelled, and nothing whose time has already passed for a contact is sent retroactively.
Each edit also warns about free-form steps that WhatsApp's 24-hour window will block.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.errors import NotFound
from scheduler.options import EngineOptions, Window
from scheduler.sequence_records import (
    SequenceRecord,
    StepRecord,
    find_sequence,
    load_steps,
    step_values,
)
from scheduler.steps import StepSpec
from scheduler.timing import due_at
from storage.database import Database
from storage.models import Enrollment, OutboundMessage, Sequence, Step
from storage.outbox import complete_enrollments
from storage.states import LIVE_ENROLLMENT, MessageStatus

#: one day: a free-form step this far after enrollment almost never finds an open window
WINDOW = timedelta(hours=24)


def window_warnings(specs: Seq[StepSpec], *, has_keyword: bool) -> list[str]:
    """Warn about free-form steps that most contacts will reach with their window closed.

    Only a lead's own message opens WhatsApp's 24-hour window; a text or media step without a
    fallback template is skipped for a lead whose window is closed.
    """
    ordered = sorted(specs, key=lambda s: s.timing.nominal_offset())
    warnings = []
    for number, spec in enumerate(ordered, start=1):
        if not spec.needs_open_window or spec.fallback is not None:
            continue
        late = spec.timing.nominal_offset() >= WINDOW
        if late or not has_keyword:
            why = (
                "more than 24 hours after enrollment"
                if late
                else "before the lead has written to you (unless they join by keyword)"
            )
            warnings.append(
                f"step {number} ({spec.timing.describe()}) is a {spec.kind} message due {why}: "
                "WhatsApp only allows templates outside the 24-hour window, so it will be "
                "skipped for most contacts. Add a fallback: '|| template <name> <lang> ...'."
            )
    return warnings


async def renumber(conn: AsyncConnection, sequence_id: int) -> list[StepRecord]:
    """Keep positions in send order, so /removestep 2 means the second step to go out."""
    steps = await load_steps(conn, sequence_id)
    ordered = sorted(steps, key=lambda s: (s.spec.timing.nominal_offset(), s.position, s.id))
    for position, step in enumerate(ordered, start=1):
        if step.position != position:
            await conn.execute(update(Step).where(Step.id == step.id).values(position=position))
    return await load_steps(conn, sequence_id)


async def live_enrollments(conn: AsyncConnection, sequence_id: int) -> list[Any]:
    rows = await conn.execute(
        select(
            Enrollment.id,
            Enrollment.contact_id,
            Enrollment.enrolled_at,
            Enrollment.timezone,
            Enrollment.shift_seconds,
        ).where(
            Enrollment.sequence_id == sequence_id,
            Enrollment.status.in_([s.value for s in LIVE_ENROLLMENT]),
        )
    )
    return list(rows)


def planned_due(
    spec: StepSpec, enrolled_at: datetime, shift_seconds: int, zone: str, window: Window | None
) -> datetime:
    """When a step is due for one enrollment, counting the shifts it has accumulated."""
    return due_at(spec.timing, enrolled_at + timedelta(seconds=shift_seconds), zone, window)


async def add_step(
    db: Database, ref: str | int, spec: StepSpec, *, now: datetime, options: EngineOptions
) -> tuple[StepRecord, list[str]]:
    async with db.engine.begin() as conn:
        sequence = await find_sequence(conn, db.workspace_id, ref, include_archived=False)
        step_id = (
            await conn.execute(
                insert(Step)
                .values(
                    sequence_id=sequence.id, position=10_000, created_at=now, **step_values(spec)
                )
                .returning(Step.id)
            )
        ).scalar_one()
        steps = await renumber(conn, sequence.id)
        window = sequence.window(options)
        rows = []
        for enrollment in await live_enrollments(conn, sequence.id):
            due = planned_due(
                spec, enrollment.enrolled_at, enrollment.shift_seconds, enrollment.timezone, window
            )
            if due < now:
                continue  # its time has passed for this contact: never sent retroactively
            rows.append(
                outbox_row(db.workspace_id, sequence.id, enrollment, int(step_id), due, now)
            )
        if rows:
            await conn.execute(insert(OutboundMessage), rows)
        await _touch(conn, sequence.id, now)
    added = next(s for s in steps if s.id == step_id)
    return added, window_warnings([spec], has_keyword=bool(sequence.keyword))


def outbox_row(
    workspace_id: int, sequence_id: int, enrollment: Any, step_id: int, due: datetime, now: datetime
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "contact_id": enrollment.contact_id,
        "enrollment_id": enrollment.id,
        "sequence_id": sequence_id,
        "step_id": step_id,
        "purpose": "drip",
        "status": MessageStatus.SCHEDULED.value,
        "due_at": due,
        "attempts": 0,
        "dry_run": False,
        "created_at": now,
        "updated_at": now,
    }


async def _step_at(conn: AsyncConnection, sequence: SequenceRecord, number: int) -> StepRecord:
    steps = await load_steps(conn, sequence.id)
    if not 1 <= number <= len(steps):
        count = f"{len(steps)} step{'s' if len(steps) != 1 else ''}"
        raise NotFound(f"sequence {sequence.name!r} has no step {number} (it has {count})")
    return steps[number - 1]


async def edit_step(
    db: Database,
    ref: str | int,
    number: int,
    spec: StepSpec,
    *,
    now: datetime,
    options: EngineOptions,
) -> tuple[StepRecord, list[str]]:
    async with db.engine.begin() as conn:
        sequence = await find_sequence(conn, db.workspace_id, ref, include_archived=False)
        old = await _step_at(conn, sequence, number)
        await conn.execute(update(Step).where(Step.id == old.id).values(**step_values(spec)))
        if spec.timing != old.spec.timing:
            await retime_step(conn, sequence, old.id, spec, now=now, options=options)
        steps = await renumber(conn, sequence.id)
        await _touch(conn, sequence.id, now)
    edited = next(s for s in steps if s.id == old.id)
    return edited, window_warnings([spec], has_keyword=bool(sequence.keyword))


async def retime_step(
    conn: AsyncConnection,
    sequence: SequenceRecord,
    step_id: int,
    spec: StepSpec,
    *,
    now: datetime,
    options: EngineOptions,
) -> None:
    window = sequence.window(options)
    pending = await conn.execute(
        select(
            OutboundMessage.id,
            Enrollment.enrolled_at,
            Enrollment.timezone,
            Enrollment.shift_seconds,
        )
        .join(Enrollment, Enrollment.id == OutboundMessage.enrollment_id)
        .where(
            OutboundMessage.step_id == step_id,
            OutboundMessage.status == MessageStatus.SCHEDULED.value,
        )
    )
    moved, cancelled = [], []
    for row in pending:
        due = planned_due(spec, row.enrolled_at, row.shift_seconds, row.timezone, window)
        if due < now:
            cancelled.append(row.id)
        else:
            moved.append({"mid": row.id, "due": due})
    if moved:
        await conn.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == bindparam("mid"))
            .values(due_at=bindparam("due"), updated_at=now),
            moved,
        )
    if cancelled:
        await cancel(conn, cancelled, now, "step re-timed to a moment already past")


async def cancel(conn: AsyncConnection, ids: list[int], now: datetime, reason: str) -> None:
    for start in range(0, len(ids), 500):
        await conn.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.id.in_(ids[start : start + 500]),
                OutboundMessage.status == MessageStatus.SCHEDULED.value,
            )
            .values(status=MessageStatus.CANCELLED.value, error_detail=reason, updated_at=now)
        )


async def remove_step(db: Database, ref: str | int, number: int, *, now: datetime) -> StepRecord:
    async with db.engine.begin() as conn:
        sequence = await find_sequence(conn, db.workspace_id, ref, include_archived=False)
        step = await _step_at(conn, sequence, number)
        # Soft delete: sent messages keep pointing at the step they came from.
        await conn.execute(update(Step).where(Step.id == step.id).values(deleted_at=now))
        await conn.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.step_id == step.id,
                OutboundMessage.status == MessageStatus.SCHEDULED.value,
            )
            .values(
                status=MessageStatus.CANCELLED.value, error_detail="step removed", updated_at=now
            )
        )
        await renumber(conn, sequence.id)
        await _touch(conn, sequence.id, now)
        # Enrollments whose only pending step this was are finished now.
        live = [row.id for row in await live_enrollments(conn, sequence.id)]
        await complete_enrollments(conn, live, now=now)
    return step


async def _touch(conn: AsyncConnection, sequence_id: int, now: datetime) -> None:
    await conn.execute(update(Sequence).where(Sequence.id == sequence_id).values(updated_at=now))
