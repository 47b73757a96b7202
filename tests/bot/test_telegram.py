"""The Telegram admin bot, end to end: the real PTB application polls our fake Bot API over
real HTTP, the interpreter runs against a real SQLite database, and every answer is read back
from what the fake recorded."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import func, select, update

from bot.alerts import AlertHub
from bot.config import Settings, load_settings
from bot.sending import ConsoleSender, GraphSender
from bot.services import SERVICES, Services
from bot.telegram.admin_chat import NOT_A_COMMAND
from bot.telegram.app import (
    SECRET_HEADER,
    WEBHOOK_PATH,
    TelegramStartError,
    start_telegram,
    stop_telegram,
    telegram_routes,
    webhook_secret,
)
from bot.telegram.commands import bot_commands
from bot.telegram.csv_uploads import WHICH_SEQUENCE
from bot.telegram.handle import TelegramHandle
from bot.telegram.render import split_text, utf16_length
from bot.whatsapp.client import GraphClient
from handlers.help import ENTRIES
from handlers.interpreter import REFUSAL
from scheduler.clock import ManualClock
from scheduler.dispatcher import Dispatcher
from scheduler.pacing import Unlimited
from storage.database import Database
from storage.models import Contact, Enrollment, ForwardedMessage, OutboundMessage
from tests.fakes.graph import TOKEN as GRAPH_TOKEN
from tests.fakes.graph import FakeGraph
from tests.fakes.telegram import TOKEN, FakeTelegram, Sent

ADMIN = 1001
OTHER_ADMIN = 1002
STRANGER = 3003
LEAD = "+4915123456789"
TIPS = """/newsequence Tips
Day 1: Hi {first_name|there}! Welcome aboard.
after 2h: Did you get a chance to look?
Day 3 at 10:00: template tip_week en {first_name|there}"""

MakeServices = Callable[..., Services]


def _settings(fake: FakeTelegram, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "telegram_token": TOKEN,
        "telegram_api_url": fake.root,
        "admin_telegram_ids": f"{ADMIN},{OTHER_ADMIN}",
        "send_window": "always",
        "default_region": "DE",
        "timezone": "Europe/Berlin",
        "daily_reach_limit": "unlimited",
    }
    return load_settings(_env_file=None, **(values | overrides))


@pytest.fixture
def make_services(
    fake: FakeTelegram, sqlite_db: Database, sqlite_url: str, clock: ManualClock, clean_env: None
) -> MakeServices:
    def make(**overrides: Any) -> Services:
        settings = _settings(fake, sqlite_url, **overrides)
        return Services(
            settings=settings,
            db=sqlite_db,
            clock=clock,
            options=settings.engine_options(),
            alerts=AlertHub(settings, sqlite_db, clock),
            sender=ConsoleSender(io.StringIO()),
        )

    return make


@pytest.fixture
def services(make_services: MakeServices) -> Services:
    return make_services()


@pytest.fixture
async def running(services: Services) -> AsyncIterator[TelegramHandle]:
    handle = await start_telegram(services)
    assert handle is not None
    yield handle
    await stop_telegram(handle)


async def ask(fake: FakeTelegram, text: str, *, user: int = ADMIN, expect: int = 1) -> list[Sent]:
    """Send ``text`` as ``user`` and return the bot's ``expect`` answers to that chat."""
    before = len([s for s in fake.sent if s.chat_id == user])
    fake.send_text(user, text)
    sent = await fake.wait_for_sent(before + expect, chat_id=user)
    return sent[before:]


async def upload(
    fake: FakeTelegram,
    data: bytes,
    *,
    caption: str | None,
    filename: str = "leads.csv",
    mime_type: str = "text/csv",
) -> Sent:
    before = len([s for s in fake.sent if s.chat_id == ADMIN])
    fake.send_document(ADMIN, data, filename, caption=caption, mime_type=mime_type)
    sent = await fake.wait_for_sent(before + 1, chat_id=ADMIN)
    return sent[before]


async def count(db: Database, model: type) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


# --- lifecycle -------------------------------------------------------------------------


