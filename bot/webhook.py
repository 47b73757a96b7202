"""The WhatsApp webhook: ``GET``/``POST /webhook/whatsapp`` and the inbox behind it.

A POST is answered only after its raw body is stored (``webhook_events``), so a crash after
the 200 loses nothing: on start, the inbox first processes every stored body not yet marked
processed. Bodies are then processed in arrival order by one worker task, off the request
path. Meta retries and duplicates deliveries; the handlers make every message and status
idempotent, so a body processed twice changes nothing the second time.

Throughput comes from batching both sides. Concurrent POSTs are stored with one multi-row
INSERT per transaction on the writer's own connection (a group commit: each request waits
for the commit that holds its body). The worker lets bodies gather for a moment, then takes
every waiting one at once: their statuses are applied and the bodies marked processed in one
transaction. On SQLite, which has a single writer and makes the others sleep and retry, the
writer and the worker take turns instead. A body whose processing raises is marked processed
with the error recorded (and logged) rather than retried for ever; a database that is
briefly unavailable is retried a few times first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar, cast

from aiohttp import web
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.config import Settings
from bot.metrics import Metrics
from bot.services import SERVICES, Services
from bot.whatsapp import webhook as wa
from bot.whatsapp.client import GraphClient
from bot.whatsapp.errors import MediaTooLargeError, WhatsAppError
from bot.whatsapp.signature import verify
from handlers.events import (
    DeliveryStatus,
    Identity,
    InboundEvent,
    IncomingMessage,
    MediaRef,
    PreferenceChange,
    TemplateReview,
)
from handlers.inbound import (
    CommandRunner,
    InboundContext,
    MediaUnavailable,
    handle_message,
    handle_preference,
)
from handlers.statuses import apply_failure, apply_progress, apply_template_review, is_failure
from scheduler.phones import InvalidPhone, normalize_phone
from storage.models import WebhookEvent

log = logging.getLogger(__name__)

PATH: Final = "/webhook/whatsapp"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
#: bodies written per INSERT, and bodies processed per worker round
WRITE_BATCH: Final = 500
PROCESS_BATCH: Final = 500
#: statuses applied per transaction
STATUS_CHUNK: Final = 1000
#: how long the worker lets bodies gather before a round (processing is off the answer path)
PROCESS_LINGER: Final = 0.02
#: past this many waiting bodies the queue keeps only their ids (bodies are re-read)
QUEUE_BODY_LIMIT: Final = 2000
#: attempts for a body when the database itself fails, and the pause between them
DB_ATTEMPTS: Final = 3
DB_RETRY_SECONDS: Final = 0.5
#: how long a body the database could not take waits before it is applied again
RETRY_LATER_SECONDS: Final = 2.0
#: how long shutdown waits for the queue to drain (the rest is recovered on start)
DRAIN_SECONDS: Final = 10.0
_READ_CHUNK: Final = 64 * 1024
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
class _Body:
    id: int
    #: the parsed JSON; None when it must be read back from the database
    payload: Any
    errors: list[str] = field(default_factory=list)
    #: the database failed while applying it: leave it unprocessed and try again later
    retry: bool = False


class Inbox:
    """Stores webhook bodies durably and processes them in order, one worker at a time."""

    def __init__(self) -> None:
        self.stats = InboxStats()
        self._services: Services | None = None
        self._pending: list[tuple[str, Any, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._queue: asyncio.Queue[_Body] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._admins: frozenset[str] = frozenset()
        self._warned_no_secret = False
        # SQLite has one writer at a time and makes the others sleep and retry; taking turns
        # here instead keeps the answer to Meta fast while statuses are being applied.
        self._turn = asyncio.Lock()
        self._take_turns = False
        self._rng = random.Random()
        self._conn: AsyncConnection | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, services: Services) -> None:
        """Queue the bodies a previous run stored but did not finish, then start working."""
        self._services = services
        self._admins = admin_numbers(services.settings)
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
            self._queue.put_nowait(_Body(int(event_id), None))
        self._writer = asyncio.create_task(self._write_loop(), name="webhook-inbox-writer")
        self._worker = asyncio.create_task(self._work_loop(), name="webhook-inbox-worker")

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
            self._queue.put_nowait(_Body(event_id, keep))
            if not future.done():
                future.set_result(event_id)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    # --- processing ---------------------------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            bodies = [await self._queue.get()]
            if self._queue.qsize() < PROCESS_BATCH:
                # Let a few more arrive: one transaction for many bodies costs about what one
                # costs alone, and nobody waits for the processing.
                await asyncio.sleep(PROCESS_LINGER)
            while len(bodies) < PROCESS_BATCH and not self._queue.empty():
                bodies.append(self._queue.get_nowait())
            try:
                await self._process(bodies)
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

    async def _process(self, bodies: list[_Body]) -> None:
        services = self._require()
        await self._load(services, [b for b in bodies if b.payload is None])
        ctx = self._context(services)
        statuses: list[tuple[_Body, DeliveryStatus]] = []
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

    async def _load(self, services: Services, bodies: list[_Body]) -> None:
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

    def _events(self, body: _Body) -> list[InboundEvent]:
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
        items: list[tuple[_Body, DeliveryStatus]],
        *,
        finish: list[_Body] | None = None,
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
        by_body: dict[int, tuple[_Body, list[DeliveryStatus]]] = {}
        for body, status in progress:
            by_body.setdefault(body.id, (body, []))[1].append(status)
        for body, statuses in by_body.values():
            await self._guarded(body, self._commit(services, statuses, None))
        if finish is not None:
            await _with_db_retries(self._commit(services, [], finish))

    def _commit(
        self, services: Services, statuses: list[DeliveryStatus], finish: list[_Body] | None
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

    async def _guarded(self, body: _Body, work: Callable[[], Awaitable[object]]) -> None:
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

    def _writing(self) -> contextlib.AbstractAsyncContextManager[object]:
        """This process's turn to write, on SQLite; PostgreSQL takes writers side by side."""
        return self._turn if self._take_turns else _no_turn()

    def _require(self) -> Services:
        if self._services is None:
            raise RuntimeError("the webhook inbox is not started")
        return self._services


