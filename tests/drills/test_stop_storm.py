"""Drill: a storm of STOPs while the service is sending.

One ``dripbot serve`` on a private PostgreSQL cluster sends one template to each of 300
contacts, due as a stream (15 more every 0.2 s), through a slow fake Graph API (50 ms), at 40
a second, so claimed batches are paced over seconds. Meanwhile a random half of the contacts
write "STOP": signed webhook POSTs in the real shape, in five waves of 30 sent at once, at
random moments of the stream.
Some STOPs come before the contact's message is claimed, some while it is on its way, some
after it arrived.

After an opt-out commits, nothing may reach WhatsApp for that contact except its one
confirmation. The commit instant is read from PostgreSQL (``track_commit_timestamp``: the
commit time of the transaction that last wrote the contact row, which is the opt-out) and
compared with the instant the fake received each send; both clocks are this machine's wall
clock, with microsecond resolution. ``contacts.opted_out_at`` is not the commit: the handler
takes it as "now" before it waits for the contact's send lock, so a send already on its way
may legitimately arrive after it. Such a send was answered before the opt-out could take the
lock and commit, so it reached the fake at least the fake's 50 ms latency before the commit;
a send issued after the commit reaches the fake after it. A send counts as "after opt-out"
when it arrived later than 5 ms before the commit: no legitimate send comes that close, and
the margin absorbs the order in which two processes read the same clock.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from scheduler.clock import SystemClock
from tests.drills.conftest import Report
from tests.drills.harness import (
    APP_SECRET,
    ServeProcess,
    database,
    enroll_stream,
    free_port,
    is_confirmation,
    is_drip,
    opt_outs_with_commit_times,
    outbox_counts,
    post_signed,
    private_cluster,
    serve_env,
    stop_payload,
    tally,
    wait_outbox_settled,
    wait_sends,
    wait_until,
)
from tests.fakes.graph import FakeGraph

pytestmark = [pytest.mark.slow]

CONTACTS = 300
WAVES = 5
PER_WAVE = 30
LATENCY = 0.05
#: see the module docstring: the commit instant minus this is the limit for a drip message
MARGIN = 0.005
SEED = 4242


async def test_no_message_goes_out_after_an_opt_out_commits(
    graph: FakeGraph, workdir: Path, report: Report
) -> None:
    rng = random.Random(SEED)
    graph.latency = LATENCY
    async with private_cluster() as cluster, database(cluster.url) as db:
        phones = await enroll_stream(
            db,
            CONTACTS,
            first_due=SystemClock().now() + timedelta(seconds=2),
            every=timedelta(seconds=0.2),
            group=15,
        )
        stoppers = rng.sample(phones, WAVES * PER_WAVE)
        moments = sorted(rng.uniform(0.0, 4.0) for _ in range(WAVES))
        serve = ServeProcess(
            workdir,
            serve_env(cluster.url, graph, free_port(), DRIPBOT_RATE_PER_SECOND="40"),
            "serve",
        )
        graph.echo_statuses(serve.webhook_url, APP_SECRET, delay=0.05)
        try:
            await serve.start()
            await serve.wait_healthy()
            await wait_sends(graph, serve, 1, 20)
            began = time.monotonic()
            async with aiohttp.ClientSession() as http:
                for wave, moment in enumerate(moments):
                    await asyncio.sleep(max(0.0, began + moment - time.monotonic()))
                    senders = stoppers[wave * PER_WAVE : (wave + 1) * PER_WAVE]
                    answers = await asyncio.gather(
                        *(
                            post_signed(
                                http,
                                serve.webhook_url,
                                stop_payload(phone, f"wamid.stop.{phone}", int(time.time())),
                            )
                            for phone in senders
                        )
                    )
                    assert set(answers) == {200}, collections.Counter(answers)

            async def all_opted_out() -> bool:
                return len(await opt_outs_with_commit_times(db)) == len(stoppers)

            await wait_until(all_opted_out, 15, "every STOP applied", every=0.1)
            # Confirmations wait out the 6 s gap after a contact's last message.
            await wait_outbox_settled(db, 40, details=serve.log_tail)
            await graph.wait_echoes_delivered(timeout=15)
            opt_outs = await opt_outs_with_commit_times(db)
            counts = await outbox_counts(db)
            assert await serve.terminate() == 0
        finally:
            await serve.ensure_stopped()

    assert set(opt_outs) == set(stoppers)
    figures = tally("STOP storm", graph.sent, phones, opted_out=stoppers)
    drips = collections.defaultdict(list)
    confirmations = collections.Counter(r.to for r in graph.sent if is_confirmation(r))
    for request in graph.sent:
        if is_drip(request):
            drips[request.to].append(request.wall)
    late = sorted(
        phone
        for phone, out in opt_outs.items()
        if any(at > out.committed - MARGIN for at in drips[phone])
    )
    # Sends the opt-out waited for: the STOP was being handled, the send had been claimed.
    waited_for = [
        at - out.recorded
        for phone, out in opt_outs.items()
        for at in drips[phone]
        if out.recorded < at <= out.committed - MARGIN
    ]
    closest = min(
        (out.committed - at for phone, out in opt_outs.items() for at in drips[phone]),
        default=None,
    )
    figures.after_opt_out, figures.late_phones = len(late), late
    figures.notes += [
        f"STOPs {len(stoppers)} in {WAVES} waves",
        f"their drip message before the opt-out {sum(1 for p in stoppers if drips[p])}, "
        f"cancelled {len(stoppers) - sum(1 for p in stoppers if drips[p])}",
        f"claimed before the STOP and sent while it waited {len(waited_for)} "
        f"(up to {max(waited_for, default=0) * 1000:.0f} ms after it)",
        f"closest send before a commit {closest * 1000:.0f} ms" if closest else "",
    ]
    report(figures.line())
    figures.assert_clean()
    assert all(out.committed >= out.recorded for out in opt_outs.values())
    assert {p: confirmations[p] for p in stoppers} == dict.fromkeys(stoppers, 1)
    assert sum(confirmations.values()) == len(stoppers)
    assert set(counts) <= {"sent", "delivered", "cancelled"}, counts
    assert counts["cancelled"] == len(stoppers) - sum(1 for p in stoppers if drips[p])
    assert not serve.tracebacks(), serve.tracebacks()[0]
