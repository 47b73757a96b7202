"""Alerts reach every admin chat through a real PTB bot and the fake Bot API, never raise,
and reach admin WhatsApp numbers through the outbox while their window is open."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from telegram import Bot

from bot.alerts import TAKEOVER_HINT, AlertHub
from bot.config import Settings, load_settings
from handlers.takeover import forwarded_contact
from scheduler.clock import ManualClock
from storage.database import Database
from storage.engine import create_engine, session_factory
from storage.models import Contact, ForwardedMessage, OutboundMessage
from tests.fakes.telegram import FakeTelegram

ADMIN = 1001
OTHER_ADMIN = 1002
ADMIN_PHONE = "+4915123456789"

MakeHub = Callable[..., AlertHub]


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "admin_telegram_ids": f"{ADMIN},{OTHER_ADMIN}",
        "default_region": "DE",
    }
    return load_settings(_env_file=None, **(values | overrides))


@pytest.fixture
async def make_hub(
    sqlite_db: Database, clock: ManualClock, clean_env: None
) -> AsyncIterator[MakeHub]:
    hubs: list[AlertHub] = []

    def make(bot: Bot | None = None, **overrides: Any) -> AlertHub:
        hub = AlertHub(_settings(**overrides), sqlite_db, clock)
        if bot is not None:
            hub.attach_telegram(bot)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.detach_telegram()


async def _admin_contact(db: Database, clock: ManualClock, *, wrote_ago: timedelta) -> int:
    now = clock.now()
    async with db.engine.begin() as conn:
        return int(
            (
                await conn.execute(
                    insert(Contact)
                    .values(
                        workspace_id=db.workspace_id,
                        phone=ADMIN_PHONE,
                        custom_fields={},
                        last_inbound_at=now - wrote_ago,
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(Contact.id)
                )
            ).scalar_one()
        )


async def _notices(db: Database) -> list[tuple[int, str, Any]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(
                OutboundMessage.contact_id, OutboundMessage.purpose, OutboundMessage.payload
            ).order_by(OutboundMessage.id)
        )
        return [tuple(row) for row in rows]


async def test_an_alert_reaches_every_admin_chat_and_the_log(
    make_hub: MakeHub, bot: Bot, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    hub = make_hub(bot)

    with caplog.at_level(logging.WARNING, logger="dripbot.alerts"):
        await hub.alert("Sending paused: token expired. Send /resume sending.", kind="x")
        assert await hub.flush()

    assert sorted((s.chat_id, s.text) for s in fake.sent) == [
        (ADMIN, "Sending paused: token expired. Send /resume sending."),
        (OTHER_ADMIN, "Sending paused: token expired. Send /resume sending."),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "[x] Sending paused: token expired. Send /resume sending."
    ]
    assert hub.sent == [("x", "Sending paused: token expired. Send /resume sending.")]


async def test_phone_numbers_are_masked_in_the_log(
    make_hub: MakeHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub = make_hub()

    with caplog.at_level(logging.INFO, logger="dripbot.alerts"):
        await hub.alert(f"Ana ({ADMIN_PHONE}) opted out", kind="opt_out")

    assert [r.getMessage() for r in caplog.records] == ["[opt_out] Ana (+49*******6789) opted out"]


async def test_a_burst_of_alerts_becomes_one_message_per_chat(
    make_hub: MakeHub, bot: Bot, fake: FakeTelegram
) -> None:
    hub = make_hub(bot)

    for n in range(3):
        await hub.alert(f"Contact {n} opted out", kind="opt_out")
    assert await hub.flush()

    assert [(s.chat_id, s.text) for s in fake.sent] == [
        (ADMIN, "Contact 0 opted out\n\nContact 1 opted out\n\nContact 2 opted out"),
        (OTHER_ADMIN, "Contact 0 opted out\n\nContact 1 opted out\n\nContact 2 opted out"),
    ]


async def test_a_lead_reply_gets_its_own_message_and_is_recorded_for_takeover(
    make_hub: MakeHub, bot: Bot, fake: FakeTelegram, sqlite_db: Database, clock: ManualClock
) -> None:
    hub = make_hub(bot)
    lead = await _admin_contact(sqlite_db, clock, wrote_ago=timedelta(0))

    await hub.alert("Sequence 'Tips' is finished", kind="sequence_finished")
    await hub.alert("Ana replied: Is it free?", kind="reply", contact_id=lead)
    assert await hub.flush()

    texts = [(s.chat_id, s.text) for s in fake.sent]
    forwarded = f"Ana replied: Is it free?\n\n{TAKEOVER_HINT}"
    assert texts == [
        (ADMIN, "Sequence 'Tips' is finished"),
        (OTHER_ADMIN, "Sequence 'Tips' is finished"),
        (ADMIN, forwarded),
        (OTHER_ADMIN, forwarded),
    ]
    for sent in fake.sent[2:]:
        assert sent.chat_id is not None
        assert await forwarded_contact(sqlite_db, int(sent.chat_id), sent.message_id) == lead
    assert await forwarded_contact(sqlite_db, ADMIN, fake.sent[0].message_id) is None


async def test_a_blocked_admin_does_not_stop_the_others(
    make_hub: MakeHub, bot: Bot, fake: FakeTelegram, sqlite_db: Database, clock: ManualClock
) -> None:
    hub = make_hub(bot)
    lead = await _admin_contact(sqlite_db, clock, wrote_ago=timedelta(0))
    fake.block(ADMIN)

    await hub.alert("Ana replied: hi", kind="reply", contact_id=lead)
    assert await hub.flush()

    assert [s.chat_id for s in fake.sent] == [OTHER_ADMIN]
    async with sqlite_db.engine.connect() as conn:
        chats = list((await conn.execute(select(ForwardedMessage.chat_id))).scalars())
    assert chats == [OTHER_ADMIN]


async def test_flood_control_is_waited_out(
    make_hub: MakeHub, bot: Bot, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB warns about retry_after otherwise
    hub = make_hub(bot)
    fake.fail_next("sendMessage", 429, retry_after=1)

    await hub.alert("Failure rate 40% in the last hour", kind="failure_rate")
    assert await hub.flush()

    assert sorted(s.chat_id for s in fake.sent if s.chat_id is not None) == [ADMIN, OTHER_ADMIN]
    assert len(fake.calls_of("sendMessage")) == 3


async def test_without_telegram_an_alert_is_logged_and_never_raises(
    clock: ManualClock, tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
    broken = Database(engine, session_factory(engine), workspace_id=1)
    hub = AlertHub(_settings(admin_whatsapp_numbers=ADMIN_PHONE), broken, clock)
    try:
        with caplog.at_level(logging.ERROR, logger="bot.alerts"):
            await hub.alert("Sequence 'Tips' is finished", kind="sequence_finished")
    finally:
        await engine.dispose()

    assert hub.sent == [("sequence_finished", "Sequence 'Tips' is finished")]
    assert [r.getMessage() for r in caplog.records] == [
        "could not pass on a sequence_finished alert"
    ]


async def test_admin_whatsapp_numbers_get_a_notice_while_their_window_is_open(
    make_hub: MakeHub, sqlite_db: Database, clock: ManualClock
) -> None:
    hub = make_hub(admin_whatsapp_numbers="0151 23456789")
    admin = await _admin_contact(sqlite_db, clock, wrote_ago=timedelta(hours=23))

    await hub.alert("Ana opted out", kind="opt_out")
    await hub.alert("Sending paused: token expired", kind="sending_paused")
    clock.advance(hours=2)  # the window closed
    await hub.alert("Ben opted out", kind="opt_out")

    assert await _notices(sqlite_db) == [
        (admin, "notice", {"message": {"kind": "text", "text": "Ana opted out"}})
    ]


async def test_broadcast_sends_the_chart_and_counts_the_chats_reached(
    make_hub: MakeHub, bot: Bot, fake: FakeTelegram
) -> None:
    hub = make_hub(bot)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    fake.block(OTHER_ADMIN)

    reached = await hub.broadcast("Daily summary", kind="daily_summary", image=png)

    assert reached == 1
    [photo] = fake.sent
    assert (photo.method, photo.chat_id, photo.caption) == ("sendPhoto", ADMIN, "Daily summary")
    assert (photo.file, photo.filename) == (png, "stats.png")
