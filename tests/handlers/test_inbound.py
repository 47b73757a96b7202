"""Inbound messages: replies, keywords, the 24-hour window, and admin commands."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from handlers.admin_inbound import TEXT_LIMIT, split_text
from handlers.events import Identity, IncomingMessage, MediaRef
from handlers.inbound import handle_message
from handlers.inbound_context import Handled, InboundContext, MediaUnavailable
from handlers.replies import Actor, Attachment, Reply, Upload
from scheduler.clock import ManualClock
from scheduler.contact_locks import ContactLocks
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.pacing import Unlimited
from scheduler.policy import Accepted, Outcome
from scheduler.ports import LogAlerts, OutgoingMessage
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, Enrollment, InboundMessage, OutboundMessage, Sequence

PHONE = "+4915123456789"
ADMIN = "+4915199999999"
T0 = datetime.fromisoformat("2026-03-02T09:00:00+00:00")
HELLO = StepSpec(Timing(day=1), "text", body="Hi {first_name}, welcome to the tips!")
LATER = StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en", ()))


class RecordingSender:
    dry_run = False

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> Outcome:
        self.sent.append(message)
        return Accepted(f"wamid.out{len(self.sent)}")


class RecordingRunner:
    """Stands in for the command interpreter: the port the inbound handler talks to."""

    def __init__(self, reply: Reply | None = None, fails: bool = False) -> None:
        self.calls: list[tuple[Actor, str, Upload | None]] = []
        self.reply = reply or Reply("done")
        self.fails = fails

    async def run(self, actor: Actor, text: str, upload: Upload | None = None) -> Reply:
        self.calls.append((actor, text, upload))
        if self.fails:
            raise RuntimeError("the interpreter broke")
        return self.reply


class StoredMedia:
    """Stands in for the Graph media download (the port), with one file or a refusal."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    async def fetch(self, media_id: str) -> bytes:
        if media_id not in self.files:
            raise MediaUnavailable("the file is larger than the 20 MB limit")
        return self.files[media_id]


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions(default_timezone="UTC", default_region="DE", daily_reach_limit=None)


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def ctx(
    db: Database,
    clock: ManualClock,
    options: EngineOptions,
    alerts: LogAlerts,
    sender: RecordingSender,
) -> InboundContext:
    return InboundContext(
        db=db,
        clock=clock,
        options=options,
        alerts=alerts,
        sender=sender,
        locks=ContactLocks(),
        admin_numbers=frozenset({ADMIN}),
    )


_ids = itertools.count(1)


def message(
    text: str | None,
    *,
    kind: str = "text",
    phone: str | None = PHONE,
    user_id: str | None = None,
    name: str | None = "Ana Lima",
    at: datetime = T0,
    media: MediaRef | None = None,
    wamid: str | None = None,
) -> IncomingMessage:
    return IncomingMessage(
        wamid=wamid or f"wamid.in{next(_ids)}",
        sender=Identity(phone, user_id, name),
        at=at,
        kind=kind,
        text=text,
        media=media,
    )


async def contact_row(db: Database, phone: str = PHONE) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.execute(select(Contact).where(Contact.phone == phone))).one()


async def enrollments(db: Database) -> list[Any]:
    async with db.engine.connect() as conn:
        return list(await conn.execute(select(Enrollment).order_by(Enrollment.id)))


# --- replies ------------------------------------------------------------------------------


async def test_a_reply_is_recorded_counted_forwarded_and_stops_stop_on_reply_sequences(
    ctx: InboundContext, clock: ManualClock, alerts: LogAlerts, options: EngineOptions
) -> None:
    await create_sequence(ctx.db, "Tips", [HELLO, LATER], now=clock.now())
    await create_sequence(ctx.db, "Offers", [LATER], now=clock.now(), stop_on_reply=True)
    for name in ("Tips", "Offers"):
        await enroll(
            ctx.db, name, [ContactInput(PHONE, name="Ana Lima")], now=clock.now(), options=options
        )
    clock.advance(hours=1)
    reply = message("Is the course still open?", at=clock.now() - timedelta(minutes=1))

    assert await handle_message(ctx, reply) == Handled.REPLY
    assert await handle_message(ctx, reply) == Handled.DUPLICATE

    tips, offers = await enrollments(ctx.db)
    assert (tips.status, tips.replied_at) == ("active", clock.now())
    assert (offers.status, offers.end_reason) == ("stopped", "replied")
    async with ctx.db.engine.connect() as conn:
        offer_messages = list(
            (
                await conn.execute(
                    select(OutboundMessage.status).where(OutboundMessage.enrollment_id == offers.id)
                )
            ).scalars()
        )
        [body] = (await conn.execute(select(InboundMessage.body))).scalars()
    assert offer_messages == ["cancelled"]
    assert body == "Is the course still open?"
    assert (await contact_row(ctx.db)).last_inbound_at == reply.at
    [(kind, text)] = alerts.sent
    assert kind == "reply"
    assert "Ana Lima (+4915123456789, contact 1)" in text
    assert "stopped on reply: 'Offers'" in text
    assert text.endswith("Is the course still open?")