_STORE: Final = insert(WebhookEvent).returning(WebhookEvent.id, WebhookEvent.body)
_MARK_FAILED: Final = (
    update(WebhookEvent)
    .where(WebhookEvent.id == bindparam("eid"))
    .values(processed_at=bindparam("t"), error=bindparam("e"))
)


async def _mark(conn: AsyncConnection, bodies: list[_Body], now: datetime) -> None:
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


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _no_turn() -> contextlib.AbstractAsyncContextManager[object]:
    return contextlib.nullcontext()


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


class GraphMedia:
    """Inbound attachments through the Graph API, refused over the size cap."""

    def __init__(self, graph: GraphClient, max_bytes: int) -> None:
        self.graph = graph
        self.max_bytes = max_bytes

    async def fetch(self, media_id: str) -> bytes:
        try:
            _info, data = await self.graph.fetch_media(media_id, self.max_bytes)
        except MediaTooLargeError as err:
            limit = self.max_bytes / (1024 * 1024)
            raise MediaUnavailable(f"the file is larger than the {limit:g} MB limit") from err
        except WhatsAppError as err:
            raise MediaUnavailable(f"WhatsApp did not hand it over ({err})") from err
        return data


# --- parser events to handler events ----------------------------------------------------


def to_inbound_event(event: wa.Event) -> InboundEvent | None:
    """The handlers' view of a parsed update; None for what only gets logged."""
    if isinstance(event, wa.InboundMessage):
        media = event.media
        return IncomingMessage(
            wamid=event.wamid,
            sender=_identity(event.sender),
            at=event.timestamp,
            kind=event.kind,
            text=event.text or _readable(event.kind, event.raw),
            payload=event.payload,
            media=MediaRef(media.id, media.filename, media.mime_type) if media else None,
            context_wamid=event.context_wamid,
        )
    if isinstance(event, wa.StatusUpdate):
        error = event.errors[0] if event.errors else None
        recipient = None
        if event.recipient is not None or event.recipient_user_id is not None:
            recipient = Identity(event.recipient, event.recipient_user_id)
        return DeliveryStatus(
            wamid=event.wamid,
            status=event.status,
            at=event.timestamp,
            recipient=recipient,
            callback_data=event.callback_data,
            error_code=event.error_codes[0] if event.error_codes else None,
            error_detail=(error.details or error.message or error.title) if error else None,
        )
    if isinstance(event, wa.PreferenceUpdate):
        return PreferenceChange(
            sender=_identity(event.sender),
            category=event.category,
            value=event.value,
            at=event.timestamp,
        )
    if isinstance(event, wa.TemplateStatusUpdate):
        return TemplateReview(
            name=event.template_name,
            language=event.language,
            event=event.event,
            reason=event.reason,
            detail=event.detail,
        )
    return None


def _readable(kind: str, raw: dict[str, Any]) -> str | None:
    """Words for the message kinds the parser leaves without text, for forwarded replies."""
    body = raw.get(kind)
    if kind == "location" and isinstance(body, dict):
        place = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
        where = f"{body.get('latitude')}, {body.get('longitude')}"
        return f"{place} ({where})" if place else where
    if kind == "contacts" and isinstance(body, list):
        names = [
            str(card["name"].get("formatted_name"))
            for card in body
            if isinstance(card, dict)
            and isinstance(card.get("name"), dict)
            and card["name"].get("formatted_name")
        ]
        return ", ".join(names) or None
    return None


