"""Delivery statuses move messages forward only, once, and failures carry their meaning."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from handlers.events import DeliveryStatus, TemplateReview
from handlers.status_moves import sources_of
from handlers.statuses import apply_statuses, apply_template_review
from scheduler.clock import ManualClock
from scheduler.contact_locks import ContactLocks
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.ports import LogAlerts, callback_data
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage, Step
from storage.states import MessageStatus

PHONE = "+4915123456789"
FALLBACK = TemplateRef("nudge", "en", ())
WELCOME = StepSpec(Timing(day=1), "text", body="Welcome!", fallback=FALLBACK)
TIP = StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en", ()))
PLAIN = StepSpec(Timing(day=1), "text", body="Hi!")


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions(default_timezone="UTC", default_region="DE", daily_reach_limit=None)


async def enrolled(
    db: Database, clock: ManualClock, options: EngineOptions, *steps: StepSpec
) -> None:
    await create_sequence(db, "Tips", list(steps), now=clock.now())
    report = await enroll(
        db, "Tips", [ContactInput(PHONE, timezone="UTC")], now=clock.now(), options=options
    )
    assert report.enrolled == 1


async def mark_sent(db: Database, position: int, wamid: str | None, status: str = "sent") -> int:
    """Pretend the dispatcher sent step ``position`` (``wamid=None``: the answer was lost)."""
    async with db.engine.begin() as conn:
        message_id = (
            await conn.execute(
                select(OutboundMessage.id)
                .join(Step, Step.id == OutboundMessage.step_id)
                .where(Step.position == position)
            )
        ).scalar_one()
        await conn.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == message_id)
            .values(status=status, wamid=wamid, attempts=1)
        )
    return int(message_id)


def status(
    wamid: str,
    value: str,
    at: datetime,
    *,
    message_id: int | None = None,
    code: int | None = None,
    detail: str | None = None,
) -> DeliveryStatus:
    return DeliveryStatus(
        wamid=wamid,
        status=value,
        at=at,
        callback_data=callback_data(message_id) if message_id is not None else None,
        error_code=code,
        error_detail=detail,
    )


async def row(db: Database, message_id: int) -> Any:
    async with db.engine.connect() as conn:
        return (
            await conn.execute(select(OutboundMessage).where(OutboundMessage.id == message_id))
        ).one()


async def apply(
    db: Database, clock: ManualClock, alerts: LogAlerts, *statuses: DeliveryStatus
) -> None:
    await apply_statuses(db, statuses, now=clock.now(), alerts=alerts, locks=ContactLocks())


def test_status_moves_come_from_the_state_table() -> None:
    assert sources_of(MessageStatus.SENT) == ["sending"]
    assert sorted(sources_of(MessageStatus.READ)) == ["delivered", "failed", "sending", "sent"]
    assert "read" not in sources_of(MessageStatus.DELIVERED)


async def test_statuses_only_move_forward_in_any_order(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN)
    message_id = await mark_sent(db, 1, "wamid.a")
    t = clock.now()
    await apply(
        db,
        clock,
        alerts,
        status("wamid.a", "read", t + timedelta(seconds=3)),
        status("wamid.a", "delivered", t + timedelta(seconds=2)),
        status("wamid.a", "sent", t + timedelta(seconds=1)),
    )
    first = await row(db, message_id)
    assert first.status == "read"
    assert first.read_at == t + timedelta(seconds=3)
    assert first.delivered_at == t + timedelta(seconds=2)

    await apply(db, clock, alerts, status("wamid.a", "delivered", t + timedelta(seconds=9)))
    await apply(db, clock, alerts, status("wamid.a", "read", t + timedelta(seconds=9)))
    again = await row(db, message_id)
    assert (again.status, again.read_at, again.delivered_at) == (
        "read",
        first.read_at,
        first.delivered_at,
    )


async def test_a_batch_moves_many_messages_at_once_by_id_and_by_wamid(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    steps = [
        StepSpec(Timing(day=n), "template", template=TemplateRef("tip", "en", ()))
        for n in range(1, 7)
    ]
    await enrolled(db, clock, options, *steps)
    ids = [await mark_sent(db, n, f"wamid.b{n}") for n in range(1, 7)]
    t = clock.now()
    batch = [status(f"wamid.b{n}", "delivered", t, message_id=ids[n - 1]) for n in (1, 2, 3)]
    batch += [status(f"wamid.b{n}", "delivered", t) for n in (4, 5, 6)]
    batch += [status(f"wamid.b{n}", "read", t, message_id=ids[n - 1]) for n in (1, 2)]
    batch += [status(f"wamid.b{n}", "read", t) for n in (4, 5)]
    batch += [status("wamid.b3", "delivered", t, message_id=ids[2])]  # a duplicate in the batch
    summary = await apply_statuses(db, batch, now=clock.now(), alerts=alerts, locks=ContactLocks())
    assert summary.progressed == len(batch)
    assert [(await row(db, i)).status for i in ids] == [
        "read",
        "read",
        "delivered",
        "read",
        "read",
        "delivered",
    ]


async def test_the_callback_settles_a_send_whose_answer_was_lost(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN, TIP)
    lost = await mark_sent(db, 1, None, status="sending")
    await apply(db, clock, alerts, status("wamid.lost", "delivered", clock.now(), message_id=lost))
    settled = await row(db, lost)
    assert (settled.status, settled.wamid) == ("delivered", "wamid.lost")
    assert settled.sent_at is not None and settled.lease_until is None

    # A callback naming a record that already has another WhatsApp id is not that message.
    other = await mark_sent(db, 2, "wamid.resent")
    await apply(db, clock, alerts, status("wamid.first", "read", clock.now(), message_id=other))
    assert (await row(db, other)).status == "sent"


async def test_unknown_messages_and_status_values_change_nothing(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN)
    message_id = await mark_sent(db, 1, "wamid.k")
    summary = await apply_statuses(
        db,
        [
            status("wamid.nobody", "read", clock.now()),
            status("wamid.nobody", "failed", clock.now(), code=131026),
            status("wamid.k", "deleted", clock.now()),
            status("wamid.k", "played", clock.now()),
        ],
        now=clock.now(),
        alerts=alerts,
        locks=ContactLocks(),
    )
    assert summary.ignored == 2
    assert (await row(db, message_id)).status == "sent"
    assert alerts.sent == []


async def test_a_failure_records_its_code_and_meaning_once(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, TIP)
    message_id = await mark_sent(db, 1, "wamid.f")
    failed = status("wamid.f", "failed", clock.now(), code=131026, detail="Message Undeliverable.")
    await apply(db, clock, alerts, failed)
    await apply(db, clock, alerts, failed)
    record = await row(db, message_id)
    assert (record.status, record.error_code, record.failed_at) == ("failed", 131026, clock.now())
    assert record.error_detail == "131026 message undeliverable (Message Undeliverable.)"
    async with db.engine.connect() as conn:
        contact = (await conn.execute(select(Contact))).one()
    assert contact.undeliverable_at == clock.now()

    # Meta may still report the message delivered after all.
    await apply(db, clock, alerts, status("wamid.f", "delivered", clock.now()))
    assert (await row(db, message_id)).status == "delivered"


async def test_131050_opts_the_contact_out_without_a_message(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN, TIP)
    message_id = await mark_sent(db, 1, "wamid.m")
    failed = status("wamid.m", "failed", clock.now(), message_id=message_id, code=131050)
    await apply(db, clock, alerts, failed)
    await apply(db, clock, alerts, failed)
    async with db.engine.connect() as conn:
        contact = (await conn.execute(select(Contact))).one()
        enrollment = (await conn.execute(select(Enrollment.status))).scalar_one()
        outbox = sorted((await conn.execute(select(OutboundMessage.status))).scalars())
    assert contact.opt_out_source == "error 131050"
    assert enrollment == "opted_out"
    assert outbox == ["cancelled", "failed"]  # no confirmation notice
    assert [kind for kind, _ in alerts.sent] == ["opt_out"]


async def test_131049_defers_the_step_a_day_and_shifts_the_later_ones(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN, TIP)
    message_id = await mark_sent(db, 1, "wamid.d")
    async with db.engine.connect() as conn:
        tip_due = (
            await conn.execute(
                select(OutboundMessage.due_at).where(OutboundMessage.status == "scheduled")
            )
        ).scalar_one()
    failed = status("wamid.d", "failed", clock.now(), code=131049)
    await apply(db, clock, alerts, failed)
    await apply(db, clock, alerts, failed)

    original = await row(db, message_id)
    async with db.engine.connect() as conn:
        pending = list(
            await conn.execute(
                select(OutboundMessage)
                .where(OutboundMessage.status == "scheduled")
                .order_by(OutboundMessage.due_at)
            )
        )
        shift = (await conn.execute(select(Enrollment.shift_seconds))).scalar_one()
    assert original.status == "failed"
    assert [(p.step_id, p.due_at) for p in pending] == [
        (original.step_id, clock.now() + timedelta(days=1)),
        (pending[1].step_id, tip_due + timedelta(days=1)),
    ]
    assert pending[0].attempts == 1
    assert "deferred to" in pending[0].deferred_reason
    assert shift == 86400


async def test_131049_on_the_last_step_reopens_the_finished_enrollment(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN)
    await mark_sent(db, 1, "wamid.last")
    async with db.engine.begin() as conn:
        await conn.execute(update(Enrollment).values(status="completed", completed_at=clock.now()))
    await apply(db, clock, alerts, status("wamid.last", "failed", clock.now(), code=131049))
    async with db.engine.connect() as conn:
        enrollment = (await conn.execute(select(Enrollment))).one()
        waiting = (
            await conn.execute(select(func.count()).where(OutboundMessage.status == "scheduled"))
        ).scalar_one()
    assert (enrollment.status, enrollment.completed_at) == ("active", None)
    assert waiting == 1


async def test_131047_sends_the_fallback_template_once(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, WELCOME)
    message_id = await mark_sent(db, 1, "wamid.w")
    failed = status("wamid.w", "failed", clock.now(), code=131047)
    await apply(db, clock, alerts, failed)
    await apply(db, clock, alerts, failed)
    async with db.engine.connect() as conn:
        [retry] = list(
            await conn.execute(select(OutboundMessage).where(OutboundMessage.id != message_id))
        )
    assert (retry.status, retry.due_at, retry.payload) == (
        "scheduled",
        clock.now(),
        {"use_fallback": True},
    )


async def test_131047_without_a_fallback_skips_and_alerts_once_per_step(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN)
    message_id = await mark_sent(db, 1, "wamid.p")
    await apply(db, clock, alerts, status("wamid.p", "failed", clock.now(), code=131047))
    record = await row(db, message_id)
    assert record.status == "failed"
    assert record.error_detail.endswith("step skipped: no fallback template")
    async with db.engine.connect() as conn:
        total = (await conn.execute(select(func.count()).select_from(OutboundMessage))).scalar_one()
    assert total == 1
    [(kind, text)] = alerts.sent
    assert kind == "skipped"
    assert "'Tips'" in text


async def test_a_rejected_template_pauses_the_steps_that_send_it(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    await enrolled(db, clock, options, PLAIN, TIP)
    review = TemplateReview("tip", "en", "REJECTED", "INVALID_FORMAT", "Move the variable.")
    assert await apply_template_review(db, review, now=clock.now(), alerts=alerts) == 1
    approved = TemplateReview("tip", "en", "APPROVED", "NONE")
    assert await apply_template_review(db, approved, now=clock.now(), alerts=alerts) == 0
    async with db.engine.connect() as conn:
        paused = list(
            await conn.execute(
                select(Step.position, Step.pause_reason).where(Step.paused_at.is_not(None))
            )
        )
    assert paused == [(2, "template tip rejected by Meta")]
    texts = [text for kind, text in alerts.sent if kind == "template_status"]
    assert texts[0].startswith("Template tip (en): REJECTED, INVALID_FORMAT. Move the variable.")
    assert "'Tips'" in texts[0]
    assert texts[1] == "Template tip (en): APPROVED"