async def test_the_first_reply_counts_later_ones_do_not_move_it(
    ctx: InboundContext, clock: ManualClock, options: EngineOptions
) -> None:
    await create_sequence(ctx.db, "Tips", [HELLO, LATER], now=clock.now())
    await enroll(ctx.db, "Tips", [ContactInput(PHONE)], now=clock.now(), options=options)
    await handle_message(ctx, message("one"))
    first = clock.now()
    clock.advance(hours=2)
    await handle_message(ctx, message("two", at=clock.now()))
    [enrollment] = await enrollments(ctx.db)
    assert enrollment.replied_at == first


async def test_a_new_sender_becomes_a_contact_with_their_profile_name(ctx: InboundContext) -> None:
    assert await handle_message(ctx, message("hi", name="Bea")) == Handled.REPLY
    contact = await contact_row(ctx.db)
    assert (contact.name, contact.last_inbound_at) == ("Bea", T0)


async def test_a_user_id_only_sender_is_a_contact_without_a_phone(
    ctx: InboundContext, alerts: LogAlerts
) -> None:
    incoming = message("hello", phone=None, user_id="GB.55512345678901234567", name="Lena")
    assert await handle_message(ctx, incoming) == Handled.REPLY
    async with ctx.db.engine.connect() as conn:
        contact = (await conn.execute(select(Contact))).one()
    assert (contact.phone, contact.user_id, contact.name) == (
        None,
        "GB.55512345678901234567",
        "Lena",
    )
    assert "GB.55512345678901234567" in alerts.sent[0][1]


async def test_reactions_open_the_window_but_are_not_replies(
    ctx: InboundContext, clock: ManualClock, alerts: LogAlerts, options: EngineOptions
) -> None:
    await create_sequence(ctx.db, "Offers", [LATER], now=clock.now(), stop_on_reply=True)
    await enroll(ctx.db, "Offers", [ContactInput(PHONE)], now=clock.now(), options=options)
    assert await handle_message(ctx, message("👍", kind="reaction")) == Handled.RECORDED
    [enrollment] = await enrollments(ctx.db)
    assert (enrollment.status, enrollment.replied_at) == ("active", None)
    assert (await contact_row(ctx.db)).last_inbound_at == T0
    assert alerts.sent == []


async def test_system_notices_are_forwarded_but_do_not_open_the_window(
    ctx: InboundContext, alerts: LogAlerts
) -> None:
    notice = message("Ana changed from 4915123456789 to 4915123456780", kind="system")
    assert await handle_message(ctx, notice) == Handled.RECORDED
    assert (await contact_row(ctx.db)).last_inbound_at is None
    [(kind, text)] = alerts.sent
    assert kind == "reply"
    assert text.startswith("WhatsApp notice about Ana Lima")


async def test_media_replies_are_forwarded_with_their_kind(
    ctx: InboundContext, alerts: LogAlerts
) -> None:
    photo = message("Here is my receipt", kind="image", media=MediaRef("m1", None, "image/jpeg"))
    assert await handle_message(ctx, photo) == Handled.REPLY
    assert alerts.sent[0][1].endswith("[image] Here is my receipt")


# --- keywords -----------------------------------------------------------------------------


async def test_a_keyword_enrolls_the_sender_and_day_one_goes_out_free_form(
    ctx: InboundContext, clock: ManualClock, alerts: LogAlerts, options: EngineOptions
) -> None:
    await create_sequence(ctx.db, "Tips", [HELLO, LATER], now=clock.now(), keyword="Join Tips")
    assert await handle_message(ctx, message("  join   TIPS ")) == Handled.ENROLLED
    [enrollment] = await enrollments(ctx.db)
    assert (enrollment.status, enrollment.source) == ("active", "keyword")
    assert [kind for kind, _ in alerts.sent] == ["keyword_enroll"]

    sender = RecordingSender()
    dispatcher = Dispatcher(ctx.db, sender, clock, options, alerts, pacer=Unlimited())
    await dispatcher.tick()
    [sent] = sender.sent
    assert (sent.kind, sent.text) == ("text", "Hi Ana, welcome to the tips!")


async def test_a_keyword_from_someone_already_enrolled_changes_nothing(
    ctx: InboundContext, clock: ManualClock, alerts: LogAlerts
) -> None:
    await create_sequence(ctx.db, "Tips", [HELLO, LATER], now=clock.now(), keyword="JOIN TIPS")
    await handle_message(ctx, message("JOIN TIPS"))
    assert await handle_message(ctx, message("JOIN TIPS")) == Handled.RECORDED
    assert len(await enrollments(ctx.db)) == 1
    assert [kind for kind, _ in alerts.sent] == ["keyword_enroll"]


