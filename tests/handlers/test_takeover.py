"""Takeover on both databases: an admin's answer is queued at once, the lead's drips wait
for the hold, and then they go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from handlers.interpreter import Admins, Interpreter
from handlers.replies import Actor
from handlers.takeover import MAX_TEXT, answer_lead, forwarded_contact, record_forward
from scheduler.clock import ManualClock
from scheduler.errors import Invalid, NotFound
from scheduler.options import EngineOptions
from scheduler.ports import LogAlerts
from storage.database import Database
from storage.models import Contact, OutboundMessage
from storage.outbox import claim

CLI = Actor("cli", "console")
LEAD = "+4915123456789"
LEASE = timedelta(minutes=2)


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions(default_region="DE", send_window=None, takeover_hours=24)


async def _lead(db: Database, clock: ManualClock, options: EngineOptions) -> int:
    """Ana, enrolled in a sequence whose first step is due in a minute."""
    interpreter = Interpreter(db, clock, options, Admins(), LogAlerts())
    for text in (
        "/newsequence Tips\nafter 1m: Hi {first_name|there}!\nafter 2h: Checking in",
        f"/enroll tips {LEAD} Ana Lima",
    ):
        reply = await interpreter.run(CLI, text)
        assert reply.ok, reply.text
    async with db.engine.begin() as conn:
        await conn.execute(update(Contact).values(last_inbound_at=clock.now()))
        return int((await conn.execute(select(Contact.id))).scalar_one())


async def _claim(db: Database, clock: ManualClock) -> list[tuple[str, object]]:
    async with db.engine.begin() as conn:
        claimed = await claim(conn, db.workspace_id, now=clock.now(), limit=10, lease=LEASE)
    return [(c.purpose, (c.payload or {}).get("message")) for c in claimed]


async def test_the_answer_goes_now_and_the_drips_wait_for_the_hold(
    db: Database, clock: ManualClock, options: EngineOptions
) -> None:
    contact_id = await _lead(db, clock, options)
    start = clock.now()

    done = await answer_lead(db, clock, options, contact_id, "  Yes, it is free!  ")

    assert (done.contact_id, done.label) == (contact_id, f"Ana Lima ({LEAD})")
    assert done.hold_until == start + timedelta(hours=24)
    assert done.window_open is True
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(select(OutboundMessage).where(OutboundMessage.id == done.outbox_id))
        ).one()
        hold = (await conn.execute(select(Contact.hold_until))).scalar_one()
    assert (row.purpose, row.status, row.due_at, row.enrollment_id) == (
        "takeover",
        "scheduled",
        start,
        None,
    )
    assert hold == start + timedelta(hours=24)

    clock.advance(hours=3)  # both drips are due, the hold keeps them back
    assert await _claim(db, clock) == [("takeover", {"kind": "text", "text": "Yes, it is free!"})]
    assert await _claim(db, clock) == []
    async with db.engine.begin() as conn:  # as the dispatcher records a send
        await conn.execute(
            update(OutboundMessage)
            .where(OutboundMessage.purpose == "takeover")
            .values(status="sent", sent_at=clock.now())
        )

    clock.set(start + timedelta(hours=24))  # the hold is over
    assert [purpose for purpose, _ in await _claim(db, clock)] == ["drip", "drip"]


async def test_a_second_answer_extends_the_hold_and_never_shortens_it(
    db: Database, clock: ManualClock, options: EngineOptions
) -> None:
    contact_id = await _lead(db, clock, options)
    start = clock.now()
    await answer_lead(db, clock, options, contact_id, "First")

    clock.advance(hours=2)
    later = await answer_lead(db, clock, options, contact_id, "Second")
    shorter = EngineOptions(default_region="DE", send_window=None, takeover_hours=1)
    kept = await answer_lead(db, clock, shorter, contact_id, "Third")

    assert later.hold_until == start + timedelta(hours=26)
    assert kept.hold_until == start + timedelta(hours=26)


async def test_an_old_conversation_is_flagged_as_outside_the_window(
    db: Database, clock: ManualClock, options: EngineOptions
) -> None:
    contact_id = await _lead(db, clock, options)
    clock.advance(hours=25)

    done = await answer_lead(db, clock, options, contact_id, "Still interested?")

    assert done.window_open is False


@pytest.mark.parametrize(
    ("text", "opted_out", "message"),
    [
        ("   ", False, "nothing to send"),
        ("x" * (MAX_TEXT + 1), False, "at most 4,096 characters"),
        ("Hello", True, "opted out"),
    ],
)
async def test_what_cannot_be_sent_is_refused_and_nothing_changes(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    text: str,
    opted_out: bool,
    message: str,
) -> None:
    contact_id = await _lead(db, clock, options)
    if opted_out:
        async with db.engine.begin() as conn:
            await conn.execute(update(Contact).values(opted_out_at=clock.now()))

    with pytest.raises(Invalid, match=message):
        await answer_lead(db, clock, options, contact_id, text)

    async with db.engine.connect() as conn:
        purposes = set((await conn.execute(select(OutboundMessage.purpose))).scalars())
        hold = (await conn.execute(select(Contact.hold_until))).scalar_one()
    assert purposes == {"drip"} and hold is None


async def test_an_unknown_contact_is_not_found(
    db: Database, clock: ManualClock, options: EngineOptions
) -> None:
    with pytest.raises(NotFound):
        await answer_lead(db, clock, options, 999, "Hello")


async def test_forwarded_messages_are_remembered_per_chat(
    db: Database, clock: ManualClock, options: EngineOptions
) -> None:
    contact_id = await _lead(db, clock, options)

    await record_forward(db, 1001, 7, contact_id, now=clock.now())
    await record_forward(db, 1001, 7, contact_id, now=clock.now())  # a repeat is harmless
    await record_forward(db, -100123, 7, contact_id, now=clock.now())

    assert await forwarded_contact(db, 1001, 7) == contact_id
    assert await forwarded_contact(db, -100123, 7) == contact_id
    assert await forwarded_contact(db, 1001, 8) is None
    assert await forwarded_contact(db, 1002, 7) is None
