"""Several dispatchers on one PostgreSQL database share the work without double sends, and
a dead replica's claimed messages are picked up by the others after the lease."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.sending import GraphSender
from bot.whatsapp.client import GraphClient
from scheduler.clock import ManualClock
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.pacing import Unlimited
from scheduler.ports import LogAlerts
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import OutboundMessage
from storage.outbox import claim
from tests.fakes.graph import TOKEN, FakeGraph

pytestmark = pytest.mark.postgres

STEP = StepSpec(Timing(day=1), "template", template=TemplateRef("hello", "en", ("{name}",)))


async def replicas(url: str, clock: ManualClock, n: int) -> list[Database]:
    return [
        await Database.open(url, workspace="default", now=clock.now(), apply_migrations=False)
        for _ in range(n)
    ]


async def test_three_replicas_send_each_message_exactly_once(
    pg_url: str, pg_db: Database, clock: ManualClock, options: EngineOptions, graph: FakeGraph
) -> None:
    await create_sequence(pg_db, "Seq", [STEP], now=clock.now())
    phones = [ContactInput(f"+4915123{i:06d}", name=f"Lead {i}") for i in range(600)]
    report = await enroll(pg_db, "Seq", phones, now=clock.now(), options=options)
    assert report.enrolled == 600
    graph.latency = 0.005
    handles = await replicas(pg_url, clock, 3)
    try:
        async with aiohttp.ClientSession() as http:
            dispatchers = [
                Dispatcher(
                    handle,
                    GraphSender(GraphClient(http, graph.base_url, TOKEN, "1")),
                    clock,
                    options,
                    LogAlerts(),
                    pacer=Unlimited(),
                    batch_size=50,
                    rng=random.Random(i),
                )
                for i, handle in enumerate(handles)
            ]
            handled = await asyncio.gather(*(d.tick() for d in dispatchers))
    finally:
        for handle in handles:
            await handle.close()
    assert sum(handled) == 600
    assert all(count > 0 for count in handled)  # every replica took a share
    per_recipient = Counter(r.json["to"] for r in graph.sent)
    assert len(per_recipient) == 600 and set(per_recipient.values()) == {1}
    async with pg_db.engine.connect() as conn:
        states = dict(
            (
                await conn.execute(
                    select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)
                )
            ).all()
        )
    assert states == {"sent": 600}


async def test_a_dead_replicas_claims_are_retried_after_the_lease(
    pg_url: str, pg_db: Database, clock: ManualClock, options: EngineOptions, graph: FakeGraph
) -> None:
    await create_sequence(pg_db, "Seq", [STEP], now=clock.now())
    await enroll(pg_db, "Seq", [ContactInput("+4915123456789")], now=clock.now(), options=options)
    lease = timedelta(seconds=options.send_lease_seconds)
    async with pg_db.engine.begin() as conn:  # a replica claims, then dies before sending
        assert (
            len(await claim(conn, pg_db.workspace_id, now=clock.now(), limit=10, lease=lease)) == 1
        )
    async with aiohttp.ClientSession() as http:
        survivor = Dispatcher(
            pg_db,
            GraphSender(GraphClient(http, graph.base_url, TOKEN, "1")),
            clock,
            options,
            LogAlerts(),
            pacer=Unlimited(),
        )
        await survivor.tick()
        assert graph.sent == []  # still within the lease: maybe the dead one sent it
        clock.advance(lease + timedelta(seconds=1))
        await survivor.tick()
    assert len(graph.sent) == 1