async def test_a_keyword_from_an_opted_out_contact_enrolls_nobody(
    ctx: InboundContext, clock: ManualClock
) -> None:
    await create_sequence(ctx.db, "Tips", [HELLO], now=clock.now(), keyword="JOIN TIPS")
    await handle_message(ctx, message("STOP"))
    assert await handle_message(ctx, message("JOIN TIPS")) == Handled.RECORDED
    assert await enrollments(ctx.db) == []


async def test_a_paused_sequence_keyword_is_just_a_reply(
    ctx: InboundContext, clock: ManualClock
) -> None:
    await create_sequence(ctx.db, "Tips", [HELLO], now=clock.now(), keyword="JOIN TIPS")
    async with ctx.db.engine.begin() as conn:
        await conn.execute(update(Sequence).values(status="paused"))
    assert await handle_message(ctx, message("JOIN TIPS")) == Handled.REPLY
    assert await enrollments(ctx.db) == []


# --- admins -------------------------------------------------------------------------------


async def test_an_admin_command_is_run_and_answered_over_whatsapp(
    ctx: InboundContext, sender: RecordingSender
) -> None:
    runner = RecordingRunner(Reply("3 sequences"))
    ctx.commands = runner
    command = message(" /sequences", phone=ADMIN, name="Boss")
    assert await handle_message(ctx, command) == Handled.COMMAND
    assert await handle_message(ctx, command) == Handled.DUPLICATE
    [(actor, text, upload)] = runner.calls
    assert actor == Actor("whatsapp", ADMIN, chat_id=ADMIN, name="Boss")
    assert (text, upload) == ("/sequences", None)
    assert [(m.to, m.kind, m.text) for m in sender.sent] == [(ADMIN, "text", "3 sequences")]


async def test_a_long_answer_is_split_and_attachments_are_explained(
    ctx: InboundContext, sender: RecordingSender
) -> None:
    long = "\n".join(f"line {n:05d}" for n in range(800))
    ctx.commands = RecordingRunner(
        Reply(long, document=Attachment("export.csv", b"a,b\n", "text/csv"))
    )
    await handle_message(ctx, message("/export Tips", phone=ADMIN))
    assert len(sender.sent) == 3
    assert all(len(m.text) <= TEXT_LIMIT for m in sender.sent)
    assert "export.csv cannot be sent over WhatsApp" in sender.sent[-1].text


async def test_an_admin_csv_is_fetched_and_passed_on(
    ctx: InboundContext, sender: RecordingSender
) -> None:
    runner = RecordingRunner(Reply("Enrolled: 2"))
    ctx.commands = runner
    ctx.media = StoredMedia({"media-1": b"phone\n+4915123456780\n"})
    document = message(
        "/enroll Tips",
        kind="document",
        phone=ADMIN,
        media=MediaRef("media-1", "leads.csv", "text/csv"),
    )
    assert await handle_message(ctx, document) == Handled.COMMAND
    [(_, text, upload)] = runner.calls
    assert text == "/enroll Tips"
    assert upload == Upload("leads.csv", b"phone\n+4915123456780\n")


async def test_a_csv_that_cannot_be_fetched_gets_a_clear_answer(
    ctx: InboundContext, sender: RecordingSender
) -> None:
    runner = RecordingRunner()
    ctx.commands = runner
    ctx.media = StoredMedia({})
    document = message(
        "/enroll Tips", kind="document", phone=ADMIN, media=MediaRef("huge", "big.csv")
    )
    await handle_message(ctx, document)
    assert runner.calls == []
    [answer] = sender.sent
    assert answer.text == "Could not fetch big.csv: the file is larger than the 20 MB limit"


async def test_a_failing_command_gets_a_polite_answer(
    ctx: InboundContext, sender: RecordingSender
) -> None:
    ctx.commands = RecordingRunner(fails=True)
    await handle_message(ctx, message("/stats", phone=ADMIN))
    [answer] = sender.sent
    assert answer.text.startswith("Something went wrong")


async def test_an_admin_text_without_a_slash_is_an_ordinary_message(
    ctx: InboundContext, sender: RecordingSender, alerts: LogAlerts
) -> None:
    ctx.commands = RecordingRunner()
    assert await handle_message(ctx, message("thanks", phone=ADMIN)) == Handled.REPLY
    assert sender.sent == []
    assert [kind for kind, _ in alerts.sent] == ["reply"]


@pytest.mark.parametrize(
    ("text", "limit", "parts"),
    [
        ("short", 10, ["short"]),
        ("", 20, ["(empty answer)"]),
        ("aaaa\nbbbb\ncccc", 10, ["aaaa\nbbbb", "cccc"]),
        ("x" * 25, 10, ["x" * 10, "x" * 10, "x" * 5]),
    ],
)
def test_split_text(text: str, limit: int, parts: list[str]) -> None:
    assert split_text(text, limit) == parts
