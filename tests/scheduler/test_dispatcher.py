"""The dispatcher against the fake Graph API over real HTTP: what each answer from Meta leads
to, retries, the 24-hour window, pacing, Meta's reach tier, and restarts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from scheduler.clock import ManualClock
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.pacing import TokenBucket
from scheduler.ports import LogAlerts
from scheduler.sequence_status import set_status
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.flags import SENDING_PAUSED, clear_flag, get_flag
from storage.models import Contact, Enrollment, OutboundMessage, Step
from storage.states import SequenceStatus
from tests.fakes.graph import FakeGraph

ANA = "+4915123456789"
TEMPLATE_DAY1 = StepSpec(
    Timing(day=1), "template", template=TemplateRef("hello", "en", ("{name}",))
)
TEMPLATE_DAY3 = StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en"))
TEXT_DAY1 = StepSpec(Timing(day=1), "text", body="Hi {first_name|there}!")
TEXT_WITH_FALLBACK = StepSpec(
    Timing(day=1), "text", body="Hi {name}!", fallback=TemplateRef("hi_fallback", "en", ("{name}",))
)
MEDIA_DAY1 = StepSpec(
    Timing(day=1),
    "media",
    body="A tip for {name}",
    media_url="https://x.test/a.jpg",
    media_type="image",
)


async def setup(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    *steps: StepSpec,
    phones: tuple[str, ...] = (ANA,),
) -> None:
    await create_sequence(db, "Seq", list(steps), now=clock.now())
    report = await enroll(
        db,
        "Seq",
        [ContactInput(p, name="Ana Lima") for p in phones],
        now=clock.now(),
        options=options,
    )
    assert report.enrolled == len(phones)


async def messages(db: Database) -> list[OutboundMessage]:
    async with db.engine.connect() as conn:
        return list(await conn.execute(select(OutboundMessage).order_by(OutboundMessage.id)))  # type: ignore[arg-type]


async def open_window(db: Database, clock: ManualClock) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(update(Contact).values(last_inbound_at=clock.now()))


async def test_free_form_steps_need_the_window_else_skip_and_alert_once(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    alerts: LogAlerts,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEXT_DAY1, phones=(ANA, "+4915123456780"))
    await make_dispatcher().tick()
    assert graph.sent == []
    rows = await messages(db)
    assert [r.status for r in rows] == ["skipped", "skipped"]
    assert "24-hour window closed" in (rows[0].error_detail or "")
    assert [kind for kind, _ in alerts.sent] == ["skipped"]


async def test_open_window_sends_text_and_media_with_exact_json(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEXT_DAY1, replace(MEDIA_DAY1, timing=Timing(day=1, at=None)))
    await open_window(db, clock)
    dispatcher = make_dispatcher()
    await dispatcher.tick()
    clock.advance(seconds=6)
    await dispatcher.tick()
    bodies = [r.json for r in graph.sent]
    rows = await messages(db)
    assert bodies[0] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": ANA,
        "type": "text",
        "text": {"body": "Hi Ana!", "preview_url": False},
        "biz_opaque_callback_data": f"dripbot:{rows[0].id}",
    }
    assert bodies[1]["type"] == "image"
    assert bodies[1]["image"] == {"link": "https://x.test/a.jpg", "caption": "A tip for Ana Lima"}
    assert [r.status for r in rows] == ["sent", "sent"]
    assert rows[0].wamid == graph.sent[0].wamid


async def test_closed_window_uses_the_fallback_template(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEXT_WITH_FALLBACK)
    await make_dispatcher().tick()
    assert graph.sent[0].json["template"]["name"] == "hi_fallback"
    assert graph.sent[0].json["template"]["components"][0]["parameters"][0]["text"] == "Ana Lima"
    row = (await messages(db))[0]
    assert row.status == "sent" and row.business_initiated and row.payload["fallback"] is True


async def test_retries_end_in_exactly_one_accepted_send(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1)
    graph.fail_next(1, 130429, http_status=429)
    graph.fail_next(1, 131000, http_status=500)
    graph.fail_next(1, 131016, http_status=503)
    dispatcher = make_dispatcher()
    for _ in range(6):
        await dispatcher.tick()
        clock.advance(minutes=5)
    assert len(graph.requests) == 4
    assert len(graph.sent) == 1
    row = (await messages(db))[0]
    assert row.status == "sent" and row.attempts == 4 and row.wamid == graph.sent[0].wamid


async def test_retry_waits_for_its_backoff(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1)
    graph.fail_next(1, 130429, http_status=429)
    dispatcher = make_dispatcher()
    await dispatcher.tick()
    row = (await messages(db))[0]
    assert row.status == "scheduled" and row.error_code == 130429
    assert clock.now() + timedelta(seconds=1) <= row.due_at <= clock.now() + timedelta(seconds=2)
    await dispatcher.tick()
    assert len(graph.requests) == 1


async def test_131049_defers_a_day_and_shifts_later_steps(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1, TEMPLATE_DAY3)
    before = await messages(db)
    graph.fail_next(1, 131049)
    await make_dispatcher().tick()
    after = await messages(db)
    assert after[0].status == "scheduled"
    assert after[0].due_at == clock.now() + timedelta(days=1)
    assert "131049" in (after[0].deferred_reason or "")
    assert after[1].due_at == before[1].due_at + timedelta(days=1)


@pytest.mark.parametrize("code", [131050, 131026, 100])
async def test_permanent_failures(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    alerts: LogAlerts,
    make_dispatcher: Callable[..., Dispatcher],
    code: int,
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1, TEMPLATE_DAY3)
    graph.fail_next(1, code)
    await make_dispatcher().tick()
    rows = await messages(db)
    assert rows[0].status == "failed" and rows[0].error_code == code
    async with db.engine.connect() as conn:
        contact = (await conn.execute(select(Contact))).one()
        enrollment = (await conn.execute(select(Enrollment.status))).scalar_one()
    if code == 131050:  # a marketing opt-out: never messaged again
        assert contact.opted_out_at is not None and contact.opt_out_source == "error 131050"
        assert rows[1].status == "cancelled" and enrollment == "opted_out"
        assert [kind for kind, _ in alerts.sent] == ["opt_out"]
    elif code == 131026:
        assert contact.undeliverable_at is not None and contact.opted_out_at is None
        assert rows[1].status == "scheduled"
    else:
        assert contact.opted_out_at is None and contact.undeliverable_at is None


async def test_131047_switches_to_the_fallback_else_skips(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEXT_WITH_FALLBACK)
    await open_window(db, clock)  # we think the window is open; Meta disagrees
    graph.fail_next(1, 131047)
    dispatcher = make_dispatcher()
    await dispatcher.tick()
    await dispatcher.tick()
    assert [r.json["type"] for r in graph.requests] == ["text", "template"]
    assert (await messages(db))[0].status == "sent"


async def test_template_rejection_pauses_the_step_until_resume(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    alerts: LogAlerts,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1, phones=(ANA, "+4915123456780"))
    graph.fail_next(2, 132001, http_status=404)
    dispatcher = make_dispatcher()
    await dispatcher.tick()
    await dispatcher.tick()
    assert len(graph.requests) == 2  # both were in flight; nothing more is claimed
    async with db.engine.connect() as conn:
        step = (await conn.execute(select(Step))).one()
    assert step.paused_at is not None and "132001" in (step.pause_reason or "")
    assert [kind for kind, _ in alerts.sent] == ["template_rejected"]
    assert {r.status for r in await messages(db)} == {"scheduled"}
    await set_status(db, "Seq", SequenceStatus.ACTIVE, now=clock.now())  # /resume Seq
    await dispatcher.tick()
    assert len(graph.sent) == 2
    assert {r.status for r in await messages(db)} == {"sent"}


@pytest.mark.parametrize("code", [190, 368])
async def test_token_or_policy_errors_pause_all_sending_until_resumed(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    alerts: LogAlerts,
    make_dispatcher: Callable[..., Dispatcher],
    code: int,
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1, phones=(ANA, "+4915123456780"))
    graph.fail_next(1, code, http_status=401 if code == 190 else 403)
    dispatcher = make_dispatcher(concurrency=1)
    await dispatcher.tick()
    assert len(graph.requests) == 1  # the rest of the batch in hand is not sent
    await dispatcher.tick()
    assert len(graph.requests) == 1  # and nothing new is claimed
    assert [kind for kind, _ in alerts.sent] == ["sending_paused"]
    async with db.engine.begin() as conn:
        assert await get_flag(conn, db.workspace_id, SENDING_PAUSED) is not None
        await clear_flag(conn, db.workspace_id, SENDING_PAUSED)
    await dispatcher.tick()
    assert len(graph.sent) == 2
    assert {r.status for r in await messages(db)} == {"sent"}


async def test_in_doubt_send_waits_for_the_lease_then_retries(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1)
    dispatcher = make_dispatcher()
    graph.fail_next(1, None, http_status=502)  # a gateway error: did Meta act on it?
    await dispatcher.tick()
    row = (await messages(db))[0]
    assert row.status == "sending" and row.lease_until is not None
    clock.advance(seconds=options.send_lease_seconds - 1)
    await dispatcher.tick()
    assert len(graph.requests) == 1
    clock.advance(seconds=2)
    await dispatcher.tick()
    assert len(graph.sent) == 1
    assert (await messages(db))[0].status == "sent"


async def test_daily_reach_limit_holds_the_rest_until_room(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    phones = tuple(f"+49151234567{i:02d}" for i in range(5))
    limited = replace(options, daily_reach_limit=3)
    await setup(db, clock, limited, TEMPLATE_DAY1, phones=phones)
    dispatcher = make_dispatcher(options=limited)
    await dispatcher.tick()
    assert len(graph.sent) == 3
    waiting = [r for r in await messages(db) if r.status == "scheduled"]
    assert len(waiting) == 2
    assert all("daily reach limit (3" in (r.deferred_reason or "") for r in waiting)
    assert all(r.due_at == clock.now() + timedelta(hours=24) for r in waiting)
    clock.advance(hours=24, seconds=1)
    await dispatcher.tick()
    assert len(graph.sent) == 5


async def test_a_restart_sends_overdue_steps_once_in_order_spaced_per_contact(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await setup(db, clock, options, TEMPLATE_DAY1, TEMPLATE_DAY3, phones=(ANA, "+4915123456780"))
    clock.advance(days=10)  # the service was down for ten days
    dispatcher = make_dispatcher()
    for _ in range(4):
        await dispatcher.tick()
        clock.advance(seconds=3)
    per_contact: dict[str, list[str]] = {}
    for request in graph.sent:
        per_contact.setdefault(request.json["to"], []).append(request.json["template"]["name"])
    assert per_contact == {ANA: ["hello", "tip"], "+4915123456780": ["hello", "tip"]}
    rows = await messages(db)
    for contact_id in {r.contact_id for r in rows}:
        sent_at = sorted(r.sent_at for r in rows if r.contact_id == contact_id)
        assert sent_at[1] - sent_at[0] >= timedelta(seconds=6)
    again = make_dispatcher()  # a second process start: nothing is sent twice
    clock.advance(hours=1)
    await again.tick()
    assert len(graph.sent) == 4


async def test_the_rate_limit_holds_measured_at_the_fake(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    phones = tuple(f"+49151234{i:05d}" for i in range(60))
    await setup(db, clock, options, TEMPLATE_DAY1, phones=phones)
    rate = 40.0
    await make_dispatcher(pacer=TokenBucket(rate)).tick()
    stamps = sorted(r.monotonic for r in graph.sent)
    assert len(stamps) == 60
    # at most one second's burst plus the rate in any one-second span
    for i, start in enumerate(stamps):
        in_window = sum(1 for s in stamps[i:] if s < start + 1.0)
        assert in_window <= rate * 2 + 1
    elapsed = stamps[-1] - stamps[0]
    # 20 beyond the burst take half a second; the fake shares this process's event loop, so
    # a stall can bunch arrivals: allow for it rather than fail on a busy machine
    assert elapsed >= (60 - rate) / rate * 0.6