async def test_no_token_means_no_bot_and_one_log_line(
    make_services: MakeServices, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    services = make_services(telegram_token=None)

    with caplog.at_level(logging.INFO, logger="bot.telegram.app"):
        assert await start_telegram(services) is None

    assert [r.getMessage() for r in caplog.records] == [
        "no Telegram bot: DRIPBOT_TELEGRAM_TOKEN is not set"
    ]
    assert fake.calls == []
    assert "telegram" not in services.extras


async def test_start_registers_the_menu_polls_and_stops_cleanly(
    services: Services, fake: FakeTelegram
) -> None:
    handle = await start_telegram(services)
    assert handle is not None
    assert services.extras["telegram"] is handle
    await fake.wait_for_call("getUpdates")

    names = [c["command"] for c in fake.my_commands]
    expected = [e.name for e in ENTRIES if " " not in e.name]
    assert names == expected
    assert "pause sending" not in names and {"pause", "resume", "enroll", "stats"} <= set(names)
    assert all(c["description"] for c in fake.my_commands)
    assert [c.method for c in fake.calls[:3]] == ["getMe", "setMyCommands", "deleteWebhook"]

    await stop_telegram(handle)
    assert "telegram" not in services.extras
    assert isinstance(services.alerts, AlertHub) and not services.alerts.telegram_attached
    assert not handle.application.running


async def test_a_rejected_token_stops_start_up_with_a_clear_error(
    make_services: MakeServices, fake: FakeTelegram
) -> None:
    services = make_services(telegram_token="1:wrong")

    with pytest.raises(TelegramStartError, match="rejected DRIPBOT_TELEGRAM_TOKEN"):
        await start_telegram(services)

    assert "telegram" not in services.extras


def test_menu_names_are_valid_telegram_commands() -> None:
    for command in bot_commands():
        assert command.command.isascii() and command.command.islower()
        assert 1 <= len(command.command) <= 32 and " " not in command.command
        assert 1 <= len(command.description) <= 256


# --- commands --------------------------------------------------------------------------


@pytest.mark.usefixtures("running")
async def test_help_lists_every_command(fake: FakeTelegram) -> None:
    [answer] = await ask(fake, "/help")

    assert answer.method == "sendMessage"
    assert answer.text is not None and answer.text.startswith("Commands")
    for entry in ENTRIES:
        assert entry.usage in answer.text


@pytest.mark.usefixtures("running")
async def test_a_sequence_is_defined_listed_enrolled_and_inspected(
    fake: FakeTelegram, sqlite_db: Database
) -> None:
    [created] = await ask(fake, TIPS)
    assert created.text is not None and "Created sequence 'Tips' with 3 steps" in created.text

    [enrolled] = await ask(fake, f"/enroll tips {LEAD} Ana Lima")
    assert enrolled.text is not None
    assert enrolled.text.startswith(f"Enrolled Ana Lima ({LEAD}) into 'Tips'.")

    [listed] = await ask(fake, "/sequences")
    assert listed.text is not None and "Tips" in listed.text

    [contact] = await ask(fake, f"/contact {LEAD}")
    assert contact.text is not None and "Ana Lima" in contact.text and "Tips" in contact.text

    [preview] = await ask(fake, f"/preview tips {LEAD}")
    assert preview.text is not None and "Hi Ana! Welcome aboard." in preview.text

    [queue] = await ask(fake, "/queue")
    assert queue.text is not None and "due now" in queue.text.lower()
    assert await count(sqlite_db, Enrollment) == 1


@pytest.mark.usefixtures("running")
async def test_many_numbers_on_following_lines_are_enrolled(
    fake: FakeTelegram, sqlite_db: Database
) -> None:
    await ask(fake, TIPS)

    [report] = await ask(fake, "/enroll tips\n+4915123456789 Ana\n+4915123456780 Ben\nnot-a-phone")

    assert report.text is not None and report.text.startswith("Enrolled 2 of 3 into 'Tips'.")
    assert "line 4" in report.text
    assert await count(sqlite_db, Enrollment) == 2


@pytest.mark.usefixtures("running")
async def test_a_usage_error_names_the_usage(fake: FakeTelegram) -> None:
    [answer] = await ask(fake, "/enrol tips")

    assert answer.text is not None and "did you mean /enroll" in answer.text


@pytest.mark.usefixtures("running")
async def test_export_answers_with_a_csv_document(fake: FakeTelegram) -> None:
    await ask(fake, TIPS)
    await ask(fake, f"/enroll tips {LEAD} Ana Lima")

    [document] = await ask(fake, "/export tips")

    assert document.method == "sendDocument"
    assert (document.filename, document.content_type) == ("tips-enrollments.csv", "text/csv")
    assert document.caption == "1 enrollments of 'Tips'."
    assert document.file is not None
    rows = list(csv.DictReader(io.StringIO(document.file.decode())))
    assert [(r["phone"], r["name"], r["status"]) for r in rows] == [(LEAD, "Ana Lima", "active")]


@pytest.mark.usefixtures("running")
async def test_stats_answers_with_a_png_chart(fake: FakeTelegram) -> None:
    await ask(fake, TIPS)
    await ask(fake, f"/enroll tips {LEAD} Ana Lima")

    before = len(fake.sent)
    fake.send_text(ADMIN, "/stats tips")
    [photo] = await fake.wait_for_sent(chat_id=ADMIN, method="sendPhoto")

    assert photo.filename == "stats.png" and photo.content_type == "image/png"
    assert photo.file is not None and photo.file.startswith(b"\x89PNG\r\n\x1a\n")
    # the summary is the photo's caption, or comes just before it when too long for one
    summary = "\n".join(s.text or s.caption or "" for s in fake.sent[before:])
    assert summary.startswith("Stats: Tips")


# --- CSV uploads -----------------------------------------------------------------------


@pytest.mark.usefixtures("running")
async def test_a_csv_with_bad_rows_enrolls_the_good_ones_and_lists_the_bad(
    fake: FakeTelegram, sqlite_db: Database
) -> None:
    await ask(fake, TIPS)
    data = b"phone,name\n+4915123456789,Ana\nnot-a-phone,Bob\n+4915123456780,Cem\n,Dee\n"

    report = await upload(fake, data, caption="/enroll tips")

    assert report.text is not None and report.text.startswith("Enrolled 2 of 4 into 'Tips'.")
    assert "line 3" in report.text and "line 5" in report.text
    assert await count(sqlite_db, Enrollment) == 2
    [get_file] = fake.calls_of("getFile")
    assert get_file.params["file_id"].startswith("FILE")


@pytest.mark.usefixtures("running")
async def test_a_csv_sent_right_after_enroll_without_numbers_is_used(
    fake: FakeTelegram, sqlite_db: Database, clock: ManualClock
) -> None:
    await ask(fake, TIPS)

    [prompt] = await ask(fake, "/enroll tips")
    assert prompt.text is not None and prompt.text.startswith("Send the CSV file now")

    report = await upload(fake, b"phone\n+4915123456789\n", caption=None)
    assert report.text == "Enrolled 1 of 1 into 'Tips'."

    # the wait is used up: the next file without a caption asks which sequence
    again = await upload(fake, b"phone\n+4915123456780\n", caption=None)
    assert again.text == WHICH_SEQUENCE
    assert await count(sqlite_db, Enrollment) == 1


@pytest.mark.usefixtures("running")
async def test_the_wait_for_a_csv_expires(fake: FakeTelegram, clock: ManualClock) -> None:
    await ask(fake, TIPS)
    await ask(fake, "/enroll tips")
    clock.advance(minutes=11)

    report = await upload(fake, b"phone\n+4915123456789\n", caption=None)

    assert report.text == WHICH_SEQUENCE


@pytest.mark.usefixtures("running")
async def test_enroll_without_numbers_for_an_unknown_sequence_says_so(fake: FakeTelegram) -> None:
    [answer] = await ask(fake, "/enroll nosuch")

    assert answer.text is not None and "nosuch" in answer.text
    assert not answer.text.startswith("Send the CSV")


async def test_a_csv_over_the_size_cap_is_refused_before_download(
    make_services: MakeServices, fake: FakeTelegram, sqlite_db: Database
) -> None:
    handle = await start_telegram(make_services(csv_max_bytes=100))
    assert handle is not None
    try:
        await ask(fake, TIPS)
        data = b"phone\n" + b"+4915123456789\n" * 20

        answer = await upload(fake, data, caption="/enroll tips")
    finally:
        await stop_telegram(handle)

    assert answer.text == (
        "leads.csv is 306 bytes, over the 100 bytes limit for a CSV file "
        "(DRIPBOT_CSV_MAX_BYTES). Nothing was imported: split it into smaller files and send "
        "them one by one."
    )
    assert fake.calls_of("getFile") == []
    assert await count(sqlite_db, Enrollment) == 0


@pytest.mark.usefixtures("running")
async def test_other_documents_and_captions_are_explained(fake: FakeTelegram) -> None:
    pdf = await upload(fake, b"%PDF-1.4", caption="/enroll tips", filename="x.pdf", mime_type="a/b")
    wrong = await upload(fake, b"phone\n+4915123456789\n", caption="/stats")

    assert pdf.text is not None and pdf.text.startswith("I only read CSV files")
    assert wrong.text is not None and wrong.text.startswith("A CSV file goes with /enroll")
    assert fake.calls_of("getFile") == []


@pytest.mark.usefixtures("running")
async def test_a_failing_handler_is_answered_and_logged(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    await ask(fake, TIPS)
    fake.fail_next("getFile", 400, "Bad Request: file is temporarily unavailable")

    with caplog.at_level(logging.ERROR, logger="bot.telegram.admin_chat"):
        answer = await upload(fake, b"phone\n+4915123456789\n", caption="/enroll tips")

    assert answer.text == (
        "Something went wrong: File is temporarily unavailable. The details are in the server log."
    )
    assert any(r.getMessage() == "a Telegram update failed" for r in caplog.records)


# --- who is served ---------------------------------------------------------------------


@pytest.mark.usefixtures("running")
async def test_a_stranger_gets_one_refusal_and_then_nothing(
    fake: FakeTelegram, sqlite_db: Database
) -> None:
    [refusal] = await ask(fake, "/help", user=STRANGER)
    fake.send_text(STRANGER, "/sequences")
    fake.send_document(STRANGER, b"phone\n+4915123456789\n", "x.csv", caption="/enroll tips")
    fake.send_text(STRANGER, "hello?")
    # updates are handled in order: once the admin is answered, the stranger's were handled
    await ask(fake, "/help")

    assert refusal.text == REFUSAL
    assert [s.text for s in fake.sent if s.chat_id == STRANGER] == [REFUSAL]
    assert fake.calls_of("getFile") == []


@pytest.mark.usefixtures("running")
async def test_plain_text_from_an_admin_gets_a_hint(fake: FakeTelegram) -> None:
    [answer] = await ask(fake, "hello")

    assert answer.text == NOT_A_COMMAND


# --- takeover --------------------------------------------------------------------------


async def _lead_with_drips(fake: FakeTelegram, db: Database, clock: ManualClock) -> int:
    """Tips with Ana enrolled; her first drip went out, she replied, and wrote back."""
    await ask(fake, "/newsequence Tips\nafter 1m: Hi {first_name|there}!\nafter 2h: Checking in")
    await ask(fake, f"/enroll tips {LEAD} Ana Lima")
    async with db.engine.begin() as conn:
        contact_id = int((await conn.execute(select(Contact.id))).scalar_one())
        await conn.execute(update(Contact).values(last_inbound_at=clock.now()))
    return contact_id


async def test_an_admin_answers_a_forwarded_reply_and_the_drips_hold(
    make_services: MakeServices,
    fake: FakeTelegram,
    sqlite_db: Database,
    clock: ManualClock,
) -> None:
    services = make_services(takeover_hours=1)
    hub = services.alerts
    assert isinstance(hub, AlertHub)
    handle = await start_telegram(services)
    assert handle is not None
    try:
        contact_id = await _lead_with_drips(fake, sqlite_db, clock)
        await hub.alert(
            "Ana Lima (+49******6789) replied: Is it free?", kind="reply", contact_id=contact_id
        )
        assert await hub.flush()
        forwarded = [s for s in fake.sent if s.chat_id == ADMIN][-1]
        assert forwarded.text is not None
        assert forwarded.text.startswith("Ana Lima (+49******6789) replied: Is it free?")
        assert await count(sqlite_db, ForwardedMessage) == 2  # one per admin chat

        [answer] = await reply_to(fake, forwarded, "Yes, it is! Shall I book you in?")
    finally:
        await stop_telegram(handle)

    assert answer.text == (
        f"Sent to Ana Lima ({LEAD}); their drips are on hold until "
        "Mon 2 Mar 2026 11:00 Europe/Berlin."
    )
    start = clock.now()
    async with sqlite_db.engine.connect() as conn:
        last = (
            await conn.execute(
                select(OutboundMessage.purpose, OutboundMessage.status, OutboundMessage.due_at)
                .order_by(OutboundMessage.id.desc())
                .limit(1)
            )
        ).one()
        hold = (await conn.execute(select(Contact.hold_until))).scalar_one()
    assert tuple(last) == ("takeover", "scheduled", start)
    assert hold == start + timedelta(hours=1)

    async with FakeGraph() as graph, aiohttp.ClientSession() as http:
        dispatcher = Dispatcher(
            sqlite_db,
            GraphSender(GraphClient(http, graph.base_url, GRAPH_TOKEN, "1234567890")),
            clock,
            services.options,
            hub,
            pacer=Unlimited(),
        )
        clock.advance(minutes=5)  # the first drip is due, but the lead is held
        await dispatcher.tick()
        await dispatcher.tick()
        assert [body(s.json) for s in graph.sent] == ["Yes, it is! Shall I book you in?"]

        clock.set(start + timedelta(hours=1, minutes=1))  # the hold is over
        await dispatcher.tick()
        clock.set(start + timedelta(hours=2, minutes=1))
        await dispatcher.tick()
        assert [body(s.json) for s in graph.sent][1:] == ["Hi Ana!", "Checking in"]


async def reply_to(fake: FakeTelegram, message: Sent, text: str) -> list[Sent]:
    before = len([s for s in fake.sent if s.chat_id == ADMIN])
    fake.send_text(ADMIN, text, reply_to=message.message_id)
    return (await fake.wait_for_sent(before + 1, chat_id=ADMIN))[before:]


def body(payload: Any) -> str:
    return str(payload["text"]["body"])


async def test_a_reply_to_an_ordinary_bot_message_is_not_a_takeover(
    running: TelegramHandle, fake: FakeTelegram, sqlite_db: Database
) -> None:
    [help_answer] = await ask(fake, "/help")

    [answer] = await reply_to(fake, help_answer, "thanks")

    assert answer.text == NOT_A_COMMAND
    assert await count(sqlite_db, OutboundMessage) == 0


# --- webhook mode ----------------------------------------------------------------------


async def test_webhook_mode_sets_the_webhook_and_takes_updates_on_our_route(
    make_services: MakeServices, fake: FakeTelegram
) -> None:
    services = make_services(
        telegram_mode="webhook",
        telegram_webhook_url="https://bot.example.com/webhook/telegram",
        telegram_webhook_secret="s3cret-token",
    )
    app = web.Application()
    app[SERVICES] = services
    app.add_routes(telegram_routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}{WEBHOOK_PATH}"
    update = {
        "update_id": 7,
        "message": {
            "message_id": 1,
            "date": 1_772_442_000,
            "chat": {"id": ADMIN, "type": "private", "first_name": "Ada"},
            "from": {"id": ADMIN, "is_bot": False, "first_name": "Ada"},
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update) as resp:
                assert resp.status == 404  # the bot is not running yet
            handle = await start_telegram(services)
            assert handle is not None
            try:
                assert fake.webhook_url == "https://bot.example.com/webhook/telegram"
                assert fake.webhook_secret == "s3cret-token"
                async with http.post(url, json=update, headers={SECRET_HEADER: "wrong"}) as resp:
                    assert resp.status == 401
                async with http.post(
                    url, json=update, headers={SECRET_HEADER: "s3cret-token"}
                ) as resp:
                    assert resp.status == 200
                [answer] = await fake.wait_for_sent(chat_id=ADMIN)
                async with http.post(
                    url, data=b"not json", headers={SECRET_HEADER: "s3cret-token"}
                ) as resp:
                    assert resp.status == 200
            finally:
                await stop_telegram(handle)
    finally:
        await runner.cleanup()

    assert answer.text is not None and answer.text.startswith("Commands")
    assert fake.calls_of("getUpdates") == []


async def test_webhook_mode_needs_its_url(make_services: MakeServices, fake: FakeTelegram) -> None:
    with pytest.raises(TelegramStartError, match="DRIPBOT_TELEGRAM_WEBHOOK_URL"):
        await start_telegram(make_services(telegram_mode="webhook"))

    assert fake.calls == []


async def test_a_refused_webhook_stops_start_up_and_closes_the_bot(
    make_services: MakeServices, fake: FakeTelegram
) -> None:
    services = make_services(
        telegram_mode="webhook", telegram_webhook_url="https://bot.example.com/webhook/telegram"
    )
    fake.fail_next("setWebhook", 400, "Bad Request: bad webhook: HTTPS url must be provided")

    with pytest.raises(TelegramStartError, match=r"(?i)bad webhook"):
        await start_telegram(services)

    assert "telegram" not in services.extras
    assert isinstance(services.alerts, AlertHub) and not services.alerts.telegram_attached


def test_the_webhook_secret_is_the_configured_one_or_derived_from_the_token() -> None:
    derived = webhook_secret(None, TOKEN)

    assert derived == webhook_secret(None, TOKEN) != webhook_secret(None, "1:other")
    assert re.fullmatch(r"[0-9a-f]{64}", derived)
    assert webhook_secret(SecretStr("mine"), TOKEN) == "mine"


# --- rendering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "pieces"),
    [
        ("short", 4096, ["short"]),
        ("", 4096, []),
        ("line one\nline two\nline three", 18, ["line one\nline two", "line three"]),
        ("word " * 5, 12, ["word word", "word word", "word "]),
        ("x" * 25, 10, ["x" * 10, "x" * 10, "x" * 5]),
        ("😀" * 6, 4, ["😀😀", "😀😀", "😀😀"]),
        ("a\n\n\nb", 2, ["a", "b"]),
    ],
)
def test_split_text(text: str, limit: int, pieces: list[str]) -> None:
    result = split_text(text, limit)

    assert result == pieces
    assert all(utf16_length(piece) <= limit for piece in result)


@pytest.mark.usefixtures("running")
async def test_a_long_answer_arrives_in_pieces_under_the_limit(
    fake: FakeTelegram, sqlite_db: Database
) -> None:
    long_name = "Seq " + "x" * 180
    for n in range(25):
        await ask(fake, f'/newsequence "{long_name} {n}"\nDay 1: Hi')

    before = len([s for s in fake.sent if s.chat_id == ADMIN])
    fake.send_text(ADMIN, "/sequences")
    # updates are handled in order: once /help queue is answered, every piece has arrived
    fake.send_text(ADMIN, "/help queue")
    sent = await fake.wait_for_sent(before + 1, chat_id=ADMIN)
    while not (sent[-1].text or "").startswith("/queue"):
        sent = await fake.wait_for_sent(len(sent) + 1, chat_id=ADMIN)
    pieces = [s.text or "" for s in sent[before:-1]]

    assert len(pieces) >= 2
    assert all(len(piece) <= 4096 for piece in pieces)
    joined = "\n".join(pieces)
    assert all(f"{long_name} {n}" in joined for n in range(25))
