"""Drill: the Graph API fails a fifth of all calls with 429, 5xx and timeouts.

One ``dripbot serve`` on a fresh PostgreSQL database sends one template to each of 300
contacts, all due at once. The fake Graph API (20 ms latency) fails a seeded 20 % of the calls,
evenly: 429 (130429), 500/503 with a Graph error (131000, 131016, 2), a bare 502 from a
proxy, and timeouts of the worst kind, where Meta took the message but the answer never came
back. Rejected calls are retried with backoff (the fake did not take them, so no duplicate
can come of it); a bare 502 and a timeout are in doubt and wait for a status webhook, which
the fake posts for every message it took, or for the lease (8 s) to end.

The seed is chosen so that the timeouts come in the first pass over the contacts: each holds
its batch for the client's timeout (3 s here, ``DRIPBOT_WHATSAPP_TIMEOUT_SECONDS``), and a
second pass with one would double the drill's time for no new insight.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.clock import SystemClock
from tests.drills.conftest import Report
from tests.drills.harness import (
    ACCEPTED,
    APP_SECRET,
    ServeProcess,
    chaos_kinds,
    database,
    enroll_stream,
    free_port,
    fresh_database,
    outbox_counts,
    outbox_rows,
    serve_env,
    tally,
    wait_outbox_settled,
    wait_outbox_states,
)
from tests.fakes.graph import FakeGraph

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CONTACTS = 300
CHAOS = 0.2
SEED = 31
#: seconds a send waits for the fake's answer: the lost answers end well within the lease
TIMEOUT = 3.0


async def test_a_fifth_of_calls_failing_ends_with_every_message_sent_once(
    graph: FakeGraph, workdir: Path, report: Report
) -> None:
    graph.latency = 0.02
    graph.chaos(CHAOS, seed=SEED)
    async with fresh_database() as url, database(url) as db:
        phones = await enroll_stream(
            db, CONTACTS, first_due=SystemClock().now(), every=timedelta(0), group=CONTACTS
        )
        env = serve_env(url, graph, free_port(), DRIPBOT_WHATSAPP_TIMEOUT_SECONDS=str(TIMEOUT))
        serve = ServeProcess(workdir, env, "serve")
        graph.echo_statuses(serve.webhook_url, APP_SECRET, delay=0.05)
        try:
            await serve.start()
            await serve.wait_healthy()
            await wait_outbox_settled(db, 60, details=serve.log_tail)
            await graph.wait_echoes_delivered(timeout=15)
            await wait_outbox_states(db, {"delivered"}, 10)
            assert await serve.terminate() == 0
            rows = await outbox_rows(db)
            counts = await outbox_counts(db)
        finally:
            await serve.ensure_stopped()

    kinds = chaos_kinds(graph.requests)
    arrivals = sorted(r.wall for r in graph.requests)
    stall = max(b - a for a, b in itertools.pairwise(arrivals))
    figures = tally("Graph API failing 20 %", graph.sent, phones)
    figures.notes += [
        f"requests {len(graph.requests)}: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())),
        f"most attempts for one message {max(r.attempts for r in rows)}",
        f"longest pause between two calls {stall:.1f} s",
    ]
    report(figures.line())
    figures.assert_clean()
    assert set(counts) <= set(ACCEPTED), counts
    assert kinds["accepted, answer lost"] >= 5, kinds  # the timeouts that matter happened
    assert kinds["429"] and kinds["502"] and (kinds["500"] + kinds["503"]), kinds
    assert not serve.tracebacks(), serve.tracebacks()[0]
