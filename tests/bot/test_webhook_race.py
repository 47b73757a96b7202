"""A STOP racing the dispatcher: no message may reach WhatsApp after the opt-out commits.

Each round enrolls a few contacts with a step due now and lets the dispatcher send them one
at a time (the lead of the round last, so its send comes late in the batch) while a STOP
from that lead arrives through the webhook at a random moment. The opt-out's UPDATE is
timed from inside its transaction (an engine event, before the commit), and the fake Graph
API records when each send arrived; every send to the lead must have arrived before that
instant. Without the per-contact lock between opting out and sending, a send whose contact
was read just before the commit arrives just after it, and this test fails.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import aiohttp
from sqlalchemy import event

from bot.services import Services
from scheduler.clock import ManualClock
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, enroll
from scheduler.pacing import Unlimited
from scheduler.ports import LogAlerts
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from tests.bot.webhook_app import drained, make_services, post, serve, text_message
from tests.fakes.graph import FakeGraph

ROUNDS = 50
OTHERS = 4
STEP = StepSpec(Timing(day=1), "template", template=TemplateRef("welcome", "en", ()))


def phone(round_no: int, k: int) -> str:
    return f"+49151{round_no:04d}{k:04d}"


class OptOutTimes:
    """When each contact's opt-out UPDATE ran, read from the engine (before the commit)."""

    def __init__(self, db: Database) -> None:
        self.at: dict[int, float] = {}
        event.listen(db.engine.sync_engine, "after_cursor_execute", self._seen)

    def _seen(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        if statement.startswith("UPDATE contacts SET opted_out_at"):
            contact_id = list(parameters)[3] if not isinstance(parameters, dict) else None
            self.at.setdefault(int(contact_id) if contact_id is not None else -1, time.monotonic())


async def test_no_send_reaches_whatsapp_after_the_opt_out_commits(
    db: Database, clock: ManualClock, graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    services: Services = make_services(db, clock, graph.base_url, http, LogAlerts())
    await create_sequence(db, "Race", [STEP], now=clock.now())
    dispatcher = Dispatcher(
        db,
        services.sender,
        clock,
        services.options,
        services.alerts,
        locks=services.locks,
        pacer=Unlimited(),
        concurrency=1,
        rng=random.Random(1),
    )
    times = OptOutTimes(db)
    rng = random.Random(20260302)
    sent_first = stopped_first = 0
    async with serve(services) as client:
        for round_no in range(ROUNDS):
            lead = phone(round_no, OTHERS)
            contacts = [ContactInput(phone(round_no, k)) for k in range(OTHERS)]
            report = await enroll(
                db,
                "Race",
                [*contacts, ContactInput(lead)],
                now=clock.now(),
                options=services.options,
            )
            assert report.enrolled == OTHERS + 1
            lead_id = report.enrolled_ids[-1][0]
            graph.latency = rng.uniform(0.0, 0.004)
            tick_delay = rng.uniform(0.0, 0.06)
            stop_delay = rng.uniform(0.0, 0.02)

            async def tick(delay: float = tick_delay) -> None:
                await asyncio.sleep(delay)
                await dispatcher.tick()

            async def stop(delay: float = stop_delay, lead: str = lead, n: int = round_no) -> None:
                await asyncio.sleep(delay)
                assert await post(client, text_message(lead, "STOP", wamid=f"wamid.race{n}")) == 200
                await drained(client)

            await asyncio.gather(tick(), stop())

            committed = times.at[lead_id]
            drips = [r for r in graph.requests if r.to == lead and r.json.get("type") == "template"]
            late = [r.monotonic - committed for r in drips if r.monotonic >= committed]
            assert late == [], f"round {round_no}: a send arrived {late[0] * 1000:.2f} ms after"
            sent_first += bool(drips)
            stopped_first += not drips
    # Both sides of the race happened: some sends went out first, some were stopped.
    assert sent_first > 0, "the opt-out always came first: the race was never run"
    assert stopped_first > 0, "the send always came first: the race was never run"
