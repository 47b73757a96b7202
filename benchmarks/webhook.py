"""Webhook absorption: signed status webhooks a second, stored and processed, on SQLite.

The real ``dripbot serve`` runs as a child process (``python -m bot.cli serve``) on a
SQLite file that already holds N sent messages. A load generator in another process POSTs
real-shaped, signed status webhooks (``delivered`` then ``read`` for each message, found by
its callback data and wamid, as Meta sends them) through one pooled aiohttp session, for a
fixed time, with 1 status per POST and with 100. A status counts as absorbed once its POST
was answered 200 **and** the inbox has processed its body (``webhook_events.processed_at``
set): the rate is the statuses over the time from the first POST to the drained inbox.
The POST latencies are the load generator's, request to answer.

For scale, the same load generator posts the same bodies to a bare aiohttp handler that
reads the body and answers 200: the loopback ceiling of this machine for one POST.

    python -m benchmarks webhook
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from sqlalchemy import literal_column, update

from benchmarks.common import ROOT, BenchmarkError, Figure, Goal, progress, report, run_child
from benchmarks.dispatch import engine_options, enroll
from bot.whatsapp.signature import sign
from scheduler.clock import SystemClock
from scheduler.options import EngineOptions
from scheduler.ports import callback_data
from storage.database import Database
from storage.models import OutboundMessage

NAME: Final = "webhook"
SECRET: Final = "benchmark-app-secret"
PATH: Final = "/webhook/whatsapp"
#: issue 4: at least 3,000 statuses/s with p99 under 100 ms
GOAL_RATE: Final = 3000.0
GOAL_P99_MS: Final = 100.0
READY: Final = "READY"


def run(*, seconds: float = 6.0, messages: int = 20_000, concurrency: int = 32) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="dripbot-bench-") as tmp:
        path = Path(tmp) / "webhook.db"
        progress(f"webhook: {messages:,} sent messages to report on")
        asyncio.run(prepare(f"sqlite+aiosqlite:///{path}", messages))
        for per_post in (1, 100):
            # Meta delivers from many connections, but a big body each takes a while
            in_flight = concurrency if per_post == 1 else max(1, concurrency // 4)
            with bare_server() as port:
                progress(f"webhook: bare handler, {per_post} per POST")
                raw = _load(port, None, per_post, seconds, messages, in_flight)
            figures.append(_raw_figure(raw, per_post, in_flight))
            with served(path) as port:
                progress(f"webhook: dripbot serve, {per_post} per POST")
                result = _load(port, path, per_post, seconds, messages, in_flight)
            figures += _figures(result, per_post, in_flight)
            with served(path) as port:
                progress(f"webhook: dripbot serve, {per_post} per POST at {GOAL_RATE:,}/s")
                paced = _load(port, path, per_post, seconds, messages, in_flight, GOAL_RATE)
            figures += _figures(paced, per_post, in_flight, offered=GOAL_RATE)
    return figures


def _load(
    port: int,
    path: Path | None,
    per_post: int,
    seconds: float,
    messages: int,
    concurrency: int,
    rate: float | None = None,
) -> dict[str, Any]:
    args = ["load", "--port", str(port), "--per-post", str(per_post), "--seconds", str(seconds)]
    args += ["--messages", str(messages), "--concurrency", str(concurrency)]
    if rate is not None:
        args += ["--rate", str(rate)]
    if path is not None:
        args += ["--database", str(path)]
    return run_child("benchmarks.webhook", args).result


def _raw_figure(result: dict[str, Any], per_post: int, concurrency: int) -> Figure:
    detail = (
        f"bare aiohttp handler; {result['posts']:,} POSTs in {result['sent_seconds']:.1f} s, "
        f"concurrency {concurrency}; POST p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms"
    )
    rate = result["statuses"] / result["sent_seconds"]
    return Figure(NAME, f"raw loopback, {per_post} per POST", rate, "statuses/s", None, detail)


def _figures(
    result: dict[str, Any], per_post: int, concurrency: int, offered: float | None = None
) -> list[Figure]:
    problems = []
    if result["failed"]:
        problems.append(f"{result['failed']:,} POSTs not answered 200")
    if result["processed"] < result["posts"]:
        problems.append(f"only {result['processed']:,} of {result['posts']:,} bodies processed")
    detail = "; ".join(
        [
            *problems,
            f"{result['statuses']:,} statuses in {result['posts']:,} POSTs, sent over "
            f"{result['sent_seconds']:.1f} s, inbox drained {result['drain_lag']:.2f} s later",
            f"concurrency {concurrency}; server CPU {result['server_cpu_pct']:.0f} %",
            f"{result['moved']:,} messages moved to delivered/read",
        ]
    )
    case = f"SQLite, {per_post} status{'es' if per_post > 1 else ''} per POST"
    if offered is not None:
        case += f", offered {offered:,.0f}/s"
    ok = not problems
    # Offered a fixed rate, the inbox can absorb no more than that: there the rate only shows
    # that it kept up (every POST answered and processed), and the goal is the latency's.
    rate_goal = Goal.at_least(GOAL_RATE) if offered is None else None
    return [
        Figure(NAME, case, result["rate"], "statuses/s", rate_goal, detail, ok),
        Figure(
            NAME,
            f"{case}, POST p99",
            result["p99"],
            "ms",
            Goal.at_most(GOAL_P99_MS),
            f"p50 {result['p50']:.1f} ms",
            ok,
        ),
    ]


# --- the fixture and the servers ----------------------------------------------------------


async def prepare(url: str, messages: int) -> None:
    """N messages already sent, each with its wamid: what status webhooks report on."""
    clock = SystemClock()
    options: EngineOptions = engine_options(None)
    db = await Database.open(url, workspace="default", now=clock.now())
    try:
        await enroll(db, messages, options, clock)
        async with db.engine.begin() as conn:
            await conn.execute(
                update(OutboundMessage).values(
                    status="sent",
                    wamid=literal_column("'wamid.bench.' || id"),
                    sent_at=clock.now(),
                    attempts=1,
                )
            )
    finally:
        await db.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def served(path: Path) -> Iterator[int]:
    """``dripbot serve`` on the database at ``path``, with the webhook configured."""
    port = free_port()
    env = os.environ | {
        "DRIPBOT_DATABASE_URL": f"sqlite+aiosqlite:///{path}",
        "DRIPBOT_WHATSAPP_APP_SECRET": SECRET,
        "DRIPBOT_WHATSAPP_TOKEN": "benchmark-token",
        "DRIPBOT_WHATSAPP_PHONE_NUMBER_ID": "1234567890",
        # nothing is due, so nothing is ever sent; a closed port all the same
        "DRIPBOT_WHATSAPP_API_URL": "http://127.0.0.1:9/v25.0",
        "DRIPBOT_SEND_WINDOW": "always",
        "DRIPBOT_LOG_LEVEL": "WARNING",
        "DRIPBOT_PORT": str(port),
    }
    with child_process([sys.executable, "-m", "bot.cli", "serve"], env) as proc:
        wait_until_up(port, proc)
        yield port


@contextmanager
def bare_server() -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.webhook", "bare", "--port", str(port)]
    with child_process(command, dict(os.environ)) as proc:
        wait_until_up(port, proc)
        yield port


@contextmanager
def child_process(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(f"the server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchmarkError("the server did not start listening")


async def _bare(port: int) -> None:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application(client_max_size=3 * 1024 * 1024)
    app.router.add_post(PATH, receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


# --- the load generator -------------------------------------------------------------------


def status(message_id: int, state: str, stamp: int) -> dict[str, Any]:
    """One status as Meta sends it (``tests/data/webhooks/status_delivered.json``)."""
    return {
        "id": f"wamid.bench.{message_id}",
        "status": state,
        "timestamp": str(stamp),
        "recipient_id": f"49151{message_id - 1:08d}",
        "biz_opaque_callback_data": callback_data(message_id),
        "pricing": {
            "billable": True,
            "pricing_model": "PMP",
            "category": "marketing",
            "type": "regular",
        },
    }


def body(statuses: list[dict[str, Any]]) -> bytes:
    envelope = {
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
                                "phone_number_id": "1234567890",
                            },
                            "statuses": statuses,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    return json.dumps(envelope).encode()


def _statuses(messages: int) -> Iterator[dict[str, Any]]:
    """``delivered`` for every message, then ``read``; then again (changing nothing)."""
    stamp = int(time.time())
    while True:
        for state in ("delivered", "read"):
            for message_id in range(1, messages + 1):
                yield status(message_id, state, stamp)


async def load(
    port: int,
    per_post: int,
    seconds: float,
    messages: int,
    concurrency: int,
    database: Path | None,
    rate: float | None = None,
) -> dict[str, Any]:
    # The generator's own full garbage collections (tens of milliseconds with thousands of
    # requests in flight) would delay whole bursts of POSTs and show up as the server's
    # latency in the open-loop figures: it runs for seconds, so it simply does not collect.
    gc.collect()
    gc.freeze()
    gc.disable()
    url = f"http://127.0.0.1:{port}{PATH}"
    source = _statuses(messages)
    latencies: list[float] = []
    failed = 0
    server_cpu = _server_cpu(port)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def post(data: bytes, due: float) -> None:
            # open loop: latency counts from when the POST was due, so a slow server shows
            # as latency instead of silently lowering the offered load
            nonlocal failed
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(data, SECRET),
            }
            async with session.post(url, data=data, headers=headers) as answer:
                await answer.read()
                latencies.append(time.perf_counter() - due)
                failed += answer.status != 200

        async def paced() -> None:
            assert rate is not None
            gap = per_post / rate
            tasks = []
            due = started
            while due < deadline:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                data = body([next(source) for _ in range(per_post)])
                tasks.append(asyncio.create_task(post(data, due)))
                due += gap
            await asyncio.gather(*tasks)

        async def worker() -> None:
            nonlocal failed
            while time.perf_counter() < deadline:
                data = body([next(source) for _ in range(per_post)])
                headers = {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": sign(data, SECRET),
                }
                began = time.perf_counter()
                async with session.post(url, data=data, headers=headers) as answer:
                    await answer.read()
                    latencies.append(time.perf_counter() - began)
                    failed += answer.status != 200

        if rate is not None:
            await paced()
        else:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        sent = time.perf_counter() - started
    posts = len(latencies)
    result: dict[str, Any] = {
        "posts": posts,
        "failed": failed,
        "statuses": posts * per_post,
        "sent_seconds": sent,
    }
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    result |= {"p50": cuts[49] * 1000, "p99": cuts[98] * 1000}
    if database is not None:
        processed = await _drained(database, posts, within=120.0)
        total = time.perf_counter() - started
        result |= {
            "processed": processed,
            "drain_lag": total - sent,
            "rate": result["statuses"] / total,
            "moved": _moved(database),
            "server_cpu_pct": _server_cpu(port) - server_cpu,
        }
        result["server_cpu_pct"] = result["server_cpu_pct"] / total * 100
    return result


async def _drained(database: Path, posts: int, *, within: float) -> int:
    """Wait until the inbox processed every body the load generator had answered."""
    deadline = time.perf_counter() + within
    processed = 0
    while time.perf_counter() < deadline:
        with sqlite3.connect(database, timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL"
            ).fetchone()
        processed = int(row[0])
        if processed >= posts:
            break
        await asyncio.sleep(0.02)
    return processed


def _moved(database: Path) -> int:
    with sqlite3.connect(database, timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbound_messages WHERE status IN ('delivered', 'read')"
        ).fetchone()
    return int(row[0])


def _server_cpu(port: int) -> float:
    """CPU seconds so far of the process listening on ``port`` (0 when it cannot be told)."""
    inode = _listening_inode(port)
    if inode is None:
        return 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in fds):
                return cpu_seconds(int(pid))
        except OSError:
            continue
    return 0.0


def _listening_inode(port: int) -> str | None:
    try:
        with open("/proc/net/tcp", encoding="ascii") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                    return fields[9]
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # after the command: state is field 3, utime 14 and stime 15 (1-based, see proc(5))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Webhook load generator and bare server.")
    modes = parser.add_subparsers(dest="mode", required=True)
    bare = modes.add_parser("bare", help="a bare aiohttp handler answering 200")
    bare.add_argument("--port", type=int, required=True)
    generator = modes.add_parser("load", help="POST signed status webhooks for a while")
    generator.add_argument("--port", type=int, required=True)
    generator.add_argument("--per-post", type=int, default=1)
    generator.add_argument("--seconds", type=float, default=6.0)
    generator.add_argument("--messages", type=int, required=True)
    generator.add_argument("--concurrency", type=int, default=32)
    generator.add_argument("--database", type=Path, help="the served SQLite file, to drain")
    generator.add_argument("--rate", type=float, help="offer this many statuses/s (open loop)")
    args = parser.parse_args(argv)
    if args.mode == "bare":
        asyncio.run(_bare(args.port))
        return
    report(
        asyncio.run(
            load(
                args.port,
                args.per_post,
                args.seconds,
                args.messages,
                args.concurrency,
                args.database,
                args.rate,
            )
        )
    )


if __name__ == "__main__":
    main()
