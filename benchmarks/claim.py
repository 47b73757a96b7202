"""Claim latency with a large database: ``storage.outbox.claim`` at the dispatcher's batch.

A child process fills a migrated database with N contacts, each enrolled once in a
three-step sequence, with one outbox row per enrollment, in enrollment order: the oldest
were already sent, most are scheduled for the coming weeks, and the newest import's are due
now (as the Enroller writes an import, its rows lie together). The fixture rows are written
with plain Core INSERTs (they only have to look like what the Enroller and dispatcher leave
behind; the import has its own benchmark).

Then the real ``claim`` runs as the dispatcher runs it: in its own transaction, committed,
each claim taking the next due rows, and the time is the claim's statements and the commit.
Between claims, untimed, the claimed rows are written back as sent, as the dispatcher's
write-back does, so the rows in "sending" stay what one batch leaves. One untimed claim goes
first: the first use of a statement on a connection prepares it, which the dispatcher pays
once per connection.

    python -m benchmarks claim
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import insert, text, update

from benchmarks.common import (
    BenchmarkError,
    Figure,
    Goal,
    database,
    postgres_available,
    progress,
    report,
    run_child,
)
from bot.heap import freeze_startup_objects
from scheduler.clock import SystemClock
from scheduler.dispatcher import BATCH_SIZE
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage
from storage.outbox import claim

NAME: Final = "claim"
GOAL_ROWS: Final = 1_000_000
#: issue 7: a claim under 20 ms with a million enrollments
GOAL_MS: Final = 20.0
CHUNK: Final = 20_000
#: the oldest share of the outbox rows was sent; the rest, but for the due ones, is to come
SENT_SHARE: Final = 0.29
STEPS: Final = [
    StepSpec(Timing(day=1), "template", template=TemplateRef("welcome", "en", ())),
    StepSpec(Timing(day=3), "template", template=TemplateRef("follow_up", "en", ())),
    StepSpec(Timing(day=7), "template", template=TemplateRef("last_call", "en", ())),
]


def run(rows: int, *, repeats: int = 50, postgres: bool = True) -> list[Figure]:
    backends = ["sqlite"] + (["postgres"] if postgres and postgres_available() else [])
    figures = []
    with tempfile.TemporaryDirectory(prefix="dripbot-bench-") as tmp:
        for backend in backends:
            progress(f"claim: {rows:,} enrollments on {backend}")
            with database(backend, Path(tmp), f"claim-{backend}") as url:
                if rows < 2 * due_rows(repeats):
                    raise BenchmarkError(f"{rows:,} rows are too few for {repeats} claims")
                args = ["--database", url, "--rows", str(rows), "--repeats", str(repeats)]
                child = run_child("benchmarks.claim", args).result
            label = "SQLite" if backend == "sqlite" else "PostgreSQL"
            detail = (
                f"p50 {child['p50']:.1f} ms, max {child['max']:.1f} ms over {repeats} "
                f"committed claims of {child['claimed']} rows each; {child['due']:,} due, "
                f"{rows:,} outbox rows; fixture written in {child['setup_seconds']:.0f} s"
            )
            figures.append(
                Figure(
                    NAME,
                    f"{label}, {rows:,} enrollments, p99",
                    child["p99"],
                    "ms",
                    Goal.at_most(GOAL_MS) if rows >= GOAL_ROWS else None,
                    detail,
                    checked=child["claimed"] == BATCH_SIZE,
                )
            )
    return figures


def due_rows(repeats: int) -> int:
    """What the timed claims take, and the untimed first one."""
    return (repeats + 1) * BATCH_SIZE


async def fill(db: Database, rows: int, due: int) -> None:
    """The fixture: contacts, enrollments and one outbox row each; the newest ``due`` are
    due now."""
    now = SystemClock().now()
    sequence_id = (await create_sequence(db, "Large", STEPS, now=now)).sequence.id
    async with db.engine.connect() as conn:
        step_ids = list(
            (
                await conn.execute(
                    text("SELECT id FROM steps WHERE sequence_id = :s ORDER BY position"),
                    {"s": sequence_id},
                )
            ).scalars()
        )
    ws = db.workspace_id
    sent_until = round(rows * SENT_SHARE)
    for start in range(1, rows + 1, CHUNK):
        ids = range(start, min(rows + 1, start + CHUNK))
        contacts: list[dict[str, Any]] = []
        enrollments: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        for n in ids:
            contacts.append(
                {
                    "id": n,
                    "workspace_id": ws,
                    "phone": f"+4915{n:09d}",
                    "name": f"Lead {n}",
                    "first_name": "Lead",
                    "custom_fields": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
            enrollments.append(
                {
                    "id": n,
                    "workspace_id": ws,
                    "sequence_id": sequence_id,
                    "contact_id": n,
                    "status": "active",
                    "enrolled_at": now,
                    "timezone": "Europe/Berlin",
                    "source": "csv",
                    "shift_seconds": 0,
                }
            )
            if n > rows - due:  # one import: its rows share their due time
                status, due_at, step = "scheduled", now - timedelta(hours=1), 0
            elif n <= sent_until:
                status, due_at, step = "sent", now - timedelta(days=1), 0
            else:
                status, due_at, step = "scheduled", now + timedelta(minutes=n % 40_000), 1
            messages.append(
                {
                    "id": n,
                    "workspace_id": ws,
                    "contact_id": n,
                    "enrollment_id": n,
                    "sequence_id": sequence_id,
                    "step_id": step_ids[step],
                    "purpose": "drip",
                    "status": status,
                    "due_at": due_at,
                    "attempts": 1 if status == "sent" else 0,
                    "wamid": f"wamid.bench.{n}" if status == "sent" else None,
                    "sent_at": due_at if status == "sent" else None,
                    "dry_run": False,
                    "business_initiated": True,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        async with db.engine.begin() as conn:
            await conn.execute(insert(Contact), contacts)
            await conn.execute(insert(Enrollment), enrollments)
            await conn.execute(insert(OutboundMessage), messages)
    if not db.is_sqlite:
        # The sequences behind the explicit ids, and the statistics autovacuum would gather
        # soon after a bulk load. SQLite gets none: dripbot never runs ANALYZE there.
        async with db.engine.begin() as conn:
            for table in ("contacts", "enrollments", "outbound_messages"):
                await conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
        # VACUUM too, as autovacuum does after a bulk load: it sets the hint bits and the
        # visibility map that every first reader of a fresh row would otherwise write.
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))


async def measure(url: str, rows: int, repeats: int) -> dict[str, Any]:
    clock = SystemClock()
    db = await Database.open(url, workspace="default", now=clock.now())
    due = due_rows(repeats)
    try:
        started = time.perf_counter()
        await fill(db, rows, due)
        setup = time.perf_counter() - started
        freeze_startup_objects()  # as ``dripbot serve`` does once it has started
        timed = await _time_claims(db, clock, repeats)
    finally:
        await db.close()
    return timed | {"due": due, "setup_seconds": setup}


async def _time_claims(db: Database, clock: SystemClock, repeats: int) -> dict[str, Any]:
    timings: list[float] = []
    sizes = set()
    for attempt in range(repeats + 1):
        async with db.engine.connect() as conn:
            began = time.perf_counter()
            async with conn.begin():
                taken = await claim(
                    conn,
                    db.workspace_id,
                    now=clock.now(),
                    limit=BATCH_SIZE,
                    lease=timedelta(minutes=2),
                )
            if attempt:  # the first one prepares the statements on this connection
                timings.append((time.perf_counter() - began) * 1000)
                sizes.add(len(taken))
            async with conn.begin():
                await conn.execute(
                    update(OutboundMessage)
                    .where(OutboundMessage.id.in_([c.id for c in taken]))
                    .values(status="sent", sent_at=clock.now(), lease_until=None)
                )
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    # every timed claim must have taken a full batch, or it timed less work than it says
    claimed = sizes.pop() if len(sizes) == 1 else -1
    return {"p50": cuts[49], "p99": cuts[98], "max": max(timings), "claimed": claimed}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One claim-latency measurement (a child).")
    parser.add_argument("--database", required=True)
    parser.add_argument("--rows", type=int, default=GOAL_ROWS)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    report(asyncio.run(measure(args.database, args.rows, args.repeats)))


if __name__ == "__main__":
    main()
