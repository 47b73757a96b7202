"""``dripbot serve`` as a real process: the no-configuration start, SIGTERM, and SIGKILL."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

import aiohttp
import pytest
from sqlalchemy import select

from scheduler.clock import SystemClock
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.ports import message_id_from_callback
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import OutboundMessage
from tests.bot.conftest import PHONE_NUMBER_ID, free_port
from tests.fakes.graph import TOKEN, FakeGraph

pytestmark = pytest.mark.slow

WELCOME = StepSpec(Timing(day=1), "template", template=TemplateRef("welcome", "en", ("{name}",)))
#: enrollment as the test process does it: due at once, whatever the hour
ENROLL_OPTIONS = EngineOptions(send_window=None, daily_reach_limit=None)


def dripbot_command() -> list[str]:
    """The installed console script (what ``make run`` calls), else the module."""
    script = Path(sys.executable).with_name("dripbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


class Serve:
    """One ``dripbot serve`` process with its output in files (no pipe to fill up)."""

    def __init__(self, cwd: Path, env: dict[str, str], name: str) -> None:
        self.cwd = cwd
        self.env = env
        self.stdout_path = cwd / f"{name}.out"
        self.stderr_path = cwd / f"{name}.err"
        self.url = f"http://127.0.0.1:{env['DRIPBOT_PORT']}"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    async def start(self) -> None:
        with self._files() as (out, err):
            self.process = await asyncio.create_subprocess_exec(
                *dripbot_command(), "serve", cwd=self.cwd, env=self.env, stdout=out, stderr=err
            )

    @contextmanager
    def _files(self) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            yield out, err

    async def wait_healthy(self, seconds: float = 10.0) -> None:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                try:
                    async with http.get(self.url + "/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            deadline = time.monotonic() + seconds
            while not await healthy():
                assert self.process is not None
                if self.process.returncode is not None:
                    pytest.fail(f"dripbot serve exited early:\n{self.stderr}")
                if time.monotonic() > deadline:
                    pytest.fail(f"/healthz not 200 within {seconds} s:\n{self.stderr}")
                await asyncio.sleep(0.05)

    async def stop(self, sig: signal.Signals, seconds: float = 5.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), seconds)

    async def kill_if_running(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def serves(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, str], str], Serve]]:
    """Make ``dripbot serve`` processes in ``tmp_path``; any left running is killed."""
    made: list[Serve] = []

    def make(extra_env: dict[str, str], name: str) -> Serve:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPBOT_")}
        env |= {"PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"} | extra_env
        serve = Serve(tmp_path, env, name)
        made.append(serve)
        return serve

    yield make
    for serve in made:
        await serve.kill_if_running()


@asynccontextmanager
async def database(path: Path) -> AsyncIterator[Database]:
    db = await Database.open(
        f"sqlite+aiosqlite:///{path}", workspace="default", now=SystemClock().now()
    )
    try:
        yield db
    finally:
        await db.close()


async def enroll_phones(db: Database, phones: list[str]) -> None:
    now = SystemClock().now()
    await create_sequence(db, "Welcome", [WELCOME], now=now)
    contacts = [ContactInput(p, name=f"Lead {i}") for i, p in enumerate(phones)]
    report = await enroll(db, "welcome", contacts, now=now, options=ENROLL_OPTIONS)
    assert report.enrolled == len(phones)


async def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        await asyncio.sleep(0.05)


async def test_serve_with_no_configuration_prints_a_due_step_and_stops_on_sigterm(
    tmp_path: Path, serves: Callable[[dict[str, str], str], Serve]
) -> None:
    serve = serves({"DRIPBOT_PORT": str(free_port())}, "serve")
    await serve.start()
    await serve.wait_healthy()
    assert (tmp_path / "dripbot.db").exists()
    assert "using the console provider" in serve.stderr
    assert "no Telegram bot" in serve.stderr
    # full garbage collections no longer walk start-up's objects (a 100 ms stall each)
    assert "long-lived objects frozen out of garbage collection" in serve.stderr

    async with database(tmp_path / "dripbot.db") as db:
        await enroll_phones(db, ["+4915123456789"])
        await wait_for(lambda: "[dry-run]" in serve.stdout, 10, "the dry-run line")
        assert "[dry-run] to +49*******6789: template welcome (en) Lead 0" in serve.stdout
        assert await serve.stop(signal.SIGTERM) == 0
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(select(OutboundMessage.status, OutboundMessage.dry_run))
            ).all()
    assert [tuple(r) for r in rows] == [("sent", True)]
    assert "Traceback" not in serve.stderr


async def test_killed_mid_batch_and_restarted_every_contact_gets_its_message(
    tmp_path: Path, serves: Callable[[dict[str, str], str], Serve]
) -> None:
    phones = [f"+49151{n:08d}" for n in range(80)]
    async with FakeGraph(latency=0.05) as graph, database(tmp_path / "dripbot.db") as db:
        await enroll_phones(db, phones)
        env = {
            "DRIPBOT_PORT": str(free_port()),
            "DRIPBOT_WHATSAPP_TOKEN": TOKEN,
            "DRIPBOT_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            "DRIPBOT_WHATSAPP_API_URL": graph.base_url,
            "DRIPBOT_SEND_LEASE_SECONDS": "2",
            "DRIPBOT_TICK_SECONDS": "0.2",
            "DRIPBOT_RATE_PER_SECOND": "40",  # a burst of 40, then 40/s: the kill lands mid-batch
            "DRIPBOT_DAILY_REACH_LIMIT": "unlimited",
        }
        first = serves(env, "first")
        await first.start()
        await graph.wait_for_requests(50, timeout=10)
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.time()
        assert 0 < len(graph.requests) < len(phones)

        async with db.engine.connect() as conn:
            leases: dict[int, datetime] = {
                r.id: r.lease_until
                for r in await conn.execute(
                    select(OutboundMessage.id, OutboundMessage.lease_until).where(
                        OutboundMessage.status == "sending"
                    )
                )
            }
        assert len(leases) == len(phones)  # all claimed in one batch, none recorded

        second = serves(env, "second")
        await second.start()
        await wait_for(
            lambda: {r.to for r in graph.sent} >= set(phones), 10, "a message to every contact"
        )
        assert await second.stop(signal.SIGTERM) == 0
        async with db.engine.connect() as conn:
            statuses = (await conn.execute(select(OutboundMessage.status))).scalars().all()

    assert collections.Counter(statuses) == {"sent": len(phones)}
    per_contact = collections.Counter(r.to for r in graph.sent)
    assert set(per_contact) == set(phones)
    assert max(per_contact.values()) <= 2
    # Nothing left "sending" by the kill was tried again before its lease ran out.
    retries = [r for r in graph.requests if r.wall > killed_at]
    assert retries
    for request in retries:
        message_id = message_id_from_callback(request.json["biz_opaque_callback_data"])
        assert message_id in leases
        assert request.wall >= leases[message_id].timestamp()
