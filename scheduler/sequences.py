"""Sequences as a whole: creating, cloning and changing their settings.

A sequence is created with its steps in one transaction, so a clash of name or keyword leaves
nothing half-made; a new send window re-times what is still pending, and nothing whose time
has already passed for a contact is sent retroactively.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from scheduler.errors import Conflict, Invalid
from scheduler.options import EngineOptions, Window
from scheduler.sequence_records import (
    SequenceRecord,
    StepRecord,
    find_sequence,
    load_steps,
    name_key,
    normalize_keyword,
    step_values,
)
from scheduler.step_edits import retime_step, window_warnings
from scheduler.steps import StepSpec
from storage.database import Database
from storage.models import Sequence, Step
from storage.states import SequenceStatus

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
