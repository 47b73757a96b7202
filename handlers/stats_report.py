"""What a stats report holds: the figures :func:`handlers.stats.collect_stats` counts, per
sequence and step for all time and per day for the period, ready for the reply text, the
chart and the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime


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
