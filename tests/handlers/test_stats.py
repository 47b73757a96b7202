"""Sequence statistics on real data: built through the engine, outcomes written to the outbox
as the dispatcher and status webhooks would, then counted on both backends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import select, update

from handlers.stats import (
    Counts,
    DayStats,
    EnrollmentCounts,
    StatsReport,
    collect_stats,
    percent,
    render_chart,
    summary_text,
)
from scheduler.contacts import opt_out, set_enrollment_status
from scheduler.enrollment import ContactInput, enroll
from scheduler.errors import NotFound
from scheduler.options import EngineOptions
from scheduler.sequence_status import set_status, stop_enrollments
from scheduler.sequences import create_sequence
from scheduler.step_edits import remove_step
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database, ensure_workspace
from storage.models import Contact, Enrollment, OutboundMessage, Step
from storage.outbox import complete_enrollments
from storage.states import EnrollmentStatus, SequenceStatus

OPTIONS = EngineOptions(
    default_timezone="UTC", default_region="DE", send_window=None, daily_reach_limit=None
)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start: enrollment time
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
PHONES = {name: f"+4915123456{index:03d}" for index, name in enumerate("abcdef")}


def template(name: str) -> TemplateRef:
    return TemplateRef(name, "en", ("{first_name|there}",))


STEPS = [
    StepSpec(Timing(day=1), "template", template=template("welcome")),
    StepSpec(Timing(day=3, at=time(10, 0)), "template", template=template("tip")),
    StepSpec(Timing(day=7), "template", template=template("check_in")),
]


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    """An instant in March 2026, UTC."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@dataclass
class Tips:
    """The "Tips" sequence with six contacts, a to f, enrolled at T0."""

    db: Database
    enrollment: dict[str, int]
    contact: dict[str, int]

    async def settle(self, who: str, step: int, status: str, **stamps: datetime | None) -> None:
        """Give one message its outcome, as the dispatcher or a status webhook would."""
        async with self.db.engine.begin() as conn:
            step_id = select(Step.id).where(
                Step.sequence_id == OutboundMessage.sequence_id, Step.position == step
            )
            changed = await conn.execute(
                update(OutboundMessage)
                .where(
                    OutboundMessage.enrollment_id == self.enrollment[who],
                    OutboundMessage.step_id == step_id.scalar_subquery(),
                )
                .values(status=status, updated_at=stamps.pop("updated_at", NOW), **stamps)
            )
            assert changed.rowcount == 1


async def make_tips(db: Database) -> Tips:
    await create_sequence(db, "Tips", STEPS, now=T0)
    contacts = [ContactInput(phone, name=f"Lead {who.upper()}") for who, phone in PHONES.items()]
    report = await enroll(db, "Tips", contacts, now=T0, options=OPTIONS)
    assert report.enrolled == 6
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(Contact.phone, Contact.id, Enrollment.id)
            .join(Enrollment, Enrollment.contact_id == Contact.id)
            .where(Contact.workspace_id == db.workspace_id)
        )
        by_phone = {phone: (cid, eid) for phone, cid, eid in rows}
    return Tips(
        db,
        enrollment={who: by_phone[phone][1] for who, phone in PHONES.items()},
        contact={who: by_phone[phone][0] for who, phone in PHONES.items()},
    )


@pytest.fixture
async def tips(db: Database) -> Tips:
    """A week of history: every fate a message can meet, replies, an opt-out, a pause, a stop.

    Step 1 went out on Mar 2 at 09:00, step 2 on Mar 4 at 09:00 (10:00 Berlin), step 3 on
    Mar 8; b's step 1 was read at 03:00 UTC on Mar 3, which is still Mar 2 in New York.
    """
    t = await make_tips(db)
    sent, delivered, read = "sent_at", "delivered_at", "read_at"
    # step 1
    await t.settle("a", 1, "read", **{sent: at(2), delivered: at(2, 9, 1), read: at(2, 10)})
    await t.settle("b", 1, "read", **{sent: at(2), delivered: at(2, 9, 1), read: at(3, 3)})
    await t.settle("c", 1, "delivered", **{sent: at(2), delivered: at(2, 9, 1)})
    await t.settle("d", 1, "sent", **{sent: at(2)})
    await t.settle("e", 1, "failed", failed_at=at(2), updated_at=at(2))
    await t.settle("f", 1, "skipped", updated_at=at(2))
    # step 2: d's failure carries no failed_at, only the time the row last changed
    await t.settle("a", 2, "read", **{sent: at(4), delivered: at(4, 9, 1), read: at(4, 9, 30)})
    await t.settle("b", 2, "delivered", **{sent: at(4), delivered: at(4, 9, 1)})
    await t.settle("c", 2, "sent", **{sent: at(4)})
    await t.settle("d", 2, "failed", updated_at=at(4))
    await t.settle("f", 2, "skipped", updated_at=at(4))
    # step 3: only a's went out; the rest wait or are cancelled below
    await t.settle("a", 3, "delivered", **{sent: at(8), delivered: at(8, 9, 5)})
    async with db.engine.begin() as conn:
        for who, replied in (("a", at(4, 12)), ("b", at(2, 10))):
            await conn.execute(
                update(Enrollment)
                .where(Enrollment.id == t.enrollment[who])
                .values(replied_at=replied)
            )
        await opt_out(conn, t.contact["c"], source="keyword", now=at(5))
        await stop_enrollments(
            conn, now=at(6), reason="unenrolled by an admin", enrollment_id=t.enrollment["d"]
        )
        assert await complete_enrollments(conn, [t.enrollment["a"]], now=at(8, 10)) == [
            t.enrollment["a"]
        ]
    await set_enrollment_status(
        db, "Tips", PHONES["e"], EnrollmentStatus.PAUSED, now=at(6), region="DE"
    )
    return t


