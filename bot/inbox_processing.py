"""Processing a round of webhook bodies. Their statuses are applied and the bodies marked
processed in one transaction, with the messages and other events handled in between, in
arrival order. A body whose processing raises is marked processed with the error recorded
(and logged) rather than retried for ever; a database that is briefly unavailable is retried
a few times first, and one that stays away leaves the body for a later round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar, cast

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.inbound_events import GraphMedia, admin_numbers, describe_unhandled, to_inbound_event
from bot.services import Services
from bot.whatsapp import webhook as wa
from handlers.events import (
    DeliveryStatus,
    InboundEvent,
    IncomingMessage,
    PreferenceChange,
    TemplateReview,
)
from handlers.inbound import handle_message, handle_preference
from handlers.inbound_context import CommandRunner, InboundContext
from handlers.status_failures import apply_failure
from handlers.status_progress import apply_progress
from handlers.statuses import apply_template_review, is_failure
from storage.models import WebhookEvent

log = logging.getLogger(__name__)

#: statuses applied per transaction
STATUS_CHUNK: Final = 1000
#: attempts for a body when the database itself fails, and the pause between them
DB_ATTEMPTS: Final = 3
DB_RETRY_SECONDS: Final = 0.5
_ERROR_LIMIT: Final = 2000

_T = TypeVar("_T")


@dataclass
class InboxStats:
    """Counters for /metrics and logs."""

    received: int = 0
    refused: int = 0
    stored: int = 0
    processed: int = 0
    errors: int = 0
    statuses: int = 0
    messages: int = 0
    unknown: int = 0


@dataclass
class Body:
    """A stored webhook body on its way through the worker, with what went wrong so far."""

    id: int
    #: the parsed JSON; None when it must be read back from the database
    payload: Any
    errors: list[str] = field(default_factory=list)
    #: the database failed while applying it: leave it unprocessed and try again later
    retry: bool = False


class BodyProcessor:
    """Applies rounds of bodies for the inbox, sharing its counters and its turn to write."""

    def __init__(
        self,
        services: Services,
        stats: InboxStats,
        writing: Callable[[], contextlib.AbstractAsyncContextManager[object]],
    ) -> None:
        self._services = services
        self.stats = stats
        self._writing = writing
        self._admins = admin_numbers(services.settings)
        self._rng = random.Random()

    async def process(self, bodies: list[Body]) -> None:
        services = self._services
        await self._load(services, [b for b in bodies if b.payload is None])
        ctx = self._context(services)
        statuses: list[tuple[Body, DeliveryStatus]] = []
        for body in bodies:
            for event in self._events(body):
                if isinstance(event, DeliveryStatus):
                    statuses.append((body, event))
                    continue
                # Keep the order: statuses before this event are applied before it.
                await self._flush(services, statuses)
                statuses = []
                await self._guarded(body, self._handler(ctx, services, event))
        await self._flush(services, statuses, finish=bodies)

    async def _load(self, services: Services, bodies: list[Body]) -> None:
        if not bodies:
            return
        async with services.db.engine.connect() as conn:
            rows = await conn.execute(
                select(WebhookEvent.id, WebhookEvent.body).where(
                    WebhookEvent.id.in_([b.id for b in bodies])
                )
            )
            stored = {int(row.id): row.body for row in rows}
        for body in bodies:
            try:
                body.payload = json.loads(stored[body.id])
            except (KeyError, ValueError) as err:
                body.errors.append(f"unreadable stored body: {err}")

    def _events(self, body: Body) -> list[InboundEvent]:
        if body.payload is None:
            return []
        found = []
        for event in wa.parse(body.payload):
            mapped = to_inbound_event(event)
            if mapped is None:
                self.stats.unknown += 1
                log.warning("webhook body %d: %s", body.id, describe_unhandled(event))
            else:
                found.append(mapped)
        return found

    async def _flush(
        self,
        services: Services,
        items: list[tuple[Body, DeliveryStatus]],
        *,
        finish: list[Body] | None = None,
    ) -> None:
        """Apply waiting statuses; with ``finish``, mark those bodies processed in the same
        transaction as the last statuses (the common case: one commit per round)."""
        self.stats.statuses += len(items)
        progress = []
        for body, status in items:
            if is_failure(status):
                # Rare, and may wait for a contact's send lock (an opt-out): on its own.
                await self._guarded(body, self._failure(services, status))
            else:
                progress.append((body, status))
        if not progress and finish is None:
            return
        statuses = [s for _, s in progress]
        # Bounded transactions: the writer gets its turn between them.
        chunks = [statuses[i : i + STATUS_CHUNK] for i in range(0, len(statuses), STATUS_CHUNK)]
        try:
            for i, chunk in enumerate(chunks or [[]]):
                last = i >= len(chunks) - 1
                await _with_db_retries(self._commit(services, chunk, finish if last else None))
            return
        except Exception:
            log.exception("a batch of %d statuses failed; retrying body by body", len(progress))
        by_body: dict[int, tuple[Body, list[DeliveryStatus]]] = {}
        for body, status in progress:
            by_body.setdefault(body.id, (body, []))[1].append(status)
        for body, statuses in by_body.values():
            await self._guarded(body, self._commit(services, statuses, None))
        if finish is not None:
            await _with_db_retries(self._commit(services, [], finish))

    def _commit(
        self, services: Services, statuses: list[DeliveryStatus], finish: list[Body] | None
    ) -> Callable[[], Awaitable[None]]:
        async def commit() -> None:
            now = services.clock.now()
            async with self._writing(), services.db.engine.begin() as conn:
                if statuses:
                    await apply_progress(conn, statuses, now=now)
                if finish:
                    await _mark(conn, finish, now)
            if finish:
                self.stats.processed += len(finish)
                self.stats.errors += sum(1 for b in finish if b.errors)

        return commit

    def _failure(self, services: Services, status: DeliveryStatus) -> Callable[[], Awaitable[None]]:
        return lambda: apply_failure(
            services.db,
            status,
            now=services.clock.now(),
            alerts=services.alerts,
            locks=services.locks,
            rng=self._rng,
        )

    async def _guarded(self, body: Body, work: Callable[[], Awaitable[object]]) -> None:
        try:
            await _with_db_retries(work)
        except (OperationalError, InterfaceError) as err:
            # The database is gone for longer than the quick retries: the body stays
            # unprocessed (its statuses may settle sends in doubt) and comes back later.
            log.warning("webhook body %d waits for the database (%s)", body.id, type(err).__name__)
            body.retry = True
        except Exception as err:
            log.exception("webhook body %d: an update failed", body.id)
            body.errors.append(f"{type(err).__name__}: {err}")

    def _handler(
        self, ctx: InboundContext, services: Services, event: InboundEvent
    ) -> Callable[[], Awaitable[None]]:
        return lambda: self._handle(ctx, services, event)

    async def _handle(self, ctx: InboundContext, services: Services, event: InboundEvent) -> None:
        if isinstance(event, IncomingMessage):
            self.stats.messages += 1
            await handle_message(ctx, event)
        elif isinstance(event, PreferenceChange):
            await handle_preference(ctx, event)
        elif isinstance(event, TemplateReview):
            await apply_template_review(
                services.db, event, now=services.clock.now(), alerts=services.alerts
            )

    def _context(self, services: Services) -> InboundContext:
        runner = services.extras.get("interpreter")
        graph = services.graph
        return InboundContext(
            db=services.db,
            clock=services.clock,
            options=services.options,
            alerts=services.alerts,
            sender=services.sender,
            locks=services.locks,
            admin_numbers=self._admins,
            commands=cast("CommandRunner | None", runner),
            media=GraphMedia(graph, services.settings.whatsapp_media_max_bytes) if graph else None,
        )


_MARK_FAILED: Final = (
    update(WebhookEvent)
    .where(WebhookEvent.id == bindparam("eid"))
    .values(processed_at=bindparam("t"), error=bindparam("e"))
)


async def _mark(conn: AsyncConnection, bodies: list[Body], now: datetime) -> None:
    """Mark bodies processed: the clean ones in one statement, with their errors the rest."""
    bodies = [b for b in bodies if not b.retry]
    clean = [b.id for b in bodies if not b.errors]
    if clean:
        await conn.execute(
            update(WebhookEvent).where(WebhookEvent.id.in_(clean)).values(processed_at=now)
        )
    failed = [
        {"eid": b.id, "t": now, "e": "\n".join(b.errors)[:_ERROR_LIMIT]} for b in bodies if b.errors
    ]
    if failed:
        await conn.execute(_MARK_FAILED, failed)


async def _with_db_retries(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work``, again after a pause if the database itself failed (locked, gone)."""
    for attempt in range(1, DB_ATTEMPTS + 1):
        try:
            return await work()
        except (OperationalError, InterfaceError) as err:
            if attempt == DB_ATTEMPTS:
                raise
            log.warning("database trouble (%s); trying again", err.__class__.__name__)
            await asyncio.sleep(DB_RETRY_SECONDS * attempt)
    raise AssertionError("unreachable")
