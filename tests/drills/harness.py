"""What the fault drills share: ``dripbot serve`` processes, PostgreSQL databases and private
clusters, the contacts a drill enrolls, and the tally of what reached the fake Graph API.

Every drill talks to 127.0.0.1 only, and every wait here is bounded in time: a drill that
cannot finish fails with what it was waiting for and the tail of the service's log, instead
of hanging.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select, text

from bot.whatsapp.signature import sign
from handlers.optout import OPT_OUT_CONFIRMATION
from scheduler.clock import SystemClock
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, OutboundMessage
from tests.fakes.graph import TOKEN, FakeGraph, RecordedRequest

APP_SECRET = "drill-app-secret"
VERIFY_TOKEN = "drill-verify-token"
PHONE_NUMBER_ID = "1234567890"
TEMPLATE = "welcome"
SEQUENCE = "Welcome"
#: one template step, due at enrollment: one message per contact
STEP = StepSpec(Timing(day=1), "template", template=TemplateRef(TEMPLATE, "en", ("{name}",)))
#: enrollment as the drills do it: due when enrolled, whatever the hour, no reach limit
ENROLL_OPTIONS = EngineOptions(send_window=None, daily_reach_limit=None)
#: the shared PostgreSQL server the other tests use (drills only create databases on it)
PG_ADMIN_DSN = os.environ.get("DRIPBOT_TEST_PG_DSN", "postgresql://127.0.0.1:5432/test")
#: message states that are still on their way out
UNFINISHED = ("scheduled", "sending")
#: message states meaning Meta took the message
ACCEPTED = ("sent", "delivered", "read")
_LOG_TAIL = 4000


# --- small helpers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def phone_of(i: int) -> str:
    """The i-th drill contact's number (German mobile range, valid for libphonenumber)."""
    return f"+49151{i:08d}"


async def wait_until(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    seconds: float,
    what: str,
    *,
    every: float = 0.05,
    details: Callable[[], str] | None = None,
) -> float:
    """Poll ``condition`` until true; fails after ``seconds``. Returns the seconds taken."""
    started = time.monotonic()
    deadline = started + seconds
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"{what}: not within {seconds} s{extra}")
        await asyncio.sleep(every)


