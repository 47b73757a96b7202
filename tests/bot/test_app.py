"""The application served for real on 127.0.0.1: lifecycle, ticking, health and metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from collections.abc import Callable

import aiohttp
import pytest
from sqlalchemy import select, text

from bot.metrics import metrics_of
from bot.sending import ConsoleSender, GraphSender
from scheduler.clock import ManualClock
from scheduler.enrollment import ContactInput, enroll
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import OutboundMessage
from tests.bot.conftest import RunningApp, SettingsFactory, StartApp
from tests.fakes.graph import FakeGraph

WELCOME = StepSpec(
    Timing(day=1), "template", template=TemplateRef("welcome", "en", ("{first_name|there}",))
)
ANA = "+4915123456789"


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds} s")
        await asyncio.sleep(0.01)


async def enroll_phones(running: RunningApp, *phones: str) -> None:
    """Enroll ``phones`` into a one-step template sequence, due at once (the app's clock)."""
    services = running.services
    now = services.clock.now()
    await create_sequence(services.db, "Welcome", [WELCOME], now=now)
    contacts = [ContactInput(p) for p in phones]
    await enroll(services.db, "welcome", contacts, now=now, options=services.options)


async def get(running: RunningApp, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(running.url + path) as response:
        return response.status, await response.text()


async def get_json(running: RunningApp, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(running.url + path) as response:
        return response.status, await response.json()


async def outbox(db: Database) -> list[tuple[str, bool, str | None]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(OutboundMessage.status, OutboundMessage.dry_run, OutboundMessage.wamid)
        )
        return [(r.status, r.dry_run, r.wamid) for r in rows]


def first_tick_done(running: RunningApp) -> Callable[[], bool]:
    return lambda: running.jobs.tick.runs >= 1


async def test_healthz_reports_database_scheduler_tick_and_queue(running_app: RunningApp) -> None:
    await wait_until(first_tick_done(running_app))
    status, body = await get_json(running_app, "/healthz")
    assert status == 200
    assert body == {
        "status": "ok",
        "database": True,
        "scheduler": True,
        "tick_running": False,
        "last_tick_age_seconds": 0.0,
        "queue_depth": 0,
        "sending_paused": False,
        "dry_run": False,
        "problems": [],
    }
    assert isinstance(running_app.services.sender, GraphSender)


async def test_healthz_is_503_when_the_dispatcher_stops_ticking(
    running_app: RunningApp, clock: ManualClock
) -> None:
    await wait_until(first_tick_done(running_app))
    # Stale means ten tick intervals without a tick; the next real tick is an hour away.
    clock.advance(hours=10)
    status, body = await get_json(running_app, "/healthz")
    assert (status, body["problems"]) == (200, [])
    clock.advance(seconds=1)
    status, body = await get_json(running_app, "/healthz")
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["last_tick_age_seconds"] == 36001.0
    assert body["problems"] == ["no dispatch tick for more than 36000 s"]


async def test_healthz_counts_due_messages_in_the_queue(
    settings_factory: SettingsFactory, start_app: StartApp, clock: ManualClock
) -> None:
    running = await start_app(settings_factory())
    await wait_until(first_tick_done(running))
    await enroll_phones(running, ANA, "+4915123456780")
    status, body = await get_json(running, "/healthz")
    assert (status, body["queue_depth"]) == (200, 2)


async def test_interval_job_ticks_and_sends_what_becomes_due(
    settings_factory: SettingsFactory, start_app: StartApp, graph: FakeGraph
) -> None:
    running = await start_app(settings_factory(tick_seconds=0.05))
    await wait_until(first_tick_done(running))
    await enroll_phones(running, ANA)
    sent = await graph.wait_for_sends(1)
    assert sent[0].json["to"] == ANA
    assert sent[0].json["template"]["name"] == "welcome"
    await wait_until(lambda: running.jobs.tick.runs >= 5)


async def test_metrics_expose_states_latency_queue_and_webhooks(
    settings_factory: SettingsFactory, start_app: StartApp, graph: FakeGraph
) -> None:
    running = await start_app(settings_factory(tick_seconds=0.05))
    await wait_until(first_tick_done(running))
    status, body = await get(running, "/metrics")
    assert status == 200
    for name in (
        "dripbot_messages",
        "dripbot_queue_depth",
        "dripbot_send_latency_seconds",
        "dripbot_webhooks_total",
        "dripbot_database_up",
    ):
        assert f"# TYPE {name}" in body or f"# HELP {name}" in body
    assert 'dripbot_messages{state="sent"} 0.0' in body

    await enroll_phones(running, ANA)
    await graph.wait_for_sends(1)
    await wait_until(lambda: running.jobs.tick.runs >= 3)
    metrics_of(running.services).webhooks.labels(result="ok").inc()
    status, body = await get(running, "/metrics")
    assert 'dripbot_messages{state="sent"} 1.0' in body
    assert 'dripbot_messages{state="scheduled"} 0.0' in body
    assert "dripbot_queue_depth 0.0" in body
    assert 'dripbot_send_latency_seconds_count{result="accepted"} 1.0' in body
    assert 'dripbot_webhooks_total{result="ok"} 1.0' in body
    assert "dripbot_database_up 1.0" in body


async def test_each_app_has_its_own_metrics_registry(
    settings_factory: SettingsFactory, start_app: StartApp, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = await start_app(settings_factory())
    second_db = tmp_path_factory.mktemp("second") / "dripbot.db"
    second = await start_app(settings_factory(database_url=f"sqlite+aiosqlite:///{second_db}"))
    metrics_of(first.services).webhooks.labels(result="ok").inc()
    _, body = await get(second, "/metrics")
    assert 'dripbot_webhooks_total{result="ok"}' not in body


async def test_console_provider_prints_and_records_dry_run(
    settings_factory: SettingsFactory,
    start_app: StartApp,
    graph: FakeGraph,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        running = await start_app(settings_factory(whatsapp=False, tick_seconds=0.05))
    assert isinstance(running.services.sender, ConsoleSender)
    assert any("console provider" in r.getMessage() for r in caplog.records)
    await wait_until(first_tick_done(running))
    await enroll_phones(running, ANA)

    printed: list[str] = []

    def dry_run_printed() -> bool:
        printed.append(capsys.readouterr().out)
        return "[dry-run]" in "".join(printed)

    await wait_until(dry_run_printed)
    line = next(x for x in "".join(printed).splitlines() if x.startswith("[dry-run]"))
    assert line == "[dry-run] to +49*******6789: template welcome (en) there"
    await wait_until(lambda: running.jobs.tick.runs >= 3)
    [(status, dry_run, wamid)] = await outbox(running.services.db)
    assert (status, dry_run) == ("sent", True)
    assert wamid is not None and wamid.startswith("dryrun.")
    assert graph.requests == []
    _, body = await get_json(running, "/healthz")
    assert body["dry_run"] is True


async def test_shutdown_lets_a_send_in_flight_finish_and_record(
    settings_factory: SettingsFactory, start_app: StartApp, graph: FakeGraph, clock: ManualClock
) -> None:
    settings = settings_factory()
    db = await Database.open(settings.database_url, workspace="default", now=clock.now())
    try:
        await create_sequence(db, "Welcome", [WELCOME], now=clock.now())
        await enroll(
            db,
            "welcome",
            [ContactInput(ANA)],
            now=clock.now(),
            options=settings.engine_options(),
        )
    finally:
        await db.close()
    graph.latency = 0.3
    running = await start_app(settings)
    await graph.wait_for_requests(1)  # the first tick's send is on its way
    await running.stop()
    assert len(graph.sent) == 1
    db = await Database.open(settings.database_url, workspace="default", now=clock.now())
    try:
        assert await outbox(db) == [("sent", False, graph.sent[0].wamid)]
    finally:
        await db.close()


async def test_shutdown_closes_everything_without_warnings(running_app: RunningApp) -> None:
    await wait_until(first_tick_done(running_app))
    services, jobs = running_app.services, running_app.jobs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await running_app.stop()
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert services.http is not None and services.http.closed
    assert not jobs.scheduler.running
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(running_app, "/healthz")


async def test_a_failing_tick_is_logged_and_the_next_one_runs(
    settings_factory: SettingsFactory,
    start_app: StartApp,
    graph: FakeGraph,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = await start_app(settings_factory(tick_seconds=0.05))
    await wait_until(first_tick_done(running))
    db = running.services.db
    async with db.engine.begin() as conn:  # the outbox disappears, as in a database hiccup
        await conn.execute(text("ALTER TABLE outbound_messages RENAME TO outbound_messages_away"))
    await wait_until(lambda: running.jobs.tick.failures >= 2)
    async with db.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE outbound_messages_away RENAME TO outbound_messages"))
    await enroll_phones(running, ANA)
    await graph.wait_for_sends(1)
    assert running.jobs.running
    failures = [r for r in caplog.records if r.getMessage().startswith("dispatch tick")]
    # a database error is one warning line per tick, without a traceback
    assert failures and "database unavailable (OperationalError)" in failures[0].getMessage()


async def test_a_send_waits_for_meta_only_as_long_as_the_configured_timeout(
    settings_factory: SettingsFactory, start_app: StartApp, graph: FakeGraph, clock: ManualClock
) -> None:
    settings = settings_factory(whatsapp_timeout_seconds=0.3)
    db = await Database.open(settings.database_url, workspace="default", now=clock.now())
    try:
        await create_sequence(db, "Welcome", [WELCOME], now=clock.now())
        await enroll(
            db, "welcome", [ContactInput(ANA)], now=clock.now(), options=settings.engine_options()
        )
    finally:
        await db.close()
    graph.hang = True  # Meta never answers
    began = time.monotonic()
    running = await start_app(settings)
    await wait_until(first_tick_done(running), seconds=5.0)
    # the first tick ended with the send timed out, not after the default 15 s
    assert time.monotonic() - began < 5.0
    assert len(graph.requests) == 1
    # in doubt: it waits for a status webhook or its lease, and is not sent again meanwhile
    assert await outbox(running.services.db) == [("sending", False, None)]
