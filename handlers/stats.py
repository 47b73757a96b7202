"""Sequence statistics: what was sent, what landed, who answered, and the recent trend.

Everything is counted in SQL by a handful of GROUP BY queries (never one per row), so
``/stats`` stays quick with a million messages. Two views live side by side:

- *all time*, per sequence and per step: outbox rows by state, enrollments by state, and
  replies. A reply is attributed to the last step sent to that enrollment before the reply
  (``replied_at`` records it once per enrollment); a reply before any send counts for the
  sequence but for no step. A sequence's reply share is replied / enrolled.
- *the period*, the last ``days`` calendar days in the report's time zone, today included:
  per day, messages sent, delivered and read (on the day each status came), replies,
  opt-outs, failures and skips. The period's shares are computed on the messages *sent* in
  it: delivered / sent, read / delivered (as Meta counts them), and replies / enrollments
  that got a message in the period.

For the whole workspace the period counts every drip message, and opt-outs are contacts who
opted out; for one sequence, opt-outs are its enrollments ended by an opt-out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, distinct, func, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.chart import render_chart
from handlers.formatting import plural
from scheduler.sequences import SequenceRecord, find_sequence, list_sequences, spec_of
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage, Step
from storage.states import ACCEPTED, PENDING, EnrollmentStatus, MessageStatus, SequenceStatus

__all__ = [
    "Counts",
    "DayStats",
    "EnrollmentCounts",
    "PeriodTotals",
    "SequenceStats",
    "StatsReport",
    "StepStats",
    "collect_stats",
    "percent",
    "render_chart",
    "summary_text",
]

M = OutboundMessage
E = Enrollment
_S = MessageStatus
_ACCEPTED = [s.value for s in ACCEPTED]
_DELIVERED = [_S.DELIVERED.value, _S.READ.value]
#: A status event counts in the trend when the message was due at most this long before the
#: period began: Meta drops undelivered messages after 30 days, and retries, leases and
#: deferrals move ``due_at`` along, so the outbox's (status, due_at) index can bound the read.
STATUS_HORIZON = timedelta(days=30)


@dataclass(frozen=True)
class Counts:
    """Outbox rows by outcome; ``sent`` includes delivered and read, ``delivered`` read."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    replied: int = 0
    failed: int = 0
    skipped: int = 0
    scheduled: int = 0
    cancelled: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class StepStats:
    #: 1-based place in the sequence; None gathers messages of steps removed since
    number: int | None
    timing: str  # "Day 3 at 10:00", "after 2h"
    counts: Counts

    @property
    def label(self) -> str:
        return "removed steps" if self.number is None else f"{self.number} · {self.timing}"


@dataclass(frozen=True)
class EnrollmentCounts:
    active: int = 0
    paused: int = 0
    completed: int = 0
    stopped: int = 0
    opted_out: int = 0

    @property
    def total(self) -> int:
        return self.active + self.paused + self.completed + self.stopped + self.opted_out


@dataclass(frozen=True)
class SequenceStats:
    id: int
    name: str
    status: str
    enrollments: EnrollmentCounts
    #: all-time counts; ``replied`` counts enrollments that replied
    totals: Counts
    steps: tuple[StepStats, ...]


