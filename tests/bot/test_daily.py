"""The daily summary goes out once a day whoever runs the job, and each alert condition is
raised when it happens, once."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from telegram import Bot

from bot.alerts import AlertHub
from bot.config import Settings, load_settings
from bot.daily import FAILURE_THRESHOLD, MIN_ATTEMPTS, check_alerts, send_daily_summary
from bot.sending import ConsoleSender
from bot.services import Services
from bot.wiring import build_interpreter
from handlers.replies import Actor
from scheduler.clock import ManualClock
from storage.database import Database
from storage.models import Contact, Enrollment, JobRun, OutboundMessage, Sequence
from tests.conftest import T0
from tests.fakes.telegram import TOKEN, FakeTelegram

ADMIN = 1001
OTHER_ADMIN = 1002
CLI = Actor("cli", "console")

MakeServices = Callable[..., Services]


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "admin_telegram_ids": f"{ADMIN},{OTHER_ADMIN}",
        "default_region": "DE",
        "send_window": "always",
        # T0 is 09:00 UTC, 10:00 in Berlin
        "timezone": "Europe/Berlin",
        "stats_time": "10:00",
    }
    return load_settings(_env_file=None, **(values | overrides))


@pytest.fixture
async def make_services(clock: ManualClock, clean_env: None) -> AsyncIterator[MakeServices]:
    made: list[Services] = []

    def make(db: Database, bot: Bot | None = None, **overrides: Any) -> Services:
        settings = _settings(**overrides)
        hub = AlertHub(settings, db, clock)
        if bot is not None:
            hub.attach_telegram(bot)
        services = Services(
            settings=settings,
            db=db,
            clock=clock,
            options=settings.engine_options(),
            alerts=hub,
            sender=ConsoleSender(io.StringIO()),
        )
        made.append(services)
        return services

    yield make
    for services in made:
        assert isinstance(services.alerts, AlertHub)
        await services.alerts.detach_telegram()


async def _run(services: Services, text: str) -> str:
    interpreter = build_interpreter(
        services.settings, services.db, services.clock, alerts=services.alerts
    )
    reply = await interpreter.run(CLI, text)
    assert reply.ok, reply.text
    return reply.text


async def _tips_with_two_leads(services: Services) -> None:
    await _run(services, "/newsequence Tips\nDay 1: Hi {first_name|there}!\nafter 1h: Still there?")
    await _run(services, "/enroll tips\n+4915123456789 Ana\n+4915123456780 Ben")


async def _set_enrollments(db: Database, *statuses: str) -> None:
    async with db.engine.begin() as conn:
        ids = list((await conn.execute(select(Enrollment.id).order_by(Enrollment.id))).scalars())
        for enrollment_id, status in zip(ids, statuses, strict=True):
            await conn.execute(
                update(Enrollment).where(Enrollment.id == enrollment_id).values(status=status)
            )


async def _job_runs(db: Database) -> list[tuple[str, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(JobRun.job, JobRun.run_key).order_by(JobRun.id))
        return [(row.job, row.run_key) for row in rows]


# --- the daily summary -------------------------------------------------------------------


async def test_the_summary_waits_for_its_time_then_goes_once_a_day(
    make_services: MakeServices, sqlite_db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    services = make_services(sqlite_db, bot, stats_time="10:30")

    assert await send_daily_summary(services) is False  # 10:00 in Berlin
    assert fake.sent == [] and await _job_runs(sqlite_db) == []

    later = T0 + timedelta(minutes=30)
    assert await send_daily_summary(services, now=later) is True
    assert await send_daily_summary(services, now=later + timedelta(hours=5)) is False
    assert sorted(s.chat_id for s in fake.sent if s.chat_id is not None) == [ADMIN, OTHER_ADMIN]
    assert fake.sent[0].text is not None
    assert fake.sent[0].text.startswith("Daily summary · Mon 02 Mar 2026\n")

    assert await send_daily_summary(services, now=later + timedelta(days=1)) is True
    assert [run for _, run in await _job_runs(sqlite_db)] == [
        f"{sqlite_db.workspace_id}:2026-03-02",
        f"{sqlite_db.workspace_id}:2026-03-03",
    ]


async def test_the_summary_carries_the_chart_once_there_is_something_to_draw(
    make_services: MakeServices, sqlite_db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    services = make_services(sqlite_db, bot)
    await _tips_with_two_leads(services)

    assert await send_daily_summary(services) is True

    photos = [s for s in fake.sent if s.method == "sendPhoto"]
    assert sorted(s.chat_id for s in photos if s.chat_id is not None) == [ADMIN, OTHER_ADMIN]
    for photo in photos:
        assert photo.file is not None and photo.file.startswith(b"\x89PNG\r\n\x1a\n")
        assert photo.filename == "stats.png"
    texts = "\n".join(s.text or s.caption or "" for s in fake.sent if s.chat_id == ADMIN)
    assert texts.startswith("Daily summary · Mon 02 Mar 2026") and "Tips" in texts


async def test_a_summary_nobody_received_is_tried_again(
    make_services: MakeServices, sqlite_db: Database, bot: Bot, fake: FakeTelegram
) -> None:
    services = make_services(sqlite_db, bot)
    fake.block(ADMIN)
    fake.block(OTHER_ADMIN)

    assert await send_daily_summary(services) is False
    assert await _job_runs(sqlite_db) == []

    fake.unblock(ADMIN)
    assert await send_daily_summary(services) is True
    assert [s.chat_id for s in fake.sent] == [ADMIN]


async def test_without_a_chat_to_send_to_nothing_is_claimed(
    make_services: MakeServices, sqlite_db: Database
) -> None:
    services = make_services(sqlite_db)  # no Telegram bot attached, no WhatsApp admin

    assert await send_daily_summary(services) is False
    assert await _job_runs(sqlite_db) == []


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
async def test_two_processes_on_one_postgres_database_send_it_once(
    make_services: MakeServices, db_url: str, clock: ManualClock, fake: FakeTelegram
) -> None:
    first_db = await Database.open(db_url, workspace="default", now=clock.now())
    second_db = await Database.open(db_url, workspace="default", now=clock.now())
    try:
        async with (
            Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as first_bot,
            Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as second_bot,
        ):
            first = make_services(first_db, first_bot)
            second = make_services(second_db, second_bot)
            await _tips_with_two_leads(first)

            results = await asyncio.gather(send_daily_summary(first), send_daily_summary(second))
            again = await asyncio.gather(send_daily_summary(first), send_daily_summary(second))
            for services in (first, second):
                assert isinstance(services.alerts, AlertHub)
                await services.alerts.detach_telegram()
    finally:
        await first_db.close()
        await second_db.close()

    assert sorted(results) == [False, True]
    assert tuple(again) == (False, False)
    photos = [s.chat_id for s in fake.sent if s.method == "sendPhoto"]
    assert sorted(c for c in photos if c is not None) == [ADMIN, OTHER_ADMIN]


# --- alert conditions --------------------------------------------------------------------


async def test_a_sequence_finished_by_everyone_is_announced_once(
    make_services: MakeServices, sqlite_db: Database
) -> None:
    services = make_services(sqlite_db)
    await _tips_with_two_leads(services)

    await _set_enrollments(sqlite_db, "completed", "active")
    assert await check_alerts(services) == []

    await _set_enrollments(sqlite_db, "completed", "opted_out")
    raised = await check_alerts(services)
    assert raised == [
        "Sequence 'Tips' is finished: all 2 enrollments ended, 1 completed every step. "
        "/stats Tips has the figures."
    ]
    assert isinstance(services.alerts, AlertHub)
    assert services.alerts.sent == [("sequence_finished", raised[0])]
    assert await check_alerts(services) == []


@pytest.mark.parametrize(
    ("statuses", "announced"),
    [
        (("stopped", "opted_out"), False),  # nobody completed: stopped, not finished
        (("completed", "completed"), True),
    ],
)
async def test_finished_needs_a_completed_enrollment(
    make_services: MakeServices, sqlite_db: Database, statuses: tuple[str, str], announced: bool
) -> None:
    services = make_services(sqlite_db)
    await _tips_with_two_leads(services)
    await _set_enrollments(sqlite_db, *statuses)

    assert bool(await check_alerts(services)) is announced


async def test_an_archived_sequence_is_not_announced(
    make_services: MakeServices, sqlite_db: Database
) -> None:
    services = make_services(sqlite_db)
    await _tips_with_two_leads(services)
    await _set_enrollments(sqlite_db, "completed", "completed")
    async with sqlite_db.engine.begin() as conn:
        await conn.execute(update(Sequence).values(status="archived"))

    assert await check_alerts(services) == []


async def _sends(
    db: Database, now: datetime, *, sent: int, failed: int, ago: timedelta = timedelta(minutes=5)
) -> None:
    """``sent`` accepted and ``failed`` failed messages, all ``ago`` before ``now``."""
    at = now - ago
    async with db.engine.begin() as conn:
        contact_id = (await conn.execute(select(Contact.id).limit(1))).scalar_one_or_none()
        if contact_id is None:
            contact_id = (
                await conn.execute(
                    insert(Contact)
                    .values(
                        workspace_id=db.workspace_id,
                        phone="+4915123456789",
                        custom_fields={},
                        created_at=at,
                        updated_at=at,
                    )
                    .returning(Contact.id)
                )
            ).scalar_one()
        common = {
            "workspace_id": db.workspace_id,
            "contact_id": contact_id,
            "purpose": "drip",
            "due_at": at,
            "attempts": 1,
            "created_at": at,
            "updated_at": at,
        }
        delivered = {"status": "delivered", "sent_at": at, "failed_at": None, "error_detail": None}
        undeliverable = {
            "status": "failed",
            "sent_at": None,
            "failed_at": at,
            "error_detail": "131026 message undeliverable",
        }
        rows = [common | delivered] * sent + [common | undeliverable] * failed
        if rows:
            await conn.execute(insert(OutboundMessage), rows)


@pytest.mark.parametrize(
    ("sent", "failed", "ago", "announced"),
    [
        (9, 1, timedelta(minutes=5), False),  # exactly 10 %: not over it
        (8, 2, timedelta(minutes=5), True),
        (2, 3, timedelta(minutes=5), False),  # too few attempts to speak of a rate
        (8, 2, timedelta(minutes=61), False),  # outside the last hour
    ],
)
async def test_the_failure_rate_threshold(
    make_services: MakeServices,
    sqlite_db: Database,
    clock: ManualClock,
    sent: int,
    failed: int,
    ago: timedelta,
    announced: bool,
) -> None:
    services = make_services(sqlite_db)
    await _sends(sqlite_db, clock.now(), sent=sent, failed=failed, ago=ago)

    assert bool(await check_alerts(services)) is announced
    assert MIN_ATTEMPTS == 10 and FAILURE_THRESHOLD == 0.10


async def test_a_high_failure_rate_is_announced_once_an_hour(
    make_services: MakeServices, sqlite_db: Database, clock: ManualClock
) -> None:
    services = make_services(sqlite_db)
    await _sends(sqlite_db, clock.now(), sent=6, failed=4)

    first = await check_alerts(services)
    clock.advance(minutes=30)
    await _sends(sqlite_db, clock.now(), sent=6, failed=4)
    same_hour = await check_alerts(services)
    clock.advance(minutes=31)
    next_hour = await check_alerts(services)

    assert first == [
        "Failure rate 40% in the last hour: 4 of 10 sends failed. Most often: 131026 message "
        "undeliverable (4). See /queue."
    ]
    assert same_hour == []
    assert next_hour == [
        "Failure rate 40% in the last hour: 4 of 10 sends failed. Most often: 131026 message "
        "undeliverable (4). See /queue."
    ]
    async with sqlite_db.engine.connect() as conn:
        markers = (await conn.execute(select(func.count()).select_from(JobRun))).scalar_one()
    assert markers == 2
