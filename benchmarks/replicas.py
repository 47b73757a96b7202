"""Replicas on PostgreSQL: one and three dispatcher processes sharing one database.

The contacts are enrolled first (all due at once). Then 1 or 3 child processes each run
the real dispatcher, wired as in ``dispatch.py`` (``GraphSender`` on a pooled session, the
pacer lifted), each with its own in-flight limit, against the fake Graph API in a process
of its own. The children start together at an agreed instant and tick until nothing is
due; the rate is all messages over the span from that instant to the last child's end.
Every message must reach the fake exactly once (distinct callback data) and be recorded
``sent`` once in the database.

    python -m benchmarks replicas
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp
from sqlalchemy import func, select

from benchmarks.common import (
    RESULT_MARKER,
    ROOT,
    BenchmarkError,
    Figure,
    Goal,
    database,
    postgres_available,
    progress,
    report,
)
from benchmarks.dispatch import PHONE_NUMBER_ID, engine_options, enroll, fake_graph
from bot.app import SPARE_CONNECTIONS
from bot.sending import GraphSender
from bot.whatsapp.client import GraphClient
from scheduler.clock import SystemClock
from scheduler.dispatcher import Dispatcher
from scheduler.pacing import Unlimited
from scheduler.ports import LogAlerts
from storage.database import Database
from storage.models import OutboundMessage
from tests.fakes.graph import TOKEN

NAME: Final = "replicas"
#: issue 7: three replicas at ≥ 2.5× one at 100 ms; never below one without latency
SCALE_AT_LATENCY: Final = 2.5
LATENCY: Final = 0.1
#: seconds the children get to start before they begin together
START_DELAY: Final = 3.0


def run(
    *,
    messages: int = 6000,
    concurrency: int = 64,
    batch: int = 64,
    counts: Sequence[int] = (1, 3),
    latencies: Sequence[float] = (LATENCY, 0.0),
) -> list[Figure]:
    if not postgres_available():
        return [Figure(NAME, "PostgreSQL", 0, "msg/s", detail="unavailable")]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="dripbot-bench-") as tmp:
        for latency in latencies:
            single: float | None = None
            for replicas in counts:
                label = f"{replicas} × dispatcher, {'100 ms' if latency else 'no'} latency"
                progress(f"replicas: {label}, {messages:,} messages")
                with database("postgres", Path(tmp), NAME) as url:
                    asyncio.run(_enroll(url, messages))
                    with fake_graph(latency) as fake:
                        results = _run_replicas(url, fake.base_url, replicas, concurrency, batch)
                        at_fake = fake.stats()
                    statuses = asyncio.run(_statuses(url))
                figure = _figure(
                    label,
                    messages,
                    replicas,
                    concurrency,
                    batch,
                    latency,
                    results,
                    at_fake,
                    statuses,
                    single,
                )
                single = figure.value if replicas == 1 else single
                figures.append(figure)
    return figures


def _figure(
    label: str,
    messages: int,
    replicas: int,
    concurrency: int,
    batch: int,
    latency: float,
    results: list[dict[str, Any]],
    at_fake: dict[str, Any],
    statuses: dict[str, Any],
    single: float | None,
) -> Figure:
    span = max(r["ended"] for r in results) - min(r["started"] for r in results)
    rate = messages / span
    problems = []
    if at_fake["sent"] != messages or at_fake["distinct_callbacks"] != messages:
        problems.append(
            f"the fake accepted {at_fake['sent']:,} sends for "
            f"{at_fake['distinct_callbacks']:,} messages, expected {messages:,}"
        )
    if statuses["statuses"] != {"sent": messages} or statuses["wamids"] != messages:
        problems.append(f"database: {statuses}")
    goal = None
    if replicas > 1 and single:
        goal = Goal.at_least(single * (SCALE_AT_LATENCY if latency else 1.0))
    shares = "/".join(f"{r['handled']:,}" for r in results)
    cpu = sum(r["cpu_seconds"] for r in results) / messages * 1e6
    detail = "; ".join(
        [
            *problems,
            f"{messages:,} in {span:.2f} s; per replica concurrency {concurrency}, batch {batch}",
            f"sent per replica {shares}; duplicates {at_fake['repeated_callbacks']}",
            f"CPU {cpu:.0f} µs/msg (all replicas)",
        ]
    )
    return Figure(NAME, label, rate, "msg/s", goal, detail, checked=not problems)


async def _enroll(url: str, messages: int) -> None:
    clock = SystemClock()
    db = await Database.open(url, workspace="default", now=clock.now())
    try:
        await enroll(db, messages, engine_options(None), clock)
        async with db.engine.begin() as conn:  # what autovacuum would do shortly after
            await conn.exec_driver_sql("ANALYZE")
    finally:
        await db.close()


async def _statuses(url: str) -> dict[str, Any]:
    db = await Database.open(url, workspace="default", now=SystemClock().now())
    try:
        async with db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        OutboundMessage.status,
                        func.count(),
                        func.count(func.distinct(OutboundMessage.wamid)),
                    ).group_by(OutboundMessage.status)
                )
            ).all()
    finally:
        await db.close()
    return {
        "statuses": {str(status): int(total) for status, total, _ in rows},
        "wamids": sum(int(wamids) for status, _, wamids in rows if status == "sent"),
    }


def _run_replicas(
    url: str, graph: str, replicas: int, concurrency: int, batch: int
) -> list[dict[str, Any]]:
    start_at = time.time() + START_DELAY
    command = [sys.executable, "-m", "benchmarks.replicas", "--database", url, "--graph", graph]
    command += ["--concurrency", str(concurrency), "--batch-size", str(batch)]
    command += ["--start-at", str(start_at)]
    procs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(replicas)
    ]
    results = []
    for proc in procs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise BenchmarkError(f"a replica exited with {proc.returncode}")
        lines = [line for line in output.splitlines() if line.startswith(RESULT_MARKER)]
        if not lines:
            raise BenchmarkError("a replica reported no result")
        results.append(json.loads(lines[-1].removeprefix(RESULT_MARKER)))
    return results


async def replica(
    url: str, graph: str, *, concurrency: int, batch: int, start_at: float
) -> dict[str, Any]:
    """One dispatcher process: tick from the agreed instant until nothing is due."""
    clock = SystemClock()
    db = await Database.open(url, workspace="default", now=clock.now())
    try:
        connector = aiohttp.TCPConnector(limit=concurrency + SPARE_CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = GraphClient(session, graph, TOKEN, PHONE_NUMBER_ID)
            dispatcher = Dispatcher(
                db,
                GraphSender(client),
                clock,
                engine_options(None),
                LogAlerts(),
                pacer=Unlimited(),
                batch_size=batch,
                concurrency=concurrency,
            )
            await asyncio.sleep(max(0.0, start_at - time.time()))
            started, cpu = time.time(), time.process_time()
            handled = 0
            while sent := await dispatcher.tick():
                handled += sent
            ended, cpu = time.time(), time.process_time() - cpu
    finally:
        await db.close()
    return {"started": started, "ended": ended, "handled": handled, "cpu_seconds": cpu}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One dispatcher replica (a child process).")
    parser.add_argument("--database", required=True)
    parser.add_argument("--graph", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--start-at", type=float, required=True, help="epoch seconds")
    args = parser.parse_args(argv)
    report(
        asyncio.run(
            replica(
                args.database,
                args.graph,
                concurrency=args.concurrency,
                batch=args.batch_size,
                start_at=args.start_at,
            )
        )
    )


if __name__ == "__main__":
    main()