# --- all time, per step and per sequence -------------------------------------------------


async def test_per_step_counts_follow_every_outcome(db: Database, tips: Tips) -> None:
    report = await collect_stats(db, NOW, sequence="tips")
    assert report.sequence == "Tips"
    single = report.single
    assert single is not None
    assert [(s.number, s.timing) for s in single.steps] == [
        (1, "Day 1"),
        (2, "Day 3 at 10:00"),
        (3, "Day 7"),
    ]
    assert [s.counts for s in single.steps] == [
        Counts(sent=4, delivered=3, read=2, replied=1, failed=1, skipped=1),
        Counts(sent=3, delivered=2, read=1, replied=1, failed=1, skipped=1, scheduled=1),
        Counts(sent=1, delivered=1, scheduled=3, cancelled=2),
    ]
    assert single.totals == Counts(
        sent=8, delivered=6, read=3, replied=2, failed=2, skipped=2, scheduled=4, cancelled=2
    )
    assert single.enrollments == EnrollmentCounts(
        active=2, paused=1, completed=1, stopped=1, opted_out=1
    )


async def test_a_reply_counts_for_the_last_step_sent_before_it(db: Database, tips: Tips) -> None:
    """b replied an hour after step 1; a replied after step 2, before step 3 went out."""
    async with db.engine.begin() as conn:
        # A reply before anything was sent counts for the sequence, for no step.
        await conn.execute(
            update(Enrollment)
            .where(Enrollment.id == tips.enrollment["f"])
            .values(replied_at=at(2, 8))
        )
    report = await collect_stats(db, NOW, sequence="Tips")
    assert report.single is not None
    assert [s.counts.replied for s in report.single.steps] == [1, 1, 0]
    assert report.single.totals.replied == 3


async def test_messages_of_a_removed_step_stay_counted(db: Database, tips: Tips) -> None:
    await remove_step(db, "Tips", 1, now=NOW)
    report = await collect_stats(db, NOW, sequence="Tips")
    assert report.single is not None
    steps = report.single.steps
    assert [(s.number, s.label) for s in steps] == [
        (1, "1 · Day 3 at 10:00"),
        (2, "2 · Day 7"),
        (None, "removed steps"),
    ]
    assert steps[-1].counts == Counts(sent=4, delivered=3, read=2, replied=1, failed=1, skipped=1)
    assert report.single.totals.sent == 8


async def test_all_sequences_lists_the_live_ones(db: Database, tips: Tips) -> None:
    await create_sequence(db, "Quiet", STEPS[:1], now=T0)
    await create_sequence(db, "Old", STEPS[:1], now=T0)
    await enroll(db, "Old", [ContactInput(PHONES["a"])], now=T0, options=OPTIONS)
    await set_status(db, "Old", SequenceStatus.ARCHIVED, now=at(3))
    report = await collect_stats(db, NOW)
    assert report.sequence is None
    assert report.single is None
    assert [(s.name, s.totals.sent, s.enrollments.total) for s in report.sequences] == [
        ("Tips", 8, 6),
        ("Quiet", 0, 0),
    ]


