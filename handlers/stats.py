"""Sequence statistics: what was sent, what landed, who answered, and the recent trend.

Two views live side by side, counted in SQL by :mod:`handlers.stats_queries` into the
figures of :mod:`handlers.stats_report`:

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
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from handlers.chart import render_chart
from handlers.formatting import plural
from handlers.stats_queries import daily_trend, period_cohort, sequence_stats
from handlers.stats_report import (
    Counts,
    DayStats,
    EnrollmentCounts,
    PeriodTotals,
    SequenceStats,
    StatsReport,
    StepStats,
)
from scheduler.sequence_records import find_sequence, list_sequences
from storage.database import Database
from storage.states import SequenceStatus

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
        per_sequence = await sequence_stats(conn, db.workspace_id, chosen)
        today = now.astimezone(zone).date()
        first = today - timedelta(days=days - 1)
        bounds = [_midnight(first + timedelta(days=i), zone) for i in range(days + 1)]
        trend = await daily_trend(conn, db.workspace_id, ids, bounds)
        cohort = await period_cohort(conn, db.workspace_id, ids, bounds[0], bounds[-1])
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
