"""Drill: PostgreSQL stops and starts again under load; the service carries on by itself.

The drill runs its own PostgreSQL cluster (the machine's shared server is never touched).
One ``dripbot serve`` sends one template to each of 300 contacts, due as a stream (10 more
every 0.2 s) at up to 100 a second; the fake Graph API (20 ms) posts statuses for every
accepted message. In the middle of the stream the cluster is stopped (``pg_ctl stop -m
fast``: every connection is cut) for 2 s and started again. The service is not restarted: its
``/healthz`` must report the database unreachable meanwhile and return to 200, dispatching
must resume, and in the end every contact has exactly one message. Statuses posted while
the database is down are refused (503) and retried by the fake, as Meta retries.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.clock import SystemClock
from tests.drills.conftest import Report
from tests.drills.harness import (
    ACCEPTED,
    APP_SECRET,
    ServeProcess,
    database,
    enroll_stream,
    free_port,
    outbox_counts,
    private_cluster,
    serve_env,
    tally,
    wait_outbox_settled,
    wait_outbox_states,
    wait_sends,
    wait_until,
)
from tests.fakes.graph import FakeGraph

pytestmark = [pytest.mark.slow]

CONTACTS = 300
DOWN_SECONDS = 2.0


async def test_the_service_recovers_from_a_database_restart_without_restarting(
    graph: FakeGraph, workdir: Path, report: Report
) -> None:
    graph.latency = 0.02
    async with private_cluster() as cluster:
        async with database(cluster.url) as db:
            phones = await enroll_stream(
                db,
                CONTACTS,
                first_due=SystemClock().now() + timedelta(seconds=2),
                every=timedelta(seconds=0.2),
                group=10,
            )
        serve = ServeProcess(workdir, serve_env(cluster.url, graph, free_port()), "serve")
        graph.echo_statuses(serve.webhook_url, APP_SECRET, delay=0.05)
        health_seen: list[int] = []

        async def unhealthy() -> bool:
            answer = await serve.health()
            health_seen.append(answer[0] if answer else 0)
            return answer is not None and answer[0] == 503

        try:
            await serve.start()
            await serve.wait_healthy()
            await wait_sends(graph, serve, 60, 20)
            await cluster.stop("fast")
            stopped = time.time()
            await wait_until(unhealthy, 10, "/healthz 503 while the database is down")
            await asyncio.sleep(max(0.0, stopped + DOWN_SECONDS - time.time()))
            sent_while_down = len(graph.sent)
            await cluster.start()
            started = time.time()
            recovered_in = await serve.wait_healthy(30)
            await wait_until(
                lambda: len(graph.sent) > sent_while_down, 20, "a send after the restart"
            )
            async with database(cluster.url) as db:
                await wait_outbox_settled(db, 40, details=serve.log_tail)
                await graph.wait_echoes_delivered(timeout=20)
                await wait_outbox_states(db, {"delivered"}, 15)
                counts = await outbox_counts(db)
            assert serve.running, "the service exited:\n" + serve.log_tail()
            assert await serve.terminate() == 0
        finally:
            await serve.ensure_stopped()

    figures = tally("database restart", graph.sent, phones)
    refused = sum(e.attempts - 1 for e in graph.echoes)
    figures.notes += [
        f"database down {started - stopped:.1f} s, /healthz 200 again {recovered_in:.1f} s "
        f"after it came back",
        f"status webhooks retried {refused} times",
        f"tracebacks logged {len(serve.tracebacks())}",
    ]
    report(figures.line())
    figures.assert_clean()
    # an outage is logged as one warning line per refused POST or failed tick, not as a
    # traceback each (there were about 130 per outage before)
    assert len(serve.tracebacks()) < 10, serve.tracebacks()[:3]
    assert set(counts) <= set(ACCEPTED), counts
    assert 503 in health_seen
