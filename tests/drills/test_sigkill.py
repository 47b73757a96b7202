"""Drill: ``dripbot serve`` killed with SIGKILL again and again in the middle of dispatching.

300 contacts are enrolled in a template sequence on a fresh PostgreSQL database, due as a
steady stream (6 more every 0.2 s, for 10 s) at the service's rate of 30 a second. Each run of
the service starts with the backlog of the time it was down and sends it as one batch, paced
(30 at once, then 30 a second) and recorded when the batch is done. The fake Graph API
answers after 20 ms and, like Meta, posts the ``sent`` and ``delivered`` statuses of every
accepted message to the service's webhook (0.3 s later), retrying while the service is down.

The service is killed four times, each at a random moment 0.2-0.9 s after it started
sending, and started again on the same port. A send the fake accepted whose status had not
come in yet stays ``sending`` after the kill, until its status arrives (matched by
``biz_opaque_callback_data``) after the restart; one that never reached the fake is sent
again once its lease (8 s) ends.

Lost: a contact with no accepted message at the fake. Duplicate: a contact with more than one.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler.clock import SystemClock
from scheduler.ports import message_id_from_callback
from tests.drills.conftest import Report
from tests.drills.harness import (
    ACCEPTED,
    APP_SECRET,
    ServeProcess,
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
    wait_sends,
    wait_until,
)
from tests.fakes.graph import FakeGraph

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CONTACTS = 300
KILLS = 4
SEED = 20260302


async def test_repeated_sigkill_during_dispatch_loses_and_repeats_nothing(
    graph: FakeGraph, workdir: Path, report: Report
) -> None:
    rng = random.Random(SEED)
    graph.latency = 0.02
    async with fresh_database() as url, database(url) as db:
        phones = await enroll_stream(
            db, CONTACTS, first_due=SystemClock().now(), every=timedelta(seconds=0.2), group=6
        )
        serve = ServeProcess(
            workdir, serve_env(url, graph, free_port(), DRIPBOT_RATE_PER_SECOND="30"), "serve"
        )
        # Meta reports "sent" a moment after accepting: here 0.3 s, so a kill always finds some
        # accepted sends whose status has not come yet.
        graph.echo_statuses(serve.webhook_url, APP_SECRET, delay=0.3)
        settled_by_status: set[int] = set()
        resent_after_lease: set[int] = set()
        try:
            for _ in range(KILLS):
                before = len(graph.requests)
                await serve.start()
                await serve.wait_healthy()
                # Mid-dispatch: this run has begun sending its backlog (about a second's work).
                await wait_until(
                    lambda before=before: len(graph.requests) > before,
                    10,
                    "a send from the new run",
                    every=0.005,
                )
                await asyncio.sleep(rng.uniform(0.2, 0.9))
                await serve.kill()
                accepted = {
                    message_id_from_callback(r.json.get("biz_opaque_callback_data"))
                    for r in graph.sent
                }
                for row in await outbox_rows(db):
                    if row.status == "sending":
                        (settled_by_status if row.id in accepted else resent_after_lease).add(
                            row.id
                        )
            await serve.start()
            await serve.wait_healthy()
            await wait_outbox_settled(db, 30, details=serve.log_tail)
            await graph.wait_echoes_delivered(timeout=15)
            # The inbox applies statuses after answering: wait for the last ones.
            await wait_outbox_states(db, {"delivered"}, 10)
            assert await serve.terminate() == 0
            rows = await outbox_rows(db)
            counts = await outbox_counts(db)
        finally:
            await serve.ensure_stopped()

    figures = tally("SIGKILL during dispatch", graph.sent, phones)
    figures.notes += [
        f"{KILLS} kills",
        f"in doubt at a kill: {len(settled_by_status)} sent (settled by their status), "
        f"{len(resent_after_lease - settled_by_status)} not sent (sent after the lease)",
        f"requests to the fake {len(graph.requests)}",
    ]
    report(figures.line())
    figures.assert_clean()
    assert set(counts) <= set(ACCEPTED), counts
    # The outbox agrees with the fake: each row carries the wamid the fake gave its send.
    by_wamid = {r.wamid: str(r.to) for r in graph.sent}
    assert sorted(by_wamid[r.wamid] for r in rows if r.wamid is not None) == sorted(phones)
    assert settled_by_status, "no kill caught a send in flight: the drill proved little"
    assert not serve.tracebacks(), serve.tracebacks()[0]


class SentTwice(AssertionError):
    """Messages Meta had taken were sent again."""


async def test_down_longer_than_the_lease_the_statuses_still_settle_the_sends_in_doubt(
    graph: FakeGraph, workdir: Path, report: Report
) -> None:
    """60 sends taken by Meta whose answers never came back; the service killed before any
    status arrived (1 s later), kept down longer than the 3 s lease, then started again.
    Meta's statuses are waiting to be retried: they, not a second send, must settle the 60."""
    contacts, lease = 60, 3.0
    graph.latency = 0.02
    async with fresh_database() as url, database(url) as db:
        phones = await enroll_stream(
            db, contacts, first_due=SystemClock().now(), every=timedelta(0), group=contacts
        )
        env = serve_env(url, graph, free_port(), DRIPBOT_SEND_LEASE_SECONDS=str(lease))
        serve = ServeProcess(workdir, env, "serve")
        graph.echo_statuses(serve.webhook_url, APP_SECRET, delay=1.0)
        try:
            graph.hang = True  # accepted, the answers lost
            await serve.start()
            await wait_sends(graph, serve, contacts, 20)
            await serve.kill()
            graph.hang = False
            in_doubt = sum(1 for r in await outbox_rows(db) if r.status == "sending")
            await asyncio.sleep(lease + 1.0)
            await serve.start()
            await serve.wait_healthy()
            await wait_outbox_settled(db, 20, details=serve.log_tail)
            await graph.wait_echoes_delivered(timeout=15)
            assert await serve.terminate() == 0
        finally:
            await serve.ensure_stopped()

    figures = tally("down longer than the lease", graph.sent, phones)
    figures.notes.append(
        f"in doubt at the kill {in_doubt}, lease {lease:g} s, down {lease + 1:g} s"
    )
    report(figures.line())
    # the drill means something only if sends were in doubt at the kill (on a busy machine a
    # few statuses may arrive first and settle theirs)
    assert in_doubt >= contacts // 2, figures.line()
    assert figures.lost == 0, figures.line()
    if figures.duplicates:
        raise SentTwice(figures.line())
