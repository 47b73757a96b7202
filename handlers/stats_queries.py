"""The SQL behind /stats: a handful of GROUP BY queries (never one per row), so ``/stats``
stays quick with a million messages. Their filters are shaped for the outbox's indexes, which
is why some terms look redundant: each is there to let an index serve the read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, distinct, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.stats_report import Counts, EnrollmentCounts, SequenceStats, StepStats
from scheduler.sequence_records import SequenceRecord, spec_of
from storage.models import Contact, Enrollment, OutboundMessage, Step
from storage.states import ACCEPTED, PENDING, EnrollmentStatus, MessageStatus

M = OutboundMessage
E = Enrollment
_S = MessageStatus
_ACCEPTED = [s.value for s in ACCEPTED]
_DELIVERED = [_S.DELIVERED.value, _S.READ.value]
#: A status event counts in the trend when the message was due at most this long before the
#: period began: Meta drops undelivered messages after 30 days, and retries, leases and
#: deferrals move ``due_at`` along, so the outbox's (status, due_at) index can bound the read.
STATUS_HORIZON = timedelta(days=30)


# --- all time, per sequence and step ----------------------------------------------------


async def sequence_stats(
    conn: AsyncConnection, workspace_id: int, chosen: list[SequenceRecord]
) -> tuple[SequenceStats, ...]:
    if not chosen:
        return ()
    ids = [s.id for s in chosen]
    by_step: dict[tuple[int | None, int | None], dict[str, int]] = defaultdict(dict)
    # The ids are this workspace's sequences, which scopes the scan; a workspace_id term
    # would lure SQLite onto the (workspace, business_initiated, sent_at) index, several
    # times slower than reading the table straight through for a whole-table count.
    rows = await conn.execute(
        select(M.sequence_id, M.step_id, M.status, func.count())
        .where(M.sequence_id.in_(ids), M.purpose == "drip")
        .group_by(M.sequence_id, M.step_id, M.status)
    )
    for sequence_id, step_id, status, count in rows:
        by_step[(sequence_id, step_id)][status] = int(count)

    replied_by_step: dict[tuple[int | None, int | None], int] = {}
    for sequence_id, step_id, count in await conn.execute(_replies_by_step(workspace_id, ids)):
        replied_by_step[(sequence_id, step_id)] = int(count)

    enrollments: dict[int, dict[str, int]] = defaultdict(dict)
    replied: dict[int, int] = defaultdict(int)
    for sequence_id, status, count, with_reply in await conn.execute(
        select(E.sequence_id, E.status, func.count(), func.count(E.replied_at))
        .where(E.workspace_id == workspace_id, E.sequence_id.in_(ids))
        .group_by(E.sequence_id, E.status)
    ):
        enrollments[sequence_id][status] = int(count)
        replied[sequence_id] += int(with_reply)

    steps: dict[int, list[Any]] = defaultdict(list)
    for row in await conn.execute(
        select(Step)
        .where(Step.sequence_id.in_(ids), Step.deleted_at.is_(None))
        .order_by(Step.sequence_id, Step.position, Step.id)
    ):
        steps[row.sequence_id].append(row)

    result = []
    for record in chosen:
        step_stats = []
        for number, row in enumerate(steps[record.id], start=1):
            key = (record.id, row.id)
            counts = _counts(by_step.pop(key, {}), replied_by_step.pop(key, 0))
            step_stats.append(StepStats(number, spec_of(row).timing.describe(), counts))
        leftovers = [
            _counts(statuses, replied_by_step.pop(key, 0))
            for key, statuses in list(by_step.items())
            if key[0] == record.id
        ]
        leftover = sum(leftovers, Counts())
        if leftover != Counts():
            step_stats.append(StepStats(None, "", leftover))
        totals = sum((s.counts for s in step_stats), Counts())
        totals = replace(totals, replied=replied[record.id])
        result.append(
            SequenceStats(
                record.id,
                record.name,
                record.status,
                _enrollment_counts(enrollments[record.id]),
                totals,
                tuple(step_stats),
            )
        )
    return tuple(result)


def _replies_by_step(workspace_id: int, ids: list[int]) -> Any:
    """Each replied enrollment's last message sent before the reply, counted per step."""
    ranked = (
        select(
            E.sequence_id.label("sequence_id"),
            M.step_id.label("step_id"),
            func.row_number()
            .over(partition_by=E.id, order_by=(M.sent_at.desc(), M.id.desc()))
            .label("rank"),
        )
        .select_from(E)
        .join(M, M.enrollment_id == E.id)
        .where(
            E.workspace_id == workspace_id,
            E.sequence_id.in_(ids),
            E.replied_at.is_not(None),
            M.purpose == "drip",
            M.sent_at.is_not(None),
            M.sent_at <= E.replied_at,
        )
        .subquery()
    )
    return (
        select(ranked.c.sequence_id, ranked.c.step_id, func.count())
        .where(ranked.c.rank == 1)
        .group_by(ranked.c.sequence_id, ranked.c.step_id)
    )


