"""Dispatch throughput: messages a second from due to sent, end to end.

Every case runs the real dispatcher in a child process of its own (claim → personalize →
POST → record, through ``GraphSender`` and ``GraphClient`` on one pooled aiohttp session,
as ``dripbot serve`` wires them) against the fake Graph API in another process, so the two
do not share an event loop. The contacts are enrolled first in a one-step template
sequence, all due at once; only the ticks that send them are timed. Afterwards every
message must be ``sent`` exactly once, counted in the database (distinct wamids) and at the
fake (distinct callback data); a case that loses or repeats one fails its check.

For scale, the same run measures the raw ceiling: ``GraphClient.send`` in a tight concurrent
loop against the same fake, with no database.

    python -m benchmarks dispatch
    python -m benchmarks dispatch --sweep     # also: concurrency needed at 100 ms latency
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Final

import aiohttp
from sqlalchemy import func, select

from benchmarks.common import (
    ROOT,
    BenchmarkError,
    Figure,
    Goal,
    database,
    format_number,
    postgres_available,
    progress,
    report,
    run_child,
)
from benchmarks.fake_graph_server import READY
from bot.app import SPARE_CONNECTIONS
from bot.sending import GraphSender
from bot.whatsapp.client import GraphClient
from bot.whatsapp.messages import template_message
from scheduler.clock import SystemClock
from scheduler.dispatcher import Dispatcher
from scheduler.enrollment import ContactInput, Enroller
from scheduler.options import EngineOptions
from scheduler.pacing import Pacer, SharedTokenBucket, Unlimited
from scheduler.ports import LogAlerts, callback_data
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import OutboundMessage
from tests.fakes.graph import TOKEN

NAME: Final = "dispatch"
PHONE_NUMBER_ID: Final = "1234567890"
SEQUENCE: Final = "Throughput"
#: one template step, due at enrollment, with two personalized parameters
STEP: Final = StepSpec(
    Timing(day=1),
    "template",
    template=TemplateRef("welcome", "en", ("{first_name|there}", "{company|your team}")),
)
ENROLL_BATCH: Final = 5000
#: issue 3: 3,000/s lifted on SQLite, 1,000/s at 100 ms latency, rates held within 5 %
GOAL_LIFTED: Final = 3000.0
GOAL_LATENCY: Final = 1000.0
RATE_TOLERANCE: Final = 0.05
LATENCY: Final = 0.1


@dataclass(frozen=True)
class Sizes:
    """Messages per case: lifted runs long enough to last seconds, fewer with latency."""

    lifted: int = 30_000
    latency: int = 10_000
    rated: int = 3_000
    raw: int = 20_000
    #: the configured rate of the rate-held case
    rate: float = 200.0


QUICK: Final = Sizes(lifted=3_000, latency=2_000, rated=600, raw=3_000, rate=200.0)


@dataclass(frozen=True)
class Case:
    label: str
    backend: str  # "sqlite", "postgres", or "none" for the raw client
    messages: int
    latency: float = 0.0
    batch_size: int = 500
    concurrency: int = 64
    #: DRIPBOT_RATE_PER_SECOND; None lifts the limit (the Unlimited pacer)
    rate: float | None = None
    goal: Goal | None = None
    #: pace with the bucket every replica shares (as ``dripbot serve`` does), not the
    #: in-process TokenBucket
    shared: bool = False

    @property
    def raw(self) -> bool:
        return self.backend == "none"


def cases(sizes: Sizes, *, postgres: bool = True, concurrency: int = 512) -> list[Case]:
    """The cases of one run, in the order of the table. ``concurrency`` is the in-flight
    limit at 100 ms latency, where each send waits and only concurrency brings rate."""
    lifted = Goal.at_least(GOAL_LIFTED)
    slow = Goal.at_least(GOAL_LATENCY)
    # a batch at least as large as the in-flight limit, or the limit is never reached
    waiting = Case("", "none", sizes.latency, LATENCY, max(500, concurrency), concurrency)
    chosen = [
        Case("raw client, no latency", "none", sizes.raw),
        Case("SQLite, no latency", "sqlite", sizes.lifted, goal=lifted),
        Case("PostgreSQL, no latency", "postgres", sizes.lifted),
        replace(waiting, label="raw client, 100 ms latency"),
        replace(waiting, label="SQLite, 100 ms latency", backend="sqlite", goal=slow),
        replace(waiting, label="PostgreSQL, 100 ms latency", backend="postgres", goal=slow),
        Case(
            f"SQLite, rate {format_number(sizes.rate)}/s, TokenBucket",
            "sqlite",
            sizes.rated,
            rate=sizes.rate,
            goal=Goal.within(sizes.rate, RATE_TOLERANCE),
        ),
        Case(
            f"SQLite, rate {format_number(sizes.rate)}/s, shared bucket (serve)",
            "sqlite",
            sizes.rated,
            rate=sizes.rate,
            goal=Goal.within(sizes.rate, RATE_TOLERANCE),
            shared=True,
        ),
    ]
    return [case for case in chosen if postgres or case.backend != "postgres"]


def sweep(sizes: Sizes, levels: Sequence[int] = (64, 128, 256, 512)) -> list[Case]:
    """SQLite at 100 ms latency with growing in-flight limits: where the goal is reached."""
    return [
        Case(
            f"SQLite, 100 ms latency, concurrency {level}",
            "sqlite",
            sizes.latency,
            LATENCY,
            batch_size=max(500, level),
            concurrency=level,
            goal=Goal.at_least(GOAL_LATENCY),
        )
        for level in levels
    ]


# --- the parent: one fake and one child per case -------------------------------------------


def run(chosen: Sequence[Case]) -> list[Figure]:
    figures: list[Figure] = []
    pg_ok: bool | None = None
    with tempfile.TemporaryDirectory(prefix="dripbot-bench-") as tmp:
        for number, case in enumerate(chosen):
            if case.backend == "postgres":
                pg_ok = postgres_available() if pg_ok is None else pg_ok
                if not pg_ok:
                    figures.append(Figure(NAME, case.label, 0, "msg/s", detail="unavailable"))
                    continue
            progress(f"dispatch: {case.label}, {case.messages:,} messages")
            figures.append(measure(case, Path(tmp), f"dispatch-{number}"))
    return figures


def measure(case: Case, directory: Path, name: str) -> Figure:
    with fake_graph(case.latency) as fake:
        if case.raw:
            child = run_child("benchmarks.dispatch", _raw_args(case, fake.base_url))
        else:
            with database(case.backend, directory, name) as url:
                child = run_child("benchmarks.dispatch", _send_args(case, fake.base_url, url))
        at_fake = fake.stats()
    return _figure(case, child.result, at_fake, child.peak_rss_mb)


def _send_args(case: Case, graph_url: str, url: str) -> list[str]:
    args = ["send", "--database", url, "--graph", graph_url, "--messages", str(case.messages)]
    args += ["--batch-size", str(case.batch_size), "--concurrency", str(case.concurrency)]
    if case.rate is not None:
        args += ["--rate", str(case.rate)]
    if case.shared:
        args.append("--shared")
    return args


def _raw_args(case: Case, graph_url: str) -> list[str]:
    args = ["raw", "--graph", graph_url, "--messages", str(case.messages)]
    return [*args, "--concurrency", str(case.concurrency)]


def _figure(case: Case, result: dict[str, Any], at_fake: dict[str, Any], rss_mb: float) -> Figure:
    count, seconds = case.messages, float(result["seconds"])
    problems = _problems(case, result, at_fake)
    latency = result["post_ms"]
    detail = (
        f"{count:,} in {seconds:.2f} s; concurrency {case.concurrency}"
        + ("" if case.raw else f", batch {case.batch_size}")
        + f"; CPU {result['cpu_seconds'] / count * 1e6:.0f} µs/msg"
        + f"; POST p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms; RSS {rss_mb:.0f} MB"
    )
    if not case.raw:
        detail += f"; enrolled in {result['setup_seconds']:.1f} s"
    value = count / seconds
    if case.rate is not None:
        steady = at_fake["steady_rate"] or 0.0
        detail = (
            f"steady rate at the fake (after the first second); overall {value:,.0f}/s, "
            f"busiest second {at_fake['peak_per_second']}; " + detail
        )
        value = steady
    if problems:
        detail = "; ".join(problems) + "; " + detail
    return Figure(NAME, case.label, value, "msg/s", case.goal, detail, checked=not problems)


def _problems(case: Case, result: dict[str, Any], at_fake: dict[str, Any]) -> list[str]:
    """Every message sent exactly once, as the database and the fake each see it."""
    count = case.messages
    problems = []
    if at_fake["sent"] != count or at_fake["distinct_callbacks"] != count:
        problems.append(
            f"the fake accepted {at_fake['sent']:,} sends for "
            f"{at_fake['distinct_callbacks']:,} messages, expected {count:,}"
        )
    if at_fake["repeated_callbacks"]:
        problems.append(f"{at_fake['repeated_callbacks']:,} messages sent twice")
    if not case.raw:
        statuses = result["statuses"]
        if statuses != {"sent": count} or result["distinct_wamids"] != count:
            problems.append(
                f"database: {statuses}, {result['distinct_wamids']:,} distinct wamids, "
                f"expected {count:,} sent"
            )
    return problems


class FakeGraphProcess:
    """The handle on a running ``benchmarks.fake_graph_server``."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url

    def stats(self) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        stdin.write("stats\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise BenchmarkError("the fake Graph API stopped before giving its figures")
        stats: dict[str, Any] = json.loads(line)
        return stats

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout


@contextmanager
def fake_graph(latency: float) -> Iterator[FakeGraphProcess]:
    """The fake Graph API in a process of its own, stopped on leaving."""
    command = [sys.executable, "-m", "benchmarks.fake_graph_server", "--latency", str(latency)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        if len(ready) != 2 or ready[0] != READY:
            raise BenchmarkError("the fake Graph API did not start")
        yield FakeGraphProcess(proc, ready[1])
    finally:
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# --- the children --------------------------------------------------------------------------


def engine_options(rate: float | None) -> EngineOptions:
    """The settings of a sender with no send window or reach tier in the way (both have
    their own tests): ``DRIPBOT_SEND_WINDOW=always``, ``DRIPBOT_DAILY_REACH_LIMIT=unlimited``."""
    return EngineOptions(
        default_region="DE",
        default_timezone="Europe/Berlin",
        send_window=None,
        daily_reach_limit=None,
        rate_per_second=rate if rate is not None else EngineOptions.rate_per_second,
    )


def contact(number: int) -> ContactInput:
    return ContactInput(
        phone=f"+49151{number:08d}",
        name=f"Lead {number}",
        company="Acme" if number % 2 else None,
        line=number + 2,
    )


async def enroll(db: Database, count: int, options: EngineOptions, clock: SystemClock) -> None:
    await create_sequence(db, SEQUENCE, [STEP], now=clock.now())
    async with Enroller(
        db, SEQUENCE, now=clock.now(), options=options, source="benchmark"
    ) as enroller:
        for start in range(0, count, ENROLL_BATCH):
            await enroller.add(contact(n) for n in range(start, min(count, start + ENROLL_BATCH)))
    if enroller.report.enrolled != count:
        raise BenchmarkError(f"enrolled {enroller.report.enrolled} of {count} contacts")


async def dispatch_all(
    url: str,
    graph_url: str,
    messages: int,
    *,
    batch_size: int,
    concurrency: int,
    rate: float | None,
    shared: bool = False,
) -> dict[str, Any]:
    """Enroll ``messages`` contacts, then tick the dispatcher until nothing is due."""
    clock = SystemClock()
    options = engine_options(rate)
    db = await Database.open(url, workspace="default", now=clock.now())
    try:
        started = time.perf_counter()
        await enroll(db, messages, options, clock)
        setup = time.perf_counter() - started
        posts: list[float] = []
        pacer: Pacer | None = None  # the dispatcher's own: a TokenBucket at the rate
        if rate is None:
            pacer = Unlimited()
        elif shared:  # what `dripbot serve` builds: one bucket for every replica
            key = f"send:{PHONE_NUMBER_ID}"
            pacer = SharedTokenBucket(db, key, rate, clock=clock)
        connector = aiohttp.TCPConnector(limit=concurrency + SPARE_CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = GraphClient(session, graph_url, TOKEN, PHONE_NUMBER_ID)
            dispatcher = Dispatcher(
                db,
                GraphSender(client),
                clock,
                options,
                LogAlerts(),
                pacer=pacer,
                batch_size=batch_size,
                concurrency=concurrency,
                on_send=lambda elapsed, _accepted: posts.append(elapsed),
            )
            started, cpu = time.perf_counter(), time.process_time()
            handled = ticks = 0
            while sent := await dispatcher.tick():
                handled += sent
                ticks += 1
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    OutboundMessage.status,
                    func.count(),
                    func.count(func.distinct(OutboundMessage.wamid)),
                ).group_by(OutboundMessage.status)
            )
            counts = {str(status): (int(total), int(wamids)) for status, total, wamids in rows}
    finally:
        await db.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "setup_seconds": setup,
        "handled": handled,
        "ticks": ticks,
        "statuses": {status: total for status, (total, _) in counts.items()},
        "distinct_wamids": counts.get("sent", (0, 0))[1],
        "post_ms": _percentiles(posts),
    }


