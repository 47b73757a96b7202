"""The engine end to end: define, enroll, dispatch, over real HTTP to the fake Graph API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select

from scheduler.clock import ManualClock
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Enrollment, OutboundMessage
from tests.fakes.graph import FakeGraph

WELCOME = StepSpec(
    Timing(day=1), "template", template=TemplateRef("welcome", "en", ("{first_name}",))
)
TIP = StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en", ("{name|friend}",)))


async def test_enrolled_contact_gets_each_step_on_its_day(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await create_sequence(db, "Tips", [WELCOME, TIP], now=clock.now())
    report = await enroll(
        db,
        "tips",
        [ContactInput("+49 151 23456789", name="Ana Lima")],
        now=clock.now(),
        options=options,
    )
    assert report.enrolled == 1
    dispatcher = make_dispatcher()

    assert await dispatcher.tick() == 1
    first = graph.sent[0].json
    assert first["to"] == "+4915123456789"
    assert first["template"]["name"] == "welcome"
    assert first["template"]["components"][0]["parameters"][0]["text"] == "Ana"

    clock.advance(days=1)
    assert await dispatcher.tick() == 0
    clock.advance(days=1, minutes=1)
    assert await dispatcher.tick() == 1
    assert graph.sent[1].json["template"]["name"] == "tip"
    assert graph.sent[1].json["biz_opaque_callback_data"].startswith("dripbot:")

    async with db.engine.connect() as conn:
        statuses = (await conn.execute(select(OutboundMessage.status))).scalars().all()
        enrollment = (await conn.execute(select(Enrollment.status))).scalar_one()
    assert sorted(statuses) == ["sent", "sent"]
    assert enrollment == "completed"


async def test_one_message_per_contact_per_six_seconds(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    graph: FakeGraph,
    make_dispatcher: Callable[..., Dispatcher],
) -> None:
    await create_sequence(db, "Tips", [WELCOME, TIP], now=clock.now())
    await enroll(db, "tips", [ContactInput("+4915123456789")], now=clock.now(), options=options)
    clock.advance(days=5)  # both steps overdue, as after a long outage
    dispatcher = make_dispatcher()
    await dispatcher.tick()
    assert len(graph.sent) == 1
    clock.advance(timedelta(seconds=5))
    await dispatcher.tick()
    assert len(graph.sent) == 1
    clock.advance(timedelta(seconds=1))
    await dispatcher.tick()
    assert [r.json["template"]["name"] for r in graph.sent] == ["welcome", "tip"]