async def test_another_workspace_never_counts(db: Database, tips: Tips) -> None:
    other_id = await ensure_workspace(db.engine, "other", T0)
    other = Database(db.engine, db.sessions, other_id)
    other_tips = await make_tips(other)
    await other_tips.settle("a", 1, "read", sent_at=at(2), delivered_at=at(2), read_at=at(2))
    async with db.engine.begin() as conn:
        await opt_out(conn, other_tips.contact["b"], source="keyword", now=at(5))

    mine = await collect_stats(db, NOW)
    theirs = await collect_stats(other, NOW)
    assert [s.name for s in mine.sequences] == [s.name for s in theirs.sequences] == ["Tips"]
    assert mine.sequences[0].totals.sent == 8
    assert (mine.period.sent, mine.period.opt_outs) == (8, 1)
    assert theirs.sequences[0].totals == Counts(
        sent=1, delivered=1, read=1, scheduled=14, cancelled=3
    )
    assert (theirs.period.sent, theirs.period.opt_outs) == (1, 1)


# --- the period ------------------------------------------------------------------------


def days_with(report: StatsReport, metric: str) -> dict[date, int]:
    return {d.day: getattr(d, metric) for d in report.trend if getattr(d, metric)}


async def test_trend_counts_each_event_on_its_day(db: Database, tips: Tips) -> None:
    report = await collect_stats(db, NOW, sequence="Tips")
    assert [d.day for d in report.trend] == [date(2026, 2, 25) + timedelta(i) for i in range(14)]
    mar = {day: date(2026, 3, day) for day in range(1, 11)}
    assert days_with(report, "sent") == {mar[2]: 4, mar[4]: 3, mar[8]: 1}
    assert days_with(report, "delivered") == {mar[2]: 3, mar[4]: 2, mar[8]: 1}
    assert days_with(report, "read") == {mar[2]: 1, mar[3]: 1, mar[4]: 1}
    assert days_with(report, "replies") == {mar[2]: 1, mar[4]: 1}
    assert days_with(report, "opt_outs") == {mar[5]: 1}
    assert days_with(report, "failed") == {mar[2]: 1, mar[4]: 1}
    assert days_with(report, "skipped") == {mar[2]: 1, mar[4]: 1}
    # the period's shares are on the messages sent in it; reached = enrollments messaged
    p = report.period
    assert (p.sent, p.delivered, p.read, p.reached) == (8, 6, 3, 4)
    assert (p.replies, p.opt_outs, p.failed, p.skipped) == (2, 1, 2, 2)


async def test_days_are_counted_in_the_zone_asked_for(db: Database, tips: Tips) -> None:
    """03:00 UTC on Mar 3 is 22:00 on Mar 2 in New York (and the US changes clock on Mar 8)."""
    report = await collect_stats(db, NOW, sequence="Tips", timezone="America/New_York")
    assert report.trend[-1].day == date(2026, 3, 10)
    assert days_with(report, "read") == {date(2026, 3, 2): 2, date(2026, 3, 4): 1}
    late = await collect_stats(db, at(10, 3), sequence="Tips", timezone="America/New_York")
    assert late.trend[-1].day == date(2026, 3, 9)  # 23:00 on Mar 9 there


async def test_a_short_period_leaves_older_events_out(db: Database, tips: Tips) -> None:
    report = await collect_stats(db, NOW, sequence="Tips", days=3)
    assert [d.day for d in report.trend] == [date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 10)]
    p = report.period
    assert (p.sent, p.delivered, p.read, p.reached, p.replies, p.opt_outs) == (1, 1, 0, 1, 0, 0)
    assert report.single is not None
    assert report.single.totals.sent == 8  # all time stays all time


async def test_workspace_opt_outs_count_contacts(db: Database, tips: Tips) -> None:
    """An opt-out by a lead in no live enrollment still counts for the workspace."""
    async with db.engine.begin() as conn:
        await opt_out(conn, tips.contact["a"], source="user_preferences", now=at(9))
    everything = await collect_stats(db, NOW)
    assert days_with(everything, "opt_outs") == {date(2026, 3, 5): 1, date(2026, 3, 9): 1}
    tips_only = await collect_stats(db, NOW, sequence="Tips")
    assert days_with(tips_only, "opt_outs") == {date(2026, 3, 5): 1}


# --- errors and the empty case ---------------------------------------------------------


async def test_an_unknown_sequence_is_not_found(db: Database, tips: Tips) -> None:
    with pytest.raises(NotFound, match="no sequence named 'Nope'"):
        await collect_stats(db, NOW, sequence="Nope")


async def test_a_sequence_can_be_asked_for_by_id(db: Database, tips: Tips) -> None:
    report = await collect_stats(db, NOW, sequence="1")
    assert report.sequence == "Tips"


async def test_nothing_yet(db: Database) -> None:
    report = await collect_stats(db, NOW)
    assert report.is_empty
    assert report.sequences == ()
    assert len(report.trend) == 14
    assert render_chart(report) is None
    assert summary_text(report) == (
        "Stats\n\nNo messages yet: enroll contacts with /enroll to get started."
    )
    await create_sequence(db, "Tips", STEPS, now=T0)
    empty = await collect_stats(db, NOW, sequence="Tips")
    assert empty.is_empty
    assert "No messages yet" in summary_text(empty)