def _identity(sender: wa.Sender) -> Identity:
    return Identity(sender.wa_id, sender.user_id, sender.profile_name)


def describe_unhandled(event: wa.Event) -> str:
    """A log line for an update nobody acts on (never the raw payload: it holds numbers)."""
    if isinstance(event, wa.FieldError):
        codes = ", ".join(
            f"{e.code} {e.details or e.message or e.title or ''}".strip() for e in event.errors
        )
        return f"WhatsApp reported errors for the business number: {codes}"
    if isinstance(event, wa.UnknownEvent):
        return f"unknown shape, acknowledged: {event.description}"
    return f"unhandled {type(event).__name__}"


def admin_numbers(settings: Settings) -> frozenset[str]:
    """The admin WhatsApp numbers in E.164.

    A number the phone library doubts but that is written in full international form is
    still taken as written (WhatsApp's ``wa_id`` is exactly those digits); anything else is
    logged and left out.
    """
    found = set()
    for raw in settings.admin_whatsapp_numbers:
        try:
            found.add(normalize_phone(raw, settings.default_region))
        except InvalidPhone as err:
            digits = "".join(ch for ch in raw if ch in "0123456789")
            if raw.strip().startswith("+") and 7 <= len(digits) <= 15:
                found.add("+" + digits)
                log.warning("DRIPBOT_ADMIN_WHATSAPP_NUMBERS: %r taken as written (%s)", raw, err)
            else:
                log.warning("DRIPBOT_ADMIN_WHATSAPP_NUMBERS: ignoring %r (%s)", raw, err)
    return frozenset(found)


# --- routes -----------------------------------------------------------------------------

INBOX: Final = web.AppKey("whatsapp_inbox", Inbox)


def setup_webhook(app: web.Application) -> None:
    """Add the webhook routes and the inbox's lifecycle; ``app[SERVICES]`` must be set by
    an earlier ``cleanup_ctx``."""
    app[INBOX] = Inbox()
    app.router.add_get(PATH, verify_subscription)
    app.router.add_post(PATH, receive)
    app.cleanup_ctx.append(_inbox_lifecycle)


async def _inbox_lifecycle(app: web.Application) -> AsyncIterator[None]:
    inbox = app[INBOX]
    await inbox.start(app[SERVICES])
    try:
        yield
    finally:
        await inbox.stop()


async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's handshake: echo ``hub.challenge`` when the verify token matches."""
    settings = request.app[SERVICES].settings
    expected = settings.whatsapp_verify_token
    query = request.query
    token = query.get("hub.verify_token", "")
    if (
        expected is not None
        and query.get("hub.mode") == "subscribe"
        and hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        return web.Response(text=query.get("hub.challenge", ""))
    return web.Response(status=403, text="verification failed")


async def receive(request: web.Request) -> web.Response:
    """Check, store, answer; processing happens after the answer."""
    inbox = request.app[INBOX]
    services = request.app[SERVICES]
    status, result, text = await _receive(request, inbox, services.settings)
    inbox.stats.received += 1
    if status != 200:
        inbox.stats.refused += 1
    metrics = services.extras.get("metrics")
    if isinstance(metrics, Metrics):
        metrics.webhooks.labels(result=result).inc()
    return web.Response(status=status, text=text)


async def _receive(request: web.Request, inbox: Inbox, settings: Settings) -> tuple[int, str, str]:
    """(HTTP status, result label for /metrics, answer text)."""
    secret = settings.whatsapp_app_secret
    if secret is None:
        inbox.warn_no_secret()
        return 401, "not_configured", "no app secret configured"
    limit = settings.webhook_max_bytes
    raw = await _read_capped(request, limit)
    if raw is None:
        return 413, "too_large", f"body over {limit} bytes"
    if not verify(raw, request.headers.get(SIGNATURE_HEADER), secret.get_secret_value()):
        return 401, "bad_signature", "bad signature"
    try:
        body = raw.decode("utf-8")
        payload = json.loads(body)
    except ValueError:
        return 400, "malformed", "malformed JSON"
    try:
        await inbox.store(body, payload)
    except Exception:
        log.exception("webhook body not stored; Meta will retry it")
        return 503, "not_stored", "not stored, try again"
    return 200, "stored", "OK"


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over ``limit`` bytes (the app's own cap may be
    smaller than Meta's 3 MB, so the stream is read directly)."""
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            return None
        try:
            return await request.content.readexactly(declared)
        except asyncio.IncompleteReadError as err:
            return err.partial  # a short body cannot carry a valid signature
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
