"""Prometheus metrics for ``GET /metrics``.

Each application has its own registry (not the process-wide default), so several apps can
live in one process, as they do in tests. Counts that live in the database (messages by
state, queue depth) are read at scrape time; what only the process knows (send latency,
webhook deliveries) is counted as it happens.
"""

from __future__ import annotations

import logging
from datetime import datetime

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.services import SERVICES, Services
from storage.database import Database
from storage.models import OutboundMessage
from storage.outbox import queue_depth
from storage.states import MessageStatus

log = logging.getLogger(__name__)

#: Graph API answers take tens to hundreds of milliseconds; a slow one several seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


class Metrics:
    """The application's metrics; other modules count through these attributes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Gauge(
            "dripbot_messages",
            "Outbound messages by state",
            ["state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "dripbot_queue_depth",
            "Messages due now and not yet sent",
            registry=self.registry,
        )
        self.send_latency = Histogram(
            "dripbot_send_latency_seconds",
            "Time from request to answer for one send, by result",
            ["result"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        #: incremented by the WhatsApp webhook: ``metrics.webhooks.labels(result=...).inc()``
        self.webhooks = Counter(
            "dripbot_webhooks",
            "WhatsApp webhook deliveries by result",
            ["result"],
            registry=self.registry,
        )
        self.database_up = Gauge(
            "dripbot_database_up",
            "1 when the last scrape could read the database",
            registry=self.registry,
        )
        self.last_tick = Gauge(
            "dripbot_last_tick_timestamp_seconds",
            "When the dispatcher last finished a tick (Unix time)",
            registry=self.registry,
        )
        for state in MessageStatus:
            self.messages.labels(state=state.value)

    def observe_send(self, seconds: float, accepted: bool) -> None:
        """The dispatcher's ``on_send`` callback."""
        self.send_latency.labels(result="accepted" if accepted else "rejected").observe(seconds)

    async def refresh(self, db: Database, now: datetime) -> None:
        """Read the database-held counts; on failure the last values stay and ``up`` says 0."""
        statement = (
            select(OutboundMessage.status, func.count())
            .where(OutboundMessage.workspace_id == db.workspace_id)
            .group_by(OutboundMessage.status)
        )
        try:
            async with db.engine.connect() as conn:
                counts = {str(status): int(n) for status, n in await conn.execute(statement)}
                depth = await queue_depth(conn, db.workspace_id, now)
        except (SQLAlchemyError, OSError) as err:
            log.warning("metrics: could not read the database: %s", err)
            self.database_up.set(0)
            return
        self.database_up.set(1)
        for state in MessageStatus:
            self.messages.labels(state=state.value).set(counts.get(state.value, 0))
        self.queue_depth.set(depth)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_of(services: Services) -> Metrics:
    """The application's :class:`Metrics` (kept in ``services.extras["metrics"]``)."""
    metrics = services.extras["metrics"]
    assert isinstance(metrics, Metrics)
    return metrics


async def metrics_view(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    metrics = metrics_of(services)
    await metrics.refresh(services.db, services.clock.now())
    if services.dispatcher is not None and services.dispatcher.last_tick is not None:
        metrics.last_tick.set(services.dispatcher.last_tick.timestamp())
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_metrics(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics_view)