def dripbot_command() -> list[str]:
    """The installed console script (what users run), else the module."""
    script = Path(sys.executable).with_name("dripbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def base_env() -> dict[str, str]:
    """This process's environment without any DRIPBOT_* setting of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPBOT_")}
    return env | {"PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1,localhost"}


def serve_env(database_url: str, graph: FakeGraph, port: int, **overrides: str) -> dict[str, str]:
    """Settings for a drill's ``dripbot serve``; ``overrides`` use the variable names."""
    env = base_env() | {
        "DRIPBOT_DATABASE_URL": database_url,
        "DRIPBOT_HOST": "127.0.0.1",
        "DRIPBOT_PORT": str(port),
        "DRIPBOT_WHATSAPP_TOKEN": TOKEN,
        "DRIPBOT_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "DRIPBOT_WHATSAPP_APP_SECRET": APP_SECRET,
        "DRIPBOT_WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        "DRIPBOT_WHATSAPP_API_URL": graph.base_url,
        "DRIPBOT_SEND_WINDOW": "always",
        "DRIPBOT_DAILY_REACH_LIMIT": "unlimited",
        "DRIPBOT_TICK_SECONDS": "0.2",
        "DRIPBOT_SEND_LEASE_SECONDS": "8",
        "DRIPBOT_RATE_PER_SECOND": "100",
    }
    return env | overrides


# --- dripbot serve as a process ---------------------------------------------------------


class ServeProcess:
    """``dripbot serve`` on a fixed port, started again after each kill (logs per run)."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str) -> None:
        self.workdir = workdir
        self.env = env
        self.name = name
        self.url = f"http://127.0.0.1:{env['DRIPBOT_PORT']}"
        self.webhook_url = f"{self.url}/webhook/whatsapp"
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.runs}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        assert not self.running, "already running"
        self.runs += 1
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *dripbot_command(),
                "serve",
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def health(self) -> tuple[int, dict[str, Any]] | None:
        """``/healthz`` status and body; None while nothing answers."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8)) as http,
                http.get(self.url + "/healthz") as response,
            ):
                return response.status, await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def wait_healthy(self, seconds: float = 20.0) -> float:
        async def healthy() -> bool:
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"dripbot serve exited early:\n{self.log_tail()}")
            answer = await self.health()
            return answer is not None and answer[0] == 200

        return await wait_until(healthy, seconds, "/healthz 200", details=self.log_tail)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is cut off."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)

    async def terminate(self, seconds: float = 20.0) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), seconds)

    async def ensure_stopped(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            await self.process.wait()

    def logs(self) -> str:
        parts = []
        for run in range(1, self.runs + 1):
            path = self.workdir / f"{self.name}-{run}.log"
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def log_tail(self) -> str:
        return self.logs()[-_LOG_TAIL:]

    def tracebacks(self) -> list[str]:
        """Every traceback the runs logged (each cut short: they are for a failure message)."""
        found = []
        for block in self.logs().split("Traceback (most recent call last):")[1:]:
            found.append("Traceback (most recent call last):" + block[:3000])
        return found


async def wait_sends(graph: FakeGraph, serve: ServeProcess, n: int, seconds: float) -> None:
    """Wait until the fake accepted ``n`` sends; on failure, show what the service logged."""
    try:
        await graph.wait_for_sends(n, timeout=seconds)
    except TimeoutError as err:
        raise AssertionError(f"{err}\n{serve.log_tail()}") from None


async def run_admin(workdir: Path, env: Mapping[str, str], command: str) -> tuple[int, str]:
    """``dripbot admin "<command>"`` as an admin would run it; exit status and output."""
    process = await asyncio.create_subprocess_exec(
        *dripbot_command(),
        "admin",
        command,
        cwd=workdir,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


# --- databases --------------------------------------------------------------------------


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database on the shared server, dropped afterwards; yields its URL."""
    name = f"dripbot_drill_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    host = PG_ADMIN_DSN.split("//", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{host}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, newest version first; None if absent."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivateCluster:
    """A PostgreSQL cluster of the drill's own, in a temporary directory, on a free port.

    A drill may stop and start it at will; the machine's shared server is never touched.
    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user.
    ``track_commit_timestamp`` is on, so a drill can read when a row's change committed.
    """

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dripbot-drill-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/dripbot"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group=None)
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        self.running = False

    async def _run(self, *args: str, seconds: float = 60.0) -> str:
        process = await asyncio.create_subprocess_exec(
            *self._as_owner,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.root,
        )
        out, _ = await asyncio.wait_for(process.communicate(), seconds)
        text_out = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({process.returncode}):\n{text_out}")
        return text_out

    async def create(self) -> None:
        await self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        await self.start()
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            await conn.execute('CREATE DATABASE "dripbot"')
        finally:
            await conn.close()

    async def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c track_commit_timestamp=on",
                "-c max_connections=100",
            ]
        )
        await self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )
        self.running = True

    async def stop(self, mode: str = "fast") -> None:
        await self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"
        )
        self.running = False

    async def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                await self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def server_log(self) -> str:
        return (
            self.logfile.read_text(errors="replace")[-_LOG_TAIL:] if self.logfile.exists() else ""
        )


@asynccontextmanager
async def private_cluster() -> AsyncIterator[PrivateCluster]:
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    cluster = PrivateCluster()
    try:
        await cluster.create()
        yield cluster
    finally:
        await cluster.destroy()


@asynccontextmanager
async def database(url: str) -> AsyncIterator[Database]:
    """The drill's own handle on the database (migrations applied on first open)."""
    db = await Database.open(url, workspace="default", now=SystemClock().now())
    try:
        yield db
    finally:
        await db.close()


# --- contacts and what they should get --------------------------------------------------


async def enroll_stream(
    db: Database, n: int, *, first_due: datetime, every: timedelta, group: int
) -> list[str]:
    """Enroll ``n`` contacts in the welcome sequence, ``group`` at a time, each group due
    ``every`` after the one before (enrolled "at" its due time): a steady stream of work
    rather than one burst, so a fault always lands in the middle of some dispatch."""
    await create_sequence(db, SEQUENCE, [STEP], now=SystemClock().now())
    phones = [phone_of(i) for i in range(n)]
    for start in range(0, n, group):
        due = first_due + every * (start // group)
        contacts = [
            ContactInput(p, name=f"Lead {start + k}")
            for k, p in enumerate(phones[start : start + group])
        ]
        report = await enroll(db, SEQUENCE, contacts, now=due, options=ENROLL_OPTIONS)
        assert report.enrolled == len(contacts), report
    return phones


async def outbox_counts(db: Database) -> collections.Counter[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(OutboundMessage.status))
        return collections.Counter(str(status) for (status,) in rows)


async def wait_outbox_settled(
    db: Database, seconds: float, details: Callable[[], str] | None = None
) -> float:
    """Wait until nothing is scheduled or sending any more."""

    async def settled() -> bool:
        counts = await outbox_counts(db)
        return not any(counts[s] for s in UNFINISHED)

    return await wait_until(settled, seconds, "every message settled", every=0.2, details=details)


async def wait_outbox_states(db: Database, states: set[str], seconds: float) -> float:
    """Wait until every message is in one of ``states`` (e.g. all delivered)."""

    async def reached() -> bool:
        return set(await outbox_counts(db)) <= states

    return await wait_until(reached, seconds, f"every message in {sorted(states)}", every=0.2)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    phone: str | None
    purpose: str
    status: str
    wamid: str | None
    attempts: int


async def outbox_rows(db: Database) -> list[OutboxRow]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(
                OutboundMessage.id,
                Contact.phone,
                OutboundMessage.purpose,
                OutboundMessage.status,
                OutboundMessage.wamid,
                OutboundMessage.attempts,
            ).join(Contact, Contact.id == OutboundMessage.contact_id)
        )
        return [OutboxRow(*row) for row in rows]


@dataclass(frozen=True)
class OptOut:
    phone: str
    #: contacts.opted_out_at: the instant the handler took as "now", before its commit
    recorded: float
    #: when the opt-out's transaction committed (PostgreSQL commit timestamp)
    committed: float


async def opt_outs_with_commit_times(db: Database) -> dict[str, OptOut]:
    """Opted-out contacts with the commit time of the transaction that opted them out.

    Nothing writes a contact row after its opt-out in these drills, so the row's ``xmin`` is
    the opt-out's transaction; the cluster tracks commit timestamps.
    """
    query = text(
        "SELECT phone, opted_out_at, pg_xact_commit_timestamp(xmin) AS committed "
        "FROM contacts WHERE opted_out_at IS NOT NULL"
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {
        str(row.phone): OptOut(
            str(row.phone), row.opted_out_at.timestamp(), row.committed.timestamp()
        )
        for row in rows
    }


# --- webhooks ---------------------------------------------------------------------------


def stop_payload(phone: str, wamid: str, at: int) -> dict[str, Any]:
    """A user's "STOP" text as Meta delivers it (the shape of tests/data/webhooks/text.json)."""
    digits = phone.lstrip("+")
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102030405060708",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550100001",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "contacts": [{"profile": {"name": "Lead"}, "wa_id": digits}],
                            "messages": [
                                {
                                    "from": digits,
                                    "id": wamid,
                                    "timestamp": str(at),
                                    "type": "text",
                                    "text": {"body": "STOP"},
                                }
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


async def post_signed(
    http: aiohttp.ClientSession, url: str, payload: Mapping[str, Any], *, attempts: int = 20
) -> int:
    """POST a webhook body signed with the app secret, retried like Meta until 200."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, APP_SECRET)}
    status = 0
    for attempt in range(attempts):
        try:
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
                if status == 200:
                    return status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    return status


# --- the tally --------------------------------------------------------------------------


def is_drip(request: RecordedRequest) -> bool:
    body = request.json
    return (
        isinstance(body, dict)
        and body.get("type") == "template"
        and body.get("template", {}).get("name") == TEMPLATE
    )


def is_confirmation(request: RecordedRequest) -> bool:
    body = request.json
    return (
        isinstance(body, dict)
        and body.get("type") == "text"
        and body.get("text", {}).get("body") == OPT_OUT_CONFIRMATION
    )


@dataclass
class Figures:
    """What a drill states: each figure must be 0 except ``messages``."""

    name: str
    messages: int
    lost: int = 0
    duplicates: int = 0
    after_opt_out: int = 0
    lost_phones: list[str] = field(default_factory=list)
    duplicate_phones: list[str] = field(default_factory=list)
    late_phones: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        head = (
            f"drill {self.name}: messages {self.messages}, lost {self.lost}, "
            f"duplicates {self.duplicates}, after opt-out {self.after_opt_out}"
        )
        return head + "".join(f"; {note}" for note in self.notes if note)

    def assert_clean(self) -> None:
        assert (self.lost, self.duplicates, self.after_opt_out) == (0, 0, 0), (
            f"{self.line()}\nlost: {self.lost_phones[:10]}\nduplicates: "
            f"{self.duplicate_phones[:10]}\nafter opt-out: {self.late_phones[:10]}"
        )


def tally(
    name: str,
    sends: Iterable[RecordedRequest],
    expected: Iterable[str],
    *,
    opted_out: Iterable[str] = (),
) -> Figures:
    """Lost: an expected contact with no accepted drip message at the fake. Duplicates:
    a contact with more than one. ``opted_out`` contacts may have none (a STOP may come
    before their message); the after-opt-out figure is counted by the caller."""
    per_phone = collections.Counter(str(r.to) for r in sends if is_drip(r))
    expected = list(expected)
    excused = set(opted_out)
    lost = [p for p in expected if per_phone[p] == 0 and p not in excused]
    dups = sorted(p for p, count in per_phone.items() if count > 1)
    return Figures(
        name,
        messages=len(expected),
        lost=len(lost),
        duplicates=len(dups),
        lost_phones=lost,
        duplicate_phones=dups,
    )


def chaos_kinds(requests: Iterable[RecordedRequest]) -> collections.Counter[str]:
    """What the fake answered: accepted, 429, 5xx with a Graph body, bare 502, hung."""
    kinds: collections.Counter[str] = collections.Counter()
    for r in requests:
        if r.wamid is not None:
            kinds["accepted, answer lost" if r.status == 0 else "accepted"] += 1
        elif r.status == 0:
            kinds["hung"] += 1
        else:
            kinds[str(r.status)] += 1
    return kinds