@dataclass(frozen=True)
class DayStats:
    day: date
    sent: int = 0
    delivered: int = 0
    read: int = 0
    replies: int = 0
    opt_outs: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class PeriodTotals:
    """The period's figures; sent/delivered/read/reached are the messages sent in it."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    reached: int = 0
    replies: int = 0
    opt_outs: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class StatsReport:
    generated_at: datetime
    timezone: str
    #: the sequence asked for, or None for every non-archived sequence
    sequence: str | None
    sequences: tuple[SequenceStats, ...]
    trend: tuple[DayStats, ...]
    period: PeriodTotals = field(default_factory=PeriodTotals)

    @property
    def single(self) -> SequenceStats | None:
        return self.sequences[0] if self.sequence is not None and self.sequences else None

    @property
    def is_empty(self) -> bool:
        """Nothing was ever sent, scheduled or answered in what the report covers."""
        quiet = all(s.totals == Counts() and s.enrollments.total == 0 for s in self.sequences)
        still = all(d == DayStats(d.day) for d in self.trend)
        return quiet and still and self.period == PeriodTotals()

    def day(self, day: date) -> DayStats | None:
        return next((d for d in self.trend if d.day == day), None)


async def collect_stats(
    db: Database,
    now: datetime,
    *,
    sequence: str | None = None,
    days: int = 14,
    timezone: str = "UTC",
) -> StatsReport:
    """Stats for one sequence (by name or id; NotFound otherwise) or every live one."""
    if days < 1:
        raise ValueError("a stats period is at least one day")
    zone = ZoneInfo(timezone)
    async with db.engine.connect() as conn:
        if sequence is not None:
            chosen = [await find_sequence(conn, db.workspace_id, sequence)]
        else:
            chosen = [
                s
                for s in await list_sequences(conn, db.workspace_id)
                if s.status != SequenceStatus.ARCHIVED
            ]
        ids = [s.id for s in chosen] if sequence is not None else None
        per_sequence = await _sequence_stats(conn, db.workspace_id, chosen)
        today = now.astimezone(zone).date()
        first = today - timedelta(days=days - 1)
        bounds = [_midnight(first + timedelta(days=i), zone) for i in range(days + 1)]
        trend = await _trend(conn, db.workspace_id, ids, bounds)
        cohort = await _cohort(conn, db.workspace_id, ids, bounds[0], bounds[-1])
    dated = tuple(DayStats(first + timedelta(days=i), **trend.get(i, {})) for i in range(days))
    period = PeriodTotals(
        **cohort,
        replies=sum(d.replies for d in dated),
        opt_outs=sum(d.opt_outs for d in dated),
        failed=sum(d.failed for d in dated),
        skipped=sum(d.skipped for d in dated),
    )
    name = chosen[0].name if sequence is not None else None
    return StatsReport(now, timezone, name, per_sequence, dated, period)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


# --- all time, per sequence and step ----------------------------------------------------


async def _sequence_stats(
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


async def _trend(
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


async def _cohort(
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


# --- text --------------------------------------------------------------------------------


def percent(part: int, whole: int) -> str:
    """A share for a phone screen: never "100%" unless all, never "0%" unless none.

    Under 10% (and above 99.5%) one decimal tells 0.4% from 4%; halves round up.
    """
    if whole <= 0:
        return "–"
    if part >= whole:
        return "100%"
    if part <= 0:
        return "0%"
    tenths = math.floor(1000 * part / whole + 0.5)  # the share in tenths of a percent
    if tenths < 1:
        return "<0.1%"
    if tenths < 100 or tenths >= 995:
        return f"{min(tenths, 999) / 10:.1f}%"
    return f"{math.floor(tenths / 10 + 0.5)}%"


def summary_text(report: StatsReport, *, title: str | None = None, day: date | None = None) -> str:
    """The chat answer to /stats, and the body of the daily summary.

    ``day`` adds a line with that day's figures (the daily summary passes yesterday).
    """
    days = len(report.trend)
    heading = title or (f"Stats: {report.sequence}" if report.sequence else "Stats")
    period = f"Last {plural(days, 'day')}" if days > 1 else "Today"
    if report.trend:
        last = report.trend[-1].day
        period += f" (to {_day_name(last)}, {report.timezone})"
    lines = [heading, ""]
    if report.is_empty:
        lines.append("No messages yet: enroll contacts with /enroll to get started.")
        return "\n".join(lines)
    p = report.period
    lines += [
        f"{period}:",
        f"Sent {p.sent:,} · {percent(p.delivered, p.sent)} delivered · "
        f"{percent(p.read, p.delivered)} read",
        f"Replies {p.replies:,} ({percent(p.replies, p.reached)} of {p.reached:,} messaged) · "
        f"opt-outs {p.opt_outs:,}",
        f"Failed {p.failed:,} ({percent(p.failed, p.sent + p.failed)}) · skipped {p.skipped:,}",
    ]
    picked = report.day(day) if day is not None else None
    if picked is not None:
        lines += [
            "",
            f"{_day_name(picked.day)}: {picked.sent:,} sent · {picked.delivered:,} delivered · "
            f"{picked.read:,} read · {_count(picked.replies, 'reply', 'replies')} · "
            f"{_count(picked.opt_outs, 'opt-out', 'opt-outs')}",
        ]
    single = report.single
    if single is not None:
        lines += ["", _enrollment_line(single), "", "Steps (all time):"]
        lines += [_step_line(step) for step in single.steps] or ["(no steps)"]
    elif report.sequences:
        lines += ["", "Sequences (all time):"]
        lines += [_sequence_line(s) for s in report.sequences]
    return "\n".join(lines)


def _count(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _day_name(day: date) -> str:
    """``Mon 2 Mar``: short, unambiguous within the fortnight a report covers."""
    return f"{day:%a} {day.day} {day:%b}"


def _enrollment_line(s: SequenceStats) -> str:
    e = s.enrollments
    parts = [
        f"{count:,} {label}"
        for count, label in (
            (e.active, "active"),
            (e.paused, "paused"),
            (e.completed, "completed"),
            (e.stopped, "stopped"),
            (e.opted_out, "opted out"),
        )
        if count
    ]
    detail = f" ({', '.join(parts)})" if parts else ""
    replied = f" · {percent(s.totals.replied, e.total)} replied" if e.total else ""
    return f"Enrolled {e.total:,}{detail}{replied}"


def _sequence_line(s: SequenceStats) -> str:
    t, e = s.totals, s.enrollments
    status = f" [{s.status}]" if s.status != SequenceStatus.ACTIVE else ""
    if not e.total and t == Counts():
        return f"• {s.name}{status}: nobody enrolled yet"
    line = (
        f"• {s.name}{status}: {e.total:,} enrolled ({e.active:,} active, "
        f"{e.completed:,} done, {e.opted_out:,} opted out) · {t.sent:,} sent"
    )
    if t.sent:
        line += (
            f" · {percent(t.delivered, t.sent)} delivered · {percent(t.read, t.delivered)} read"
            f" · {percent(t.replied, e.total)} replied"
        )
    return line + _trouble(t)


def _step_line(step: StepStats) -> str:
    c = step.counts
    line = f"{step.label}: {c.sent:,} sent"
    if c.sent:
        line += f" · {percent(c.delivered, c.sent)} delivered · {percent(c.read, c.delivered)} read"
    line += f" · {c.replied:,} replied" if c.replied else ""
    line += _trouble(c)
    return line + (f" · {c.scheduled:,} scheduled" if c.scheduled else "")


def _trouble(c: Counts) -> str:
    text = f" · {c.failed:,} failed" if c.failed else ""
    return text + (f" · {c.skipped:,} skipped" if c.skipped else "")
