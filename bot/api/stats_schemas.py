"""The statistics report's bodies: counts per sequence and step, the daily trend, the period.

The report is built by :mod:`handlers.stats`; these models only give it the API's shape, so
the numbers a client reads are the ones the chat report shows.
"""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, Field

from bot.api.common_schemas import QUERY, RESPONSE, Id
from bot.api.sequence_schemas import EnrollmentCountsOut
from handlers.stats import SequenceStats, StatsReport

# --- requests ---------------------------------------------------------------------------


class StatsQuery(BaseModel):
    model_config = QUERY
    sequence_id: Id | None = None
    days: int = Field(default=14, ge=1, le=366, description="days of daily trend")


# --- responses --------------------------------------------------------------------------


class CountsOut(BaseModel):
    model_config = RESPONSE
    sent: int
    delivered: int
    read: int
    replied: int
    failed: int
    skipped: int
    scheduled: int
    cancelled: int


class StepStatsOut(BaseModel):
    model_config = RESPONSE
    number: int | None = Field(description="null gathers the messages of removed steps")
    timing: str
    counts: CountsOut


class SequenceStatsOut(BaseModel):
    model_config = RESPONSE
    id: int
    name: str
    status: str
    enrollments: EnrollmentCountsOut
    totals: CountsOut
    steps: list[StepStatsOut]


class DayStatsOut(BaseModel):
    model_config = RESPONSE
    day: date
    sent: int
    delivered: int
    read: int
    replies: int
    opt_outs: int
    failed: int
    skipped: int


class PeriodOut(BaseModel):
    model_config = RESPONSE
    sent: int
    delivered: int
    read: int
    reached: int
    replies: int
    opt_outs: int
    failed: int
    skipped: int


class StatsOut(BaseModel):
    model_config = RESPONSE
    generated_at: AwareDatetime
    timezone: str
    sequence: str | None = Field(description="the sequence asked for; null for all")
    sequences: list[SequenceStatsOut]
    trend: list[DayStatsOut]
    period: PeriodOut


# --- engine values → responses ----------------------------------------------------------


def _sequence_stats_out(stats: SequenceStats) -> SequenceStatsOut:
    enrollments = stats.enrollments
    return SequenceStatsOut(
        id=stats.id,
        name=stats.name,
        status=stats.status,
        enrollments=EnrollmentCountsOut(
            active=enrollments.active,
            paused=enrollments.paused,
            completed=enrollments.completed,
            stopped=enrollments.stopped,
            opted_out=enrollments.opted_out,
            total=enrollments.total,
        ),
        totals=CountsOut.model_validate(stats.totals, from_attributes=True),
        steps=[
            StepStatsOut(
                number=step.number,
                timing=step.timing,
                counts=CountsOut.model_validate(step.counts, from_attributes=True),
            )
            for step in stats.steps
        ],
    )


def stats_out(report: StatsReport) -> StatsOut:
    return StatsOut(
        generated_at=report.generated_at,
        timezone=report.timezone,
        sequence=report.sequence,
        sequences=[_sequence_stats_out(s) for s in report.sequences],
        trend=[DayStatsOut.model_validate(day, from_attributes=True) for day in report.trend],
        period=PeriodOut.model_validate(report.period, from_attributes=True),
    )
