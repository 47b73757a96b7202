"""Opt-out and opt-in: the keyword rules as tables, then each flow against a real database."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from handlers.events import Identity, IncomingMessage, PreferenceChange
from handlers.inbound import handle_message, handle_preference
from handlers.inbound_context import Handled, InboundContext
from handlers.optout import (
    OPT_IN_CONFIRMATION,
    OPT_OUT_CONFIRMATION,
    OptOutSource,
    asks_to_opt_in,
    is_opt_in_text,
    is_opt_out_text,
    keyword_key,
    opt_out_signal,
)
from scheduler.clock import ManualClock
from scheduler.contact_locks import ContactLocks
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.pacing import Unlimited
from scheduler.phones import mask_phone
from scheduler.policy import Accepted, Outcome
from scheduler.ports import LogAlerts, OutgoingMessage
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, Enrollment, InboundMessage, OutboundMessage

PHONE = "+4915123456789"
USER_ID = "DE.12345678901234567890"
STEPS = [
    StepSpec(Timing(day=1), "template", template=TemplateRef("welcome", "en", ())),
    StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en", ())),
]

# --- recognising ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "opts_out"),
    [
        ("STOP", True),
        ("stop", True),
        ("  Stop \n", True),
        ("STOP!", True),
        ("stop.", True),
        ("*STOP*", True),
        ("STOP 🛑", True),
        ("S T O P", True),
        ("STOPALL", True),
        ("Stop all", True),
        ("stop-all", True),
        ("UNSUBSCRIBE", True),
        ("Cancel", True),
        ("end", True),
        ("QUIT", True),
        ("OPTOUT", True),
        ("opt out", True),
        ("Opt-Out", True),
        ("don't stop", False),
        ("please stop", False),
        ("stop it", False),
        ("STOP STOP", False),
        ("stopp", False),
        ("unstop", False),
        ("", False),
        ("!!!", False),
    ],
)
def test_opt_out_keywords_are_whole_messages(text: str, opts_out: bool) -> None:
    assert is_opt_out_text(text) is opts_out


@pytest.mark.parametrize(
    ("text", "opts_in"),
    [("START", True), ("start", True), ("Start!", True), ("UNSTOP", True), ("start now", False)],
)
def test_start_and_unstop_opt_back_in(text: str, opts_in: bool) -> None:
    assert is_opt_in_text(text) is opts_in


def test_the_keyword_key_keeps_letters_it_does_not_know() -> None:
    assert keyword_key("¡Parar promoções!") == "pararpromoções"


_ids = itertools.count(1)


def message(
    text: str | None,
    *,
    kind: str = "text",
    payload: str | None = None,
    phone: str | None = PHONE,
    user_id: str | None = None,
    name: str | None = "Ana Lima",
    at: datetime | None = None,
    wamid: str | None = None,
) -> IncomingMessage:
    return IncomingMessage(
        wamid=wamid or f"wamid.optout{next(_ids)}",
        sender=Identity(phone, user_id, name),
        at=at or datetime.fromisoformat("2026-03-02T09:00:00+00:00"),
        kind=kind,
        text=text,
        payload=payload,
    )


@pytest.mark.parametrize(
    ("incoming", "signal"),
    [
        (message("STOP"), OptOutSource.KEYWORD),
        (message("Stop promotions", kind="button", payload="Stop promotions"), OptOutSource.BUTTON),
        (message("Parar promoções", kind="button", payload="x1"), OptOutSource.BUTTON),
        (message("Not now", kind="button", payload="STOP_PROMOTIONS"), OptOutSource.BUTTON),
        (message("Unsubscribe", kind="interactive", payload="menu-3"), OptOutSource.BUTTON),
        (message("Tell me more", kind="button", payload="MORE_INFO"), None),
        (message("STOP", kind="image"), None),
        (message("🛑", kind="reaction"), None),
        (message("Stop promotions"), None),
        (message(None), None),
    ],
)
def test_which_messages_are_opt_out_signals(
    incoming: IncomingMessage, signal: OptOutSource | None
) -> None:
    assert opt_out_signal(incoming) == signal


def test_opt_in_must_be_typed_or_tapped() -> None:
    assert asks_to_opt_in(message("START"))
    assert asks_to_opt_in(message("Start", kind="button"))
    assert not asks_to_opt_in(message("START", kind="document"))


# --- carrying it out --------------------------------------------------------------------


class RecordingSender:
    dry_run = False

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> Outcome:
        self.sent.append(message)
        return Accepted(f"wamid.sent{len(self.sent)}")


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions(default_timezone="UTC", default_region="DE", daily_reach_limit=None)


@pytest.fixture
def ctx(
    db: Database, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> InboundContext:
    return InboundContext(
        db=db,
        clock=clock,
        options=options,
        alerts=alerts,
        sender=RecordingSender(),
        locks=ContactLocks(),
    )


async def enrolled(ctx: InboundContext) -> None:
    await create_sequence(ctx.db, "Tips", STEPS, now=ctx.clock.now())
    report = await enroll(
        ctx.db,
        "Tips",
        [ContactInput(PHONE, timezone="UTC")],
        now=ctx.clock.now(),
        options=ctx.options,
    )
    assert report.enrolled == 1


async def contact_row(db: Database, phone: str = PHONE) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(Contact).where(Contact.phone == phone))).one()


async def notices(db: Database, status: str = "scheduled") -> list[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(OutboundMessage.payload).where(
                OutboundMessage.purpose == "notice", OutboundMessage.status == status
            )
        )
        return [row.payload["message"]["text"] for row in rows]


async def drip_statuses(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        query = select(OutboundMessage.status).where(OutboundMessage.purpose == "drip")
        return sorted((await conn.execute(query)).scalars())


async def test_stop_ends_enrollments_cancels_pending_and_confirms_once(
    ctx: InboundContext, alerts: LogAlerts
) -> None:
    await enrolled(ctx)
    stop = message("Stop.")

    assert await handle_message(ctx, stop) == Handled.OPTED_OUT
    assert await handle_message(ctx, stop) == Handled.DUPLICATE
    assert await handle_message(ctx, message("STOP")) == Handled.OPTED_OUT

    contact = await contact_row(ctx.db)
    assert contact.opt_out_source == "keyword"
    async with ctx.db.engine.connect() as conn:
        assert (await conn.execute(select(Enrollment.status))).scalar_one() == "opted_out"
    assert await drip_statuses(ctx.db) == ["cancelled", "cancelled"]
    assert await notices(ctx.db) == [OPT_OUT_CONFIRMATION]
    [(kind, text)] = alerts.sent
    assert kind == "opt_out"
    assert f"Ana Lima ({mask_phone(PHONE)}, contact 1) opted out by replying" in text
    assert PHONE not in text  # alerts may end up in logs: the number is masked


async def test_the_stop_promotions_button_opts_out_with_a_confirmation(ctx: InboundContext) -> None:
    await enrolled(ctx)
    button = message("Stop promotions", kind="button", payload="Stop promotions")
    assert await handle_message(ctx, button) == Handled.OPTED_OUT
    assert (await contact_row(ctx.db)).opt_out_source == "button"
    assert await notices(ctx.db) == [OPT_OUT_CONFIRMATION]


async def test_dont_stop_is_a_reply_not_an_opt_out(ctx: InboundContext, alerts: LogAlerts) -> None:
    await enrolled(ctx)
    assert await handle_message(ctx, message("don't stop")) == Handled.REPLY
    assert (await contact_row(ctx.db)).opted_out_at is None
    assert await drip_statuses(ctx.db) == ["scheduled", "scheduled"]
    assert [kind for kind, _ in alerts.sent] == ["reply"]


async def test_start_re_subscribes_and_an_older_notice_never_follows_a_stop(
    ctx: InboundContext, clock: ManualClock
) -> None:
    await enrolled(ctx)
    await handle_message(ctx, message("STOP"))
    clock.advance(seconds=1)
    assert await handle_message(ctx, message("START")) == Handled.OPTED_IN
    contact = await contact_row(ctx.db)
    assert contact.opted_out_at is None
    assert sorted(await notices(ctx.db)) == sorted([OPT_OUT_CONFIRMATION, OPT_IN_CONFIRMATION])
    async with ctx.db.engine.connect() as conn:
        assert (await conn.execute(select(Enrollment.status))).scalar_one() == "opted_out"

    clock.advance(seconds=1)
    await handle_message(ctx, message("stop"))
    # The unsent "welcome back" is cancelled with the new opt-out; the new confirmation stays.
    assert await notices(ctx.db, "cancelled") == [OPT_OUT_CONFIRMATION, OPT_IN_CONFIRMATION]
    assert await notices(ctx.db) == [OPT_OUT_CONFIRMATION]


async def test_start_from_someone_subscribed_is_just_a_reply(ctx: InboundContext) -> None:
    await enrolled(ctx)
    assert await handle_message(ctx, message("START")) == Handled.REPLY
    assert await notices(ctx.db) == []


async def test_a_marketing_stop_in_whatsapp_opts_out_without_a_message(
    ctx: InboundContext, alerts: LogAlerts
) -> None:
    await enrolled(ctx)
    change = PreferenceChange(Identity(PHONE, None), "marketing_messages", "stop", None)
    assert await handle_preference(ctx, change)
    assert not await handle_preference(ctx, change)  # a replay changes nothing
    contact = await contact_row(ctx.db)
    assert contact.opt_out_source == "user_preferences"
    assert await drip_statuses(ctx.db) == ["cancelled", "cancelled"]
    assert await notices(ctx.db) == []
    assert [kind for kind, _ in alerts.sent] == ["opt_out"]


async def test_a_marketing_stop_from_an_unknown_number_is_remembered(
    ctx: InboundContext, options: EngineOptions
) -> None:
    change = PreferenceChange(Identity(PHONE, USER_ID), "marketing_messages", "stop", None)
    assert await handle_preference(ctx, change)
    await create_sequence(ctx.db, "Tips", STEPS, now=ctx.clock.now())
    report = await enroll(
        ctx.db, "Tips", [ContactInput(PHONE)], now=ctx.clock.now(), options=options
    )
    assert report.enrolled == 0
    assert report.opted_out.count == 1


async def test_resume_lifts_only_a_lead_made_opt_out_that_is_older(
    ctx: InboundContext, clock: ManualClock
) -> None:
    await enrolled(ctx)
    stop_at = clock.now()
    await handle_preference(
        ctx, PreferenceChange(Identity(PHONE, None), "marketing_messages", "stop", stop_at)
    )
    older = PreferenceChange(
        Identity(PHONE, None), "marketing_messages", "resume", stop_at - timedelta(hours=1)
    )
    assert not await handle_preference(ctx, older)
    newer = PreferenceChange(
        Identity(PHONE, None), "marketing_messages", "resume", stop_at + timedelta(hours=1)
    )
    assert await handle_preference(ctx, newer)
    assert (await contact_row(ctx.db)).opted_out_at is None
    assert await notices(ctx.db) == []

    async with ctx.db.engine.begin() as conn:
        await conn.execute(update(Contact).values(opted_out_at=clock.now(), opt_out_source="admin"))
    later = PreferenceChange(
        Identity(PHONE, None), "marketing_messages", "resume", clock.now() + timedelta(days=1)
    )
    assert not await handle_preference(ctx, later)
    assert (await contact_row(ctx.db)).opted_out_at is not None


async def test_a_user_id_only_opt_out_follows_the_lead_when_the_phone_appears(
    ctx: InboundContext,
) -> None:
    assert (
        await handle_message(ctx, message("stop", phone=None, user_id=USER_ID)) == Handled.OPTED_OUT
    )
    async with ctx.db.engine.connect() as conn:
        [only] = list(await conn.execute(select(Contact)))
    assert (only.phone, only.user_id, only.opt_out_source) == (None, USER_ID, "keyword")
    assert await notices(ctx.db) == []  # nothing can be sent to a user id alone

    later = message("hello again", phone=PHONE, user_id=USER_ID)
    assert await handle_message(ctx, later) == Handled.RECORDED
    async with ctx.db.engine.connect() as conn:
        [same] = list(await conn.execute(select(Contact)))
    assert same.id == only.id
    assert (same.phone, same.user_id) == (PHONE, USER_ID)
    assert same.opted_out_at is not None


async def test_two_records_of_one_lead_merge_and_the_opt_out_holds(
    ctx: InboundContext, alerts: LogAlerts
) -> None:
    await enrolled(ctx)  # known by phone only
    await handle_message(ctx, message("STOP", phone=None, user_id=USER_ID))  # by user id only
    assert await drip_statuses(ctx.db) == ["scheduled", "scheduled"]

    both = message("why do I still get these?", phone=PHONE, user_id=USER_ID)
    assert await handle_message(ctx, both) == Handled.RECORDED

    async with ctx.db.engine.connect() as conn:
        contacts = list(await conn.execute(select(Contact)))
        inbound_owners = set(
            (await conn.execute(select(func.distinct(InboundMessage.contact_id)))).scalars()
        )
    assert len(contacts) == 1 == len(inbound_owners)
    [merged] = contacts
    assert (merged.phone, merged.user_id) == (PHONE, USER_ID)
    assert merged.opted_out_at is not None
    assert await drip_statuses(ctx.db) == ["cancelled", "cancelled"]
    assert [kind for kind, _ in alerts.sent].count("opt_out") == 2


async def test_an_opted_out_contact_gets_only_the_confirmation_queued_with_the_opt_out(
    ctx: InboundContext, clock: ManualClock, options: EngineOptions, alerts: LogAlerts
) -> None:
    """A notice left in doubt from before the opt-out is not the confirmation: never sent."""
    await enrolled(ctx)
    async with ctx.db.engine.begin() as conn:
        contact_id = (await conn.execute(select(Contact.id))).scalar_one()
        await conn.execute(
            insert(OutboundMessage).values(
                workspace_id=ctx.db.workspace_id,
                contact_id=contact_id,
                purpose="notice",
                status="sending",
                lease_until=clock.now(),
                due_at=clock.now(),
                attempts=1,
                payload={"message": {"kind": "text", "text": "an older notice"}},
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    clock.advance(seconds=1)
    await handle_message(ctx, message("STOP"))
    sender = RecordingSender()
    dispatcher = Dispatcher(
        ctx.db, sender, clock, options, alerts, locks=ctx.locks, pacer=Unlimited()
    )
    await dispatcher.tick()
    clock.advance(days=3)
    await dispatcher.tick()
    assert [m.text for m in sender.sent] == [OPT_OUT_CONFIRMATION]
