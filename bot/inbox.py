"""The webhook inbox: every body stored durably before it is answered, then processed.

A POST is answered only after its raw body is stored (``webhook_events``), so a crash after
the 200 loses nothing: on start, the inbox first processes every stored body not yet marked
processed. Bodies are then processed in arrival order by one worker task, off the request
path. Meta retries and duplicates deliveries; the handlers make every message and status
idempotent, so a body processed twice changes nothing the second time.

Throughput comes from batching both sides. Concurrent POSTs are stored with one multi-row
INSERT per transaction on the writer's own connection (a group commit: each request waits
for the commit that holds its body). The worker lets bodies gather for a moment, then takes
every waiting one at once and hands them to :mod:`bot.inbox_processing`. On SQLite, which
has a single writer and makes the others sleep and retry, the writer and the worker take
turns instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.inbox_processing import Body, BodyProcessor, InboxStats
from bot.services import Services
from storage.database import UNAVAILABLE
from storage.models import WebhookEvent

log = logging.getLogger(__name__)

#: bodies written per INSERT, and bodies processed per worker round
WRITE_BATCH: Final = 500
PROCESS_BATCH: Final = 500
#: how long the worker lets bodies gather before a round (processing is off the answer path)
PROCESS_LINGER: Final = 0.02
#: past this many waiting bodies the queue keeps only their ids (bodies are re-read)
QUEUE_BODY_LIMIT: Final = 2000
#: how long a body the database could not take waits before it is applied again
RETRY_LATER_SECONDS: Final = 2.0
#: how long shutdown waits for the queue to drain (the rest is recovered on start)
DRAIN_SECONDS: Final = 10.0


class Inbox:
    """Stores webhook bodies durably and processes them in order, one worker at a time."""

    def __init__(self) -> None:
        self.stats = InboxStats()
        self._services: Services | None = None
        self._pending: list[tuple[str, Any, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[Body] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._warned_no_secret = False
        # SQLite has one writer at a time and makes the others sleep and retry; taking turns
        # here instead keeps the answer to Meta fast while statuses are being applied.
        self._turn = asyncio.Lock()
        self._take_turns = False
        self._conn: AsyncConnection | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Queue the bodies a previous run stored but did not finish, then start working."""
        self._services = services
        processor = BodyProcessor(services, self.stats, self._writing)
        self._take_turns = services.db.is_sqlite
        async with services.db.engine.connect() as conn:
            left = list(
                (
                    await conn.execute(
                        select(WebhookEvent.id)
                        .where(WebhookEvent.processed_at.is_(None))
                        .order_by(WebhookEvent.id)
                    )
                ).scalars()
            )
        if left:
            log.info("processing %d webhook bodies stored before the last stop", len(left))
        for event_id in left:
            self._queue.put_nowait(Body(int(event_id), None))
        self._writer = asyncio.create_task(self._write_loop(), name="webhook-inbox-writer")
        self._worker = asyncio.create_task(self._work_loop(processor), name="webhook-inbox-worker")

    async def stop(self) -> None:
        """Store what is still waiting, give the worker a moment to drain, then stop.

        The server has stopped answering by now, so nobody waits for the writer any more.
        """
        await _cancel(self._writer)
        self._writer = None
        if self._pending:
            try:
                await self._write_pending()
            except Exception:
                log.exception("webhook bodies lost at shutdown (Meta retries them)")
        try:
            await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
        except TimeoutError:
            log.warning(
                "stopping with %d webhook bodies unprocessed; they are processed on the next start",
                self._queue.qsize(),
            )
        await _cancel(self._worker)
        self._worker = None
        await self._drop_connection()

    async def drained(self) -> None:
        """Wait until every stored body has been processed."""
        await self._queue.join()

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + len(self._pending)

    def warn_no_secret(self) -> None:
        if not self._warned_no_secret:
            self._warned_no_secret = True
            log.error(
                "refusing WhatsApp webhook POSTs: DRIPBOT_WHATSAPP_APP_SECRET is not set, so "
                "signatures cannot be checked"
            )

    # --- storing ------------------------------------------------------------------------

    async def store(self, body: str, payload: Any) -> int:
        """Store a body durably and queue it; returns its id once the commit is done."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((body, payload, future))
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                try:
                    await self._write_pending()
                except UNAVAILABLE:
                    pass  # each waiting request answers 503 and says why
                except Exception:
                    log.exception("could not store webhook bodies")

    async def _write_pending(self) -> None:
        batch = self._pending[:WRITE_BATCH]
        del self._pending[:WRITE_BATCH]
        services = self._require()
        now = services.clock.now()
        rows = [
            {"source": "whatsapp", "body": body, "received_at": now, "processed_at": None}
            for body, _, _ in batch
        ]
        try:
            if self._conn is None:
                # The writer keeps its own connection: no pool round trip per commit.
                self._conn = await services.db.engine.connect()
            async with self._writing(), self._conn.begin():
                result = await self._conn.execute(_STORE, rows)
                # Matched by body, not by order: asking SQLAlchemy for rows in parameter order
                # makes it insert them one statement at a time on SQLite. Identical bodies
                # (Meta's retries) are interchangeable.
                by_body: dict[str, list[int]] = {}
                for event_id, stored in result:
                    by_body.setdefault(stored, []).append(int(event_id))
                ids = [by_body[body].pop() for body, _, _ in batch]
        except BaseException as err:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(err if isinstance(err, Exception) else RuntimeError())
            await self._drop_connection()  # it may be broken; the next batch opens another
            raise
        self.stats.stored += len(ids)
        for (_, payload, future), event_id in zip(batch, ids, strict=True):
            keep = payload if self._queue.qsize() < QUEUE_BODY_LIMIT else None
            self._queue.put_nowait(Body(event_id, keep))
            if not future.done():
                future.set_result(event_id)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # --- processing ---------------------------------------------------------------------

    async def _work_loop(self, processor: BodyProcessor) -> None:
        while True:
            bodies = [await self._queue.get()]
            if self._queue.qsize() < PROCESS_BATCH:
                # Let a few more arrive: one transaction for many bodies costs about what one
                # costs alone, and nobody waits for the processing.
                await asyncio.sleep(PROCESS_LINGER)
            while len(bodies) < PROCESS_BATCH and not self._queue.empty():
                bodies.append(self._queue.get_nowait())
            try:
                await processor.process(bodies)
            except Exception:
                # Only marking them processed failed: they are picked up again on start.
                log.exception(
                    "webhook bodies %d-%d not marked processed", bodies[0].id, bodies[-1].id
                )
            finally:
                for _ in bodies:
                    self._queue.task_done()
            again = [b for b in bodies if b.retry]
            if again:
                await asyncio.sleep(RETRY_LATER_SECONDS)
                for body in again:
                    body.retry = False
                    body.errors.clear()
                    self._queue.put_nowait(body)

    def _writing(self) -> contextlib.AbstractAsyncContextManager[object]:
        """This process's turn to write, on SQLite; PostgreSQL takes writers side by side."""
        return self._turn if self._take_turns else _no_turn()

    def _require(self) -> Services:
        if self._services is None:
            raise RuntimeError("the webhook inbox is not started")
        return self._services


_STORE: Final = insert(WebhookEvent).returning(WebhookEvent.id, WebhookEvent.body)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _no_turn() -> contextlib.AbstractAsyncContextManager[object]:
    return contextlib.nullcontext()
