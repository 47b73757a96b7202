"""The /stats chart is a valid PNG of the promised size for every shape of report, draws any
name without warnings, and leaves no state behind between renders."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import matplotlib
import pytest
from matplotlib.image import imread

from handlers.chart import HEIGHT_PX, WIDTH_PX, render_chart
from handlers.stats import (
    Counts,
    DayStats,
    EnrollmentCounts,
    PeriodTotals,
    SequenceStats,
    StatsReport,
    StepStats,
)

NOW = datetime(2026, 3, 16, 17, 30, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def counts(sent: int) -> Counts:
    delivered = sent * 95 // 100
    return Counts(
        sent=sent,
        delivered=delivered,
        read=delivered * 7 // 10,
        replied=sent // 15,
        failed=sent // 50,
        skipped=sent // 30,
        scheduled=sent // 4,
    )


def trend(days: int, scale: int = 50) -> tuple[DayStats, ...]:
    first = NOW.date() - timedelta(days=days - 1)
    return tuple(
        DayStats(
            first + timedelta(days=i),
            sent=scale + 7 * i,
            delivered=scale + 6 * i,
            read=scale // 2 + 4 * i,
            replies=i % 4,
        )
        for i in range(days)
    )


def sequence(name: str, steps: list[tuple[str, int]], status: str = "active") -> SequenceStats:
    step_stats = tuple(
        StepStats(number, timing, counts(sent))
        for number, (timing, sent) in enumerate(steps, start=1)
    )
    totals = sum((s.counts for s in step_stats), Counts())
    return SequenceStats(1, name, status, EnrollmentCounts(active=300), totals, step_stats)


ONBOARDING = [("Day 1", 300), ("Day 3 at 10:00", 262), ("Day 7", 188), ("Day 14", 84)]


def report(
    sequences: tuple[SequenceStats, ...],
    days: tuple[DayStats, ...],
    *,
    single: bool = True,
    timezone: str = "Europe/Berlin",
) -> StatsReport:
    name = sequences[0].name if single and sequences else None
    return StatsReport(NOW, timezone, name, sequences, days, PeriodTotals(sent=1))


REPORTS = {
    "one sequence, four steps": report((sequence("Onboarding", ONBOARDING),), trend(14)),
    "big numbers stand upright": report(
        (sequence("Launch", [("Day 1", 35_587), ("after 2h", 27_513)]),), trend(7, 9000)
    ),
    "many steps and a removed one": report(
        (
            SequenceStats(
                1,
                "Onboarding",
                "paused",
                EnrollmentCounts(active=50),
                counts(9000),
                (
                    *(StepStats(d, f"Day {d} at 18:45", counts(5000 // d)) for d in range(1, 10)),
                    StepStats(None, "", counts(40)),
                ),
            ),
        ),
        trend(14),
    ),
    "every sequence": report(
        tuple(
            sequence(name, ONBOARDING)
            for name in ("Onboarding", "Webinar follow-up", "Win-back (lapsed, 90 days)", "Tips")
        ),
        trend(30),
        single=False,
        timezone="America/Sao_Paulo",
    ),
    "names with emoji, dollars and no spaces": report(
        (
            sequence(
                "🚀 Launch $5 $10 off — "
                + "averyveryverylongwordwithoutanyspacesatallthatgoesonandon" * 2,
                [("Day 1", 10), ("Day 2", 0)],
            ),
        ),
        trend(1),
    ),
    "a sequence with no steps yet": report((sequence("Fresh", []),), trend(14)),
    "no live sequences, history only": report((), trend(14), single=False),
}


@pytest.mark.parametrize("name", REPORTS)
def test_every_report_shape_renders_a_phone_sized_png(name: str) -> None:
    png = render_chart(REPORTS[name])
    assert png is not None
    assert png.startswith(PNG_SIGNATURE)
    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.shape == (HEIGHT_PX, WIDTH_PX, 4)
    assert pixels[..., :3].min() < 0.5  # something dark was drawn on the white page
    assert len(png) < 300_000


def test_nothing_to_draw_gives_no_chart() -> None:
    quiet = StatsReport(NOW, "UTC", None, (), trend(14, 0)[:0])
    assert render_chart(quiet) is None
    idle = SequenceStats(1, "Idle", "active", EnrollmentCounts(), Counts(), ())
    empty = StatsReport(NOW, "UTC", "Idle", (idle,), tuple(DayStats(d.day) for d in trend(14)))
    assert render_chart(empty) is None


def test_rendering_is_repeatable_and_leaves_matplotlib_as_it_was() -> None:
    before = dict(matplotlib.rcParams)
    sample = REPORTS["one sequence, four steps"]
    first = render_chart(sample)
    render_chart(REPORTS["every sequence"])
    second = render_chart(sample)
    assert first is not None and second is not None
    assert abs(len(first) - len(second)) < len(first) // 100
    assert first == second
    assert dict(matplotlib.rcParams) == before


def test_different_data_draws_a_different_picture() -> None:
    one = render_chart(REPORTS["one sequence, four steps"])
    other = render_chart(report((sequence("Onboarding", ONBOARDING[:2]),), trend(14)))
    assert one is not None and other is not None
    assert one != other


def test_today_is_named_on_the_trend_axis() -> None:
    """Today's figures are partial: its tick says "today", a day later it shows the date."""
    days = trend(3)
    onboarding = (sequence("Onboarding", ONBOARDING),)
    same_day = render_chart(StatsReport(NOW, "UTC", "Onboarding", onboarding, days))
    later = StatsReport(NOW + timedelta(days=1), "UTC", "Onboarding", onboarding, days)
    assert same_day is not None
    assert same_day != render_chart(later)