def _counts(by_status: dict[str, int], replied: int) -> Counts:
    def n(*states: MessageStatus) -> int:
        return sum(by_status.get(s.value, 0) for s in states)

    return Counts(
        sent=n(*ACCEPTED),
        delivered=n(_S.DELIVERED, _S.READ),
        read=n(_S.READ),
        replied=replied,
        failed=n(_S.FAILED),
        skipped=n(_S.SKIPPED),
        scheduled=n(*PENDING),
        cancelled=n(_S.CANCELLED),
    )


def _enrollment_counts(by_status: dict[str, int]) -> EnrollmentCounts:
    return EnrollmentCounts(**{s.value: by_status.get(s.value, 0) for s in EnrollmentStatus})


# --- the period --------------------------------------------------------------------------


def _day_of(column: Any, bounds: list[datetime]) -> Any:
    """The index of the local day an instant falls in (bounds: each day's start, then end)."""
    whens = [(column < bound, index) for index, bound in enumerate(bounds[1:-1])]
    return case(*whens, else_=len(bounds) - 2) if whens else literal(0)


async def daily_trend(
    conn: AsyncConnection, workspace_id: int, ids: list[int] | None, bounds: list[datetime]
) -> dict[int, dict[str, int]]:
    """Per local day of the period: how many of each event happened, in one round trip.

    Each part reads through an index: the sent range through (workspace, business_initiated,
    sent_at), status events through (status, due_at).
    """
    start, end = bounds[0], bounds[-1]
    drip: list[ColumnElement[bool]] = [M.workspace_id == workspace_id, M.purpose == "drip"]
    enrollments: list[ColumnElement[bool]] = [E.workspace_id == workspace_id]
    if ids is not None:
        drip.append(M.sequence_id.in_(ids))
        enrollments.append(E.sequence_id.in_(ids))

    def part(name: str, at: Any, *where: ColumnElement[bool]) -> Any:
        day = _day_of(at, bounds).label("day")
        return select(literal(name).label("metric"), day).where(*where, at >= start, at < end)

    def status(*states: MessageStatus) -> list[Any]:
        """Rows in these states that were due no more than the horizon before the period."""
        return [
            *drip,
            M.status.in_([s.value for s in states]),
            M.due_at >= start - STATUS_HORIZON,
            M.due_at < end,
        ]

    if ids is None:  # the workspace: every contact who opted out
        opt_outs = part("opt_outs", Contact.opted_out_at, Contact.workspace_id == workspace_id)
    else:  # one sequence: its enrollments ended by an opt-out
        opt_outs = part(
            "opt_outs", E.ended_at, *enrollments, E.status == EnrollmentStatus.OPTED_OUT.value
        )
    parts = union_all(
        part(
            "sent",
            M.sent_at,
            *drip,
            M.business_initiated.in_([True, False]),  # lets the index serve the range
            M.status.in_(_ACCEPTED),
        ),
        part(
            "delivered",
            func.coalesce(M.delivered_at, M.read_at),
            *status(_S.DELIVERED, _S.READ),
        ),
        part("read", M.read_at, *status(_S.READ)),
        part("failed", func.coalesce(M.failed_at, M.updated_at), *status(_S.FAILED)),
        part("skipped", M.updated_at, *status(_S.SKIPPED)),
        part("replies", E.replied_at, *enrollments),
        opt_outs,
    ).subquery()
    rows = await conn.execute(
        select(parts.c.metric, parts.c.day, func.count()).group_by(parts.c.metric, parts.c.day)
    )
    trend: dict[int, dict[str, int]] = defaultdict(dict)
    for name, day, count in rows:
        trend[int(day)][str(name)] = int(count)
    return trend


async def period_cohort(
    conn: AsyncConnection,
    workspace_id: int,
    ids: list[int] | None,
    start: datetime,
    end: datetime,
) -> dict[str, int]:
    """What became of the messages sent in the period."""
    where: list[ColumnElement[bool]] = [
        M.workspace_id == workspace_id,
        M.business_initiated.in_([True, False]),
        M.sent_at >= start,
        M.sent_at < end,
        M.purpose == "drip",
        M.status.in_(_ACCEPTED),
    ]
    if ids is not None:
        where.append(M.sequence_id.in_(ids))
    row = (
        await conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((M.status.in_(_DELIVERED), 1), else_=0)), 0),
                func.coalesce(func.sum(case((M.status == _S.READ.value, 1), else_=0)), 0),
                func.count(distinct(M.enrollment_id)),
            ).where(*where)
        )
    ).one()
    sent, delivered, read, reached = (int(v) for v in row)
    return {"sent": sent, "delivered": delivered, "read": read, "reached": reached}
