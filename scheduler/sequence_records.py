"""Sequences and steps as read back: the records handed around, and the look-ups that find them.

Everything else about sequences builds on these: a name or keyword is matched the way it is
stored (spacing and case ignored), a ``steps`` row and its :class:`StepSpec` convert both ways
here, and a removed step is never loaded again while its sent messages still point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.errors import Invalid, NotFound
from scheduler.options import EngineOptions, Window, parse_hhmm
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.models import Sequence, Step
from storage.states import SequenceStatus


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
