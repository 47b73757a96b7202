"""Sequences and their steps: create, edit, pause, resume, archive, clone.

Edits reach active enrollments: the outbox rows of steps not yet sent are re-timed, added or
cancelled, and nothing whose time has already passed for a contact is sent retroactively.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from scheduler.errors import Conflict, Invalid, NotFound
from scheduler.options import EngineOptions, Window, parse_hhmm
from scheduler.steps import StepSpec, TemplateRef, Timing
from scheduler.timing import due_at
from storage.database import Database
from storage.models import Enrollment, OutboundMessage, Sequence, Step
from storage.outbox import complete_enrollments
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus, SequenceStatus

#: one day: a free-form step this far after enrollment almost never finds an open window
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class StepRecord:
    id: int
    position: int
    spec: StepSpec
    paused: bool
    pause_reason: str | None


@dataclass(frozen=True)
class SequenceRecord:
    id: int
    name: str
    description: str
    status: str
    send_window: str | None
    stop_on_reply: bool
    keyword: str | None
    paused_at: datetime | None
    created_at: datetime

    def window(self, options: EngineOptions) -> Window | None:
        """The window this sequence sends in: its own, else the configured default."""
        if self.send_window is None:
            return options.send_window
        return Window.parse(self.send_window)


def name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def normalize_keyword(keyword: str) -> str:
    return " ".join(keyword.split()).upper()


# --- row <-> value ----------------------------------------------------------------------


def spec_of(row: Any) -> StepSpec:
    """The StepSpec a ``steps`` row stands for."""
    timing = Timing(
        day=row.day,
        at=parse_hhmm(row.at) if row.at else None,
        after=timedelta(seconds=row.after_seconds) if row.after_seconds is not None else None,
    )
    return StepSpec(
        timing=timing,
        kind=row.kind,
        body=row.body or "",
        media_url=row.media_url,
        media_type=row.media_type,
        template=TemplateRef.from_json(row.template),
        fallback=TemplateRef.from_json(row.fallback_template),
    )


def step_values(spec: StepSpec) -> dict[str, Any]:
    timing = spec.timing
    return {
        "day": timing.day,
        "at": timing.at.strftime("%H:%M") if timing.at else None,
        "after_seconds": int(timing.after.total_seconds()) if timing.after is not None else None,
        "kind": spec.kind,
        "body": spec.body,
        "media_url": spec.media_url,
        "media_type": spec.media_type,
        "template": spec.template.to_json() if spec.template else None,
        "fallback_template": spec.fallback.to_json() if spec.fallback else None,
    }


def sequence_record(row: Row[Any]) -> SequenceRecord:
    return SequenceRecord(
        id=row.id,
        name=row.name,
        description=row.description,
        status=row.status,
        send_window=row.send_window,
        stop_on_reply=row.stop_on_reply,
        keyword=row.keyword,
        paused_at=row.paused_at,
        created_at=row.created_at,
    )


# --- look-ups ---------------------------------------------------------------------------


async def find_sequence(
    conn: AsyncConnection, workspace_id: int, ref: str | int, *, include_archived: bool = True
) -> SequenceRecord:
    """A sequence by id or by name (case-insensitive); NotFound names what was asked for."""
    query = select(Sequence).where(Sequence.workspace_id == workspace_id)
    if isinstance(ref, int) or (
        isinstance(ref, str) and ref.isascii() and ref.isdigit() and len(ref) < 12
    ):
        by_name = (await conn.execute(query.where(Sequence.name_key == name_key(str(ref))))).first()
        row = by_name or (await conn.execute(query.where(Sequence.id == int(ref)))).first()
    else:
        row = (await conn.execute(query.where(Sequence.name_key == name_key(ref)))).first()
    if row is None:
        raise NotFound(f"no sequence named {str(ref)!r} (see /sequences)")
    record = sequence_record(row)
    if not include_archived and record.status == SequenceStatus.ARCHIVED:
        raise Invalid(f"sequence {record.name!r} is archived")
    return record


async def list_sequences(conn: AsyncConnection, workspace_id: int) -> list[SequenceRecord]:
    rows = await conn.execute(
        select(Sequence).where(Sequence.workspace_id == workspace_id).order_by(Sequence.id)
    )
    return [sequence_record(row) for row in rows]


async def load_steps(conn: AsyncConnection, sequence_id: int) -> list[StepRecord]:
    rows = await conn.execute(
        select(Step)
        .where(Step.sequence_id == sequence_id, Step.deleted_at.is_(None))
        .order_by(Step.position, Step.id)
    )
    return [
        StepRecord(row.id, row.position, spec_of(row), row.paused_at is not None, row.pause_reason)
        for row in rows
    ]


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


# --- sequence operations ----------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    sequence: SequenceRecord
    steps: list[StepRecord]
    warnings: list[str]


async def create_sequence(
    db: Database,
    name: str,
    steps: Seq[StepSpec],
    *,
    now: datetime,
    description: str = "",
    send_window: str | None = None,
    stop_on_reply: bool = False,
    keyword: str | None = None,
) -> Created:
    name = " ".join(name.split())
    if not name:
        raise Invalid("a sequence needs a name")
    if len(name) > 200:
        raise Invalid("a sequence name is at most 200 characters")
    if send_window is not None:
        Window.parse(send_window)
    values = {
        "workspace_id": db.workspace_id,
        "name": name,
        "name_key": name_key(name),
        "description": description,
        "status": SequenceStatus.ACTIVE.value,
        "send_window": send_window,
        "stop_on_reply": stop_on_reply,
        "keyword": normalize_keyword(keyword) if keyword else None,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with db.engine.begin() as conn:
            sequence_id = (
                await conn.execute(insert(Sequence).values(**values).returning(Sequence.id))
            ).scalar_one()
            if steps:
                await conn.execute(
                    insert(Step),
                    [
                        {
                            "sequence_id": sequence_id,
                            "position": index,
                            "created_at": now,
                            **step_values(spec),
                        }
                        for index, spec in enumerate(_ordered(steps), start=1)
                    ],
                )
            record = await find_sequence(conn, db.workspace_id, int(sequence_id))
            step_records = await load_steps(conn, record.id)
    except IntegrityError as err:
        raise _conflict(err, name, keyword) from None
    return Created(record, step_records, window_warnings(steps, has_keyword=bool(keyword)))


def _conflict(err: IntegrityError, name: str, keyword: str | None) -> Conflict:
    if "keyword" in str(err.orig).lower() and keyword:
        return Conflict(f"another sequence already uses the keyword {normalize_keyword(keyword)!r}")
    return Conflict(f"a sequence named {name!r} already exists")


def _ordered(specs: Seq[StepSpec]) -> list[StepSpec]:
    return sorted(specs, key=lambda s: s.timing.nominal_offset())


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


async def sequence_name_of_step(conn: AsyncConnection, step_id: int) -> str:
    """The name of the sequence a step belongs to, for admin messages."""
    name = (
        await conn.execute(
            select(Sequence.name)
            .join(Step, Step.sequence_id == Sequence.id)
            .where(Step.id == step_id)
        )
    ).scalar_one_or_none()
    return str(name or "?")


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


async def clone_sequence(db: Database, ref: str | int, new_name: str, *, now: datetime) -> Created:
    async with db.engine.connect() as conn:
        source = await find_sequence(conn, db.workspace_id, ref)
        steps = await load_steps(conn, source.id)
    return await create_sequence(
        db,
        new_name,
        [s.spec for s in steps],
        now=now,
        description=source.description,
        send_window=source.send_window,
        stop_on_reply=source.stop_on_reply,
    )


async def update_settings(
    db: Database,
    ref: str | int,
    *,
    now: datetime,
    options: EngineOptions | None = None,
    **values: Any,
) -> SequenceRecord:
    """Change description, send window, stop-on-reply or keyword."""
    allowed = {"description", "send_window", "stop_on_reply", "keyword"}
    unknown = set(values) - allowed
    if unknown:
        raise Invalid(f"cannot set {', '.join(sorted(unknown))}")
    if values.get("send_window") is not None:
        Window.parse(values["send_window"])
    options = options or EngineOptions()
    if values.get("keyword"):
        values["keyword"] = normalize_keyword(values["keyword"])
    async with db.engine.begin() as conn:
        sequence = await find_sequence(conn, db.workspace_id, ref, include_archived=False)
        try:
            await conn.execute(
                update(Sequence).where(Sequence.id == sequence.id).values(updated_at=now, **values)
            )
        except IntegrityError:
            raise Conflict(
                f"another sequence already uses the keyword {values.get('keyword')!r}"
            ) from None
        updated = await find_sequence(conn, db.workspace_id, sequence.id)
        if "send_window" in values and updated.send_window != sequence.send_window:
            # Pending messages follow the new window; what it would put in the past is
            # not sent retroactively.
            for step in await load_steps(conn, sequence.id):
                await retime_step(conn, updated, step.id, step.spec, now=now, options=options)
        return updated


async def find_by_keyword(
    conn: AsyncConnection, workspace_id: int, text: str
) -> SequenceRecord | None:
    """The active sequence whose keyword is exactly this message (case and spaces ignored)."""
    keyword = normalize_keyword(text)
    if not keyword or len(keyword) > 100:
        return None
    row = (
        await conn.execute(
            select(Sequence).where(
                Sequence.workspace_id == workspace_id,
                Sequence.keyword == keyword,
                Sequence.status == SequenceStatus.ACTIVE.value,
            )
        )
    ).first()
    return sequence_record(row) if row else None


async def count_steps(conn: AsyncConnection, sequence_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(Step)
                .where(Step.sequence_id == sequence_id, Step.deleted_at.is_(None))
            )
        ).scalar_one()
    )