async def test_a_period_needs_a_day(db: Database) -> None:
    with pytest.raises(ValueError, match="at least one day"):
        await collect_stats(db, NOW, days=0)


# --- the text ----------------------------------------------------------------------------


async def test_summary_for_one_sequence(db: Database, tips: Tips) -> None:
    report = await collect_stats(db, NOW, sequence="Tips")
    assert summary_text(report) == "\n".join(
        [
            "Stats: Tips",
            "",
            "Last 14 days (to Tue 10 Mar, UTC):",
            "Sent 8 · 75% delivered · 50% read",
            "Replies 2 (50% of 4 messaged) · opt-outs 1",
            "Failed 2 (20%) · skipped 2",
            "",
            "Enrolled 6 (2 active, 1 paused, 1 completed, 1 stopped, 1 opted out) · 33% replied",
            "",
            "Steps (all time):",
            "1 · Day 1: 4 sent · 75% delivered · 67% read · 1 replied · 1 failed · 1 skipped",
            "2 · Day 3 at 10:00: 3 sent · 67% delivered · 50% read · 1 replied · 1 failed"
            " · 1 skipped · 1 scheduled",
            "3 · Day 7: 1 sent · 100% delivered · 0% read · 3 scheduled",
        ]
    )


async def test_summary_for_all_sequences(db: Database, tips: Tips) -> None:
    await create_sequence(db, "Quiet", STEPS[:1], now=T0)
    await set_status(db, "Quiet", SequenceStatus.PAUSED, now=at(3))
    report = await collect_stats(db, NOW)
    lines = summary_text(report).splitlines()
    assert lines[0] == "Stats"
    assert lines[3] == "Sent 8 · 75% delivered · 50% read"
    assert lines[-3:] == [
        "Sequences (all time):",
        "• Tips: 6 enrolled (2 active, 1 done, 1 opted out) · 8 sent · 75% delivered"
        " · 50% read · 33% replied · 2 failed · 2 skipped",
        "• Quiet [paused]: nobody enrolled yet",
    ]


async def test_daily_summary_title_and_day_line(db: Database, tips: Tips) -> None:
    report = await collect_stats(db, NOW)
    text = summary_text(report, title="Daily summary for Tue 10 Mar", day=date(2026, 3, 4))
    lines = text.splitlines()
    assert lines[0] == "Daily summary for Tue 10 Mar"
    assert "Wed 4 Mar: 3 sent · 2 delivered · 1 read · 1 reply · 0 opt-outs" in lines
    # a day outside the period adds nothing
    assert summary_text(report, day=date(2025, 1, 1)).count("\n") == summary_text(report).count(
        "\n"
    )


async def test_the_stats_reply_carries_a_chart(db: Database, tips: Tips) -> None:
    for ref in ("Tips", None):
        png = render_chart(await collect_stats(db, NOW, sequence=ref, timezone="Europe/Berlin"))
        assert png is not None
        assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("part", "whole", "shown"),
    [
        (0, 0, "–"),
        (5, 0, "–"),
        (0, 10, "0%"),
        (10, 10, "100%"),
        (12, 10, "100%"),
        (1, 3, "33%"),
        (2, 3, "67%"),
        (1, 8, "13%"),
        (1, 16, "6.3%"),
        (1, 40, "2.5%"),
        (99, 1000, "9.9%"),
        (996, 10000, "10%"),
        (1, 20, "5.0%"),
        (1, 2001, "<0.1%"),
        (1, 2000, "0.1%"),
        (1, 1000, "0.1%"),
        (999, 1000, "99.9%"),
        (9999, 10000, "99.9%"),
        (994, 1000, "99%"),
        (995, 1000, "99.5%"),
        (100, 1000, "10%"),
    ],
)
def test_percent(part: int, whole: int, shown: str) -> None:
    assert percent(part, whole) == shown


def test_report_helpers() -> None:
    day = DayStats(date(2026, 3, 1), sent=3)
    report = StatsReport(NOW, "UTC", None, (), (day,))
    assert report.day(date(2026, 3, 1)) == day
    assert report.day(date(2026, 3, 2)) is None
    assert not report.is_empty  # something was sent in the period
    assert StatsReport(NOW, "UTC", None, (), (DayStats(date(2026, 3, 1)),)).is_empty
    assert Counts(sent=1, failed=2) + Counts(sent=2, read=1) == Counts(sent=3, read=1, failed=2)
