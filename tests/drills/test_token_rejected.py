"""Drill: the access token is rejected (error 190) in the middle of a run.

One ``dripbot serve`` on a fresh PostgreSQL database sends one template to each of 300
contacts, all due at once, at 100 a second (a burst of 100, then paced). After 150 accepted
sends the fake Graph API answers every call with 190, as Meta does when a token expires or
is revoked. Sending must pause: the pause is visible in ``/healthz`` and nothing more goes
out, beyond the calls already on their way when the first 190 came back. The test then
fixes the fake (a new token) and resumes sending the way an admin would from a terminal,
``dripbot admin "/resume sending"``; every contact must end with exactly one message.
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
    fresh_database,
    outbox_counts,
    run_admin,
    serve_env,
    tally,
    wait_outbox_settled,
    wait_sends,
    wait_until,
)
from tests.fakes.graph import FakeGraph, RecordedRequest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


CONTACTS = 300
ACCEPTED_BEFORE = 150
LATENCY = 0.02
#: a call that reached the fake this long after the first 190 was answered was started
#: after the service had been told: the service's event loop and the fake's each take a few
#: ms to notice, far less than this
NOTICE = 0.1


class CallsAfterTheRejection(AssertionError):
    """Calls went out after Meta had answered 190."""


async def test_a_rejected_token_pauses_sending_until_an_admin_resumes(
    graph: FakeGraph, workdir: Path, report: Report
) -> None:
    graph.latency = LATENCY
    async with fresh_database() as url, database(url) as db:
        phones = await enroll_stream(
            db, CONTACTS, first_due=SystemClock().now(), every=timedelta(0), group=CONTACTS
        )
        env = serve_env(url, graph, free_port())
        serve = ServeProcess(workdir, env, "serve")
        graph.echo_statuses(serve.webhook_url, APP_SECRET, delay=0.05)
        try:
            await serve.start()
            await serve.wait_healthy()
            await wait_sends(graph, serve, ACCEPTED_BEFORE, 20)
            graph.fail_next(1_000_000, code=190, http_status=401)

            async def paused() -> bool:
                answer = await serve.health()
                return answer is not None and answer[1].get("sending_paused") is True

            await wait_until(paused, 10, "/healthz showing sending_paused", every=0.05)
            paused_seen = time.time()
            # Several ticks (0.2 s each) later, still nothing new has gone out.
            await asyncio.sleep(1.5)
            before_fix: list[RecordedRequest] = list(graph.requests)
            accepted_before_fix = list(graph.sent)
            status, body = await serve.health() or (0, {})
            assert (status, body.get("sending_paused")) == (200, True), body

            graph.reset()  # a new token: the fake accepts again
            graph.latency = LATENCY
            code, output = await run_admin(workdir, env, "/resume sending")
            assert code == 0, output
            await wait_outbox_settled(db, 30, details=serve.log_tail)
            await graph.wait_echoes_delivered(timeout=15)
            assert await serve.terminate() == 0
            counts = await outbox_counts(db)
        finally:
            await serve.ensure_stopped()

    rejected = [r for r in before_fix if r.status == 401]
    first_answer = min(r.wall for r in rejected) + LATENCY
    after_rejection = [r for r in before_fix if r.wall > first_answer + NOTICE]
    after_pause = [r for r in before_fix if r.wall > paused_seen]
    figures = tally("token rejected (190)", accepted_before_fix + graph.sent, phones)
    figures.notes += [
        f"accepted before the rejection {len(accepted_before_fix)}, calls answered 190 "
        f"{len(rejected)}, calls started after the first 190 {len(after_rejection)}, "
        f"after the pause showed {len(after_pause)}",
        f"resumed by `dripbot admin`: {output.strip().splitlines()[0] if output.strip() else ''}",
    ]
    report(figures.line())
    figures.assert_clean()
    assert set(counts) <= set(ACCEPTED), counts
    assert not after_pause, after_pause[:3]
    if after_rejection:
        raise CallsAfterTheRejection(
            f"{len(after_rejection)} calls started more than {NOTICE} s after the first 190 "
            "was answered"
        )
