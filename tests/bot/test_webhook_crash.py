"""A process killed right after answering 200 to a STOP loses nothing.

The webhook runs in its own process (``tests/bot/webhook_app.py``, serving the app as the
service does, with a dispatcher ticking). A backlog of other messages is posted first so
the STOP is still waiting in the inbox when the process is killed with SIGKILL, right after
its 200. After a restart the stored body is processed: the lead is opted out and gets
exactly one confirmation, counted at the fake Graph API across both runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.webhook import PATH
from handlers.optout import OPT_OUT_CONFIRMATION
from scheduler.clock import SystemClock
from scheduler.enrollment import ContactInput, enroll
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, OutboundMessage, WebhookEvent
from tests.bot.webhook_app import options, signed, text_message
from tests.fakes.graph import FakeGraph

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LEAD = "+16505550123"
STOP_WAMID = "wamid.crash-stop"
BACKLOG_BODIES = 20
MESSAGES_PER_BODY = 50


async def start_server(
    database_url: str, graph_url: str, log: Path
) -> tuple[asyncio.subprocess.Process, int]:
    with log.open("ab") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.bot.webhook_app",
            "--database-url",
            database_url,
            "--graph-url",
            graph_url,
            cwd=ROOT,
            env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
    except TimeoutError:
        process.kill()
        raise
    assert line.startswith(b"listening on "), f"the server did not start; see {log}"
    return process, int(line.split()[-1])


def backlog_body(n: int) -> bytes:
    payload = text_message(None, "x", wamid="unused")
    value = payload["entry"][0]["changes"][0]["value"]
    value["contacts"] = []
    value["messages"] = [
        {
            "from": f"4915100{n:03d}{k:03d}",
            "id": f"wamid.backlog-{n}-{k}",
            "timestamp": "1772442060",
            "type": "text",
            "text": {"body": f"question {k}"},
        }
        for k in range(MESSAGES_PER_BODY)
    ]
    return json.dumps(payload).encode()


async def post(http: aiohttp.ClientSession, port: int, body: bytes) -> int:
    url = f"http://127.0.0.1:{port}{PATH}"
    async with http.post(url, data=body, headers=signed(body)) as response:
        await response.read()
        return response.status


async def test_a_stop_answered_then_killed_is_carried_out_after_restart(
    sqlite_url: str, graph: FakeGraph, tmp_path: Path
) -> None:
    clock = SystemClock()
    db = await Database.open(sqlite_url, workspace="default", now=clock.now())
    later = StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en", ()))
    await create_sequence(db, "Tips", [later], now=clock.now())
    report = await enroll(db, "Tips", [ContactInput(LEAD)], now=clock.now(), options=options())
    assert report.enrolled == 1
    await db.close()
    log = tmp_path / "server.log"

    process, port = await start_server(sqlite_url, graph.base_url, log)
    try:
        async with aiohttp.ClientSession() as http:
            statuses = await asyncio.gather(
                *(post(http, port, backlog_body(n)) for n in range(BACKLOG_BODIES))
            )
            assert set(statuses) == {200}
            stop = json.dumps(text_message(LEAD, "STOP", wamid=STOP_WAMID)).encode()
            assert await post(http, port, stop) == 200
            process.send_signal(signal.SIGKILL)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert process.returncode == -signal.SIGKILL

    db = await Database.open(sqlite_url, workspace="default", now=clock.now())
    try:
        async with db.engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(WebhookEvent.processed_at).where(WebhookEvent.body.contains(STOP_WAMID))
                )
            ).one()
            opted_out = (
                await conn.execute(select(Contact.opted_out_at).where(Contact.phone == LEAD))
            ).scalar_one()
        assert stored.processed_at is None, "the STOP was processed before the kill"
        assert opted_out is None

        process, port = await start_server(sqlite_url, graph.base_url, log)
        try:
            confirmations = await wait_for_confirmations(graph, 1, timeout=60)
            await asyncio.sleep(1.0)  # a few more ticks: nothing else may follow
            assert wait_count(graph) == confirmations == 1
        finally:
            process.kill()
            await process.wait()

        async with db.engine.connect() as conn:
            contact = (await conn.execute(select(Contact).where(Contact.phone == LEAD))).one()
            messages = list(
                await conn.execute(
                    select(OutboundMessage.purpose, OutboundMessage.status).where(
                        OutboundMessage.contact_id == contact.id
                    )
                )
            )
            left = (
                await conn.execute(
                    select(WebhookEvent.id).where(WebhookEvent.processed_at.is_(None))
                )
            ).all()
        assert contact.opted_out_at is not None
        assert sorted(messages) == [("drip", "cancelled"), ("notice", "sent")]
        assert left == []
    finally:
        await db.close()


def wait_count(graph: FakeGraph) -> int:
    return sum(
        1
        for r in graph.sent
        if r.to == LEAD and (r.json.get("text") or {}).get("body") == OPT_OUT_CONFIRMATION
    )


async def wait_for_confirmations(graph: FakeGraph, n: int, *, timeout: float) -> int:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wait_count(graph) < n:
        if loop.time() > deadline:
            raise TimeoutError(f"no confirmation after {timeout}s")
        await asyncio.sleep(0.05)
    return wait_count(graph)