async def raw_ceiling(graph_url: str, messages: int, *, concurrency: int) -> dict[str, Any]:
    """``GraphClient.send`` as fast as it goes: the same payloads, no database."""
    payloads = iter(
        [
            template_message(
                f"+49151{number:08d}",
                "welcome",
                "en",
                (f"Lead {number}", "Acme"),
                callback_data=callback_data(number + 1),
            )
            for number in range(messages)
        ]
    )
    posts: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency + SPARE_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = GraphClient(session, graph_url, TOKEN, PHONE_NUMBER_ID)

        async def worker() -> None:
            for payload in payloads:  # one shared iterator: each payload is sent once
                began = time.perf_counter()
                await client.send(payload)
                posts.append(time.perf_counter() - began)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "post_ms": _percentiles(posts)}


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if len(seconds) < 2:
        return {"p50": 0.0, "p99": 0.0}
    cuts = statistics.quantiles(seconds, n=100)
    return {"p50": cuts[49] * 1000, "p99": cuts[98] * 1000}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One dispatch measurement (a child process).")
    modes = parser.add_subparsers(dest="mode", required=True)
    send = modes.add_parser("send", help="enroll, then dispatch through the real dispatcher")
    send.add_argument("--database", required=True, help="a database URL; migrated on open")
    send.add_argument("--batch-size", type=int, default=500)
    send.add_argument("--rate", type=float, default=None, help="messages/s; default: lifted")
    send.add_argument("--shared", action="store_true", help="pace with the shared bucket")
    raw = modes.add_parser("raw", help="GraphClient.send in a tight loop, no database")
    for mode in (send, raw):
        mode.add_argument("--graph", required=True, help="the fake Graph API base URL")
        mode.add_argument("--messages", type=int, required=True)
        mode.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    if args.mode == "raw":
        result = asyncio.run(raw_ceiling(args.graph, args.messages, concurrency=args.concurrency))
    else:
        result = asyncio.run(
            dispatch_all(
                args.database,
                args.graph,
                args.messages,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                rate=args.rate,
                shared=args.shared,
            )
        )
    report(result)


if __name__ == "__main__":
    main()
