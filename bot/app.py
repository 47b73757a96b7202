"""The application factory: every long-lived resource opened in order, closed in reverse.

Start-up runs the ``cleanup_ctx`` steps top to bottom: the database (migrations first), the
HTTP session and the sender, the :class:`~bot.services.Services` every edge uses, the
dispatcher, then the scheduler that makes it tick. Shutdown walks back up: the scheduler
stops ticking and lets a tick in flight finish before the dispatcher, session and database
go away beneath it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from bot.alerts import AlertHub
from bot.api import setup_api
from bot.config import Settings
from bot.daily import check_alerts, send_daily_summary
from bot.health import setup_health
from bot.jobs import JOBS, start_jobs, stop_jobs
from bot.logs import safe_url
from bot.metrics import Metrics, setup_metrics
from bot.sending import ConsoleSender, GraphSender
from bot.services import SERVICES, Services
from bot.telegram.app import start_telegram, stop_telegram, telegram_routes
from bot.webhook import setup_webhook
from bot.whatsapp.client import GraphClient
from bot.wiring import build_interpreter
from scheduler.clock import Clock, SystemClock
from scheduler.dispatcher import Dispatcher
from scheduler.pacing import Pacer, RandomGap, SharedTokenBucket
from scheduler.ports import MessageSender
from storage.database import Database

log = logging.getLogger(__name__)

#: connections beyond the concurrent sends, for media downloads and look-ups alongside them
SPARE_CONNECTIONS = 8


@dataclass
class _Sending:
    session: aiohttp.ClientSession
    graph: GraphClient | None
    sender: MessageSender


# Resources on their way into Services, held only until the Services step builds it.
_DATABASE: web.AppKey[Database] = web.AppKey("database", Database)
_SENDING: web.AppKey[_Sending] = web.AppKey("sending", _Sending)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    sender: MessageSender | None = None,
) -> web.Application:
    """The whole dripbot server; ``clock`` and ``sender`` replace the real ones in tests."""
    clock = clock or SystemClock()
    app = web.Application(client_max_size=settings.webhook_max_bytes)
    metrics = Metrics()

    async def database(app: web.Application) -> AsyncIterator[None]:
        db = await Database.open(
            settings.database_url, workspace=settings.workspace, now=clock.now()
        )
        log.info(
            "database %s ready (workspace %r)", safe_url(settings.database_url), settings.workspace
        )
        app[_DATABASE] = db
        yield
        await db.close()

    async def http(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=settings.max_concurrent_sends + SPARE_CONNECTIONS)
        session = aiohttp.ClientSession(connector=connector)
        graph: GraphClient | None = None
        chosen = sender
        if settings.whatsapp_configured:
            assert settings.whatsapp_token is not None
            assert settings.whatsapp_phone_number_id is not None
            graph = GraphClient(
                session,
                settings.whatsapp_api_url,
                settings.whatsapp_token.get_secret_value(),
                settings.whatsapp_phone_number_id,
                timeout=settings.whatsapp_timeout_seconds,
            )
            chosen = chosen or GraphSender(graph)
            log.info("sending through the WhatsApp Cloud API at %s", settings.whatsapp_api_url)
        elif chosen is None:
            chosen = ConsoleSender()
            log.warning(_console_warning(settings))
        app[_SENDING] = _Sending(session, graph, chosen)
        yield
        await session.close()

    async def services(app: web.Application) -> AsyncIterator[None]:
        sending = app[_SENDING]
        db = app[_DATABASE]
        hub = AlertHub(settings, db, clock)
        built = Services(
            settings=settings,
            db=db,
            clock=clock,
            options=settings.engine_options(),
            alerts=hub,
            sender=sending.sender,
            http=sending.session,
            graph=sending.graph,
        )
        built.extras["metrics"] = metrics
        # One interpreter for every channel: Telegram, admin WhatsApp numbers.
        built.extras["interpreter"] = build_interpreter(
            settings, db, clock, alerts=hub, locks=built.locks
        )
        app[SERVICES] = built
        yield
        await hub.flush()

    async def telegram(app: web.Application) -> AsyncIterator[None]:
        handle = await start_telegram(app[SERVICES])
        yield
        if handle is not None:
            await stop_telegram(handle)

    async def dispatcher(app: web.Application) -> AsyncIterator[None]:
        services = app[SERVICES]
        services.dispatcher = Dispatcher(
            services.db,
            services.sender,
            services.clock,
            services.options,
            services.alerts,
            locks=services.locks,
            pacer=_pacer(settings, services.db),
            concurrency=settings.max_concurrent_sends,
            on_send=metrics.observe_send,
        )
        yield
        services.dispatcher.stop()

    async def jobs(app: web.Application) -> AsyncIterator[None]:
        services = app[SERVICES]
        assert services.dispatcher is not None
        running = start_jobs(
            settings,
            services.dispatcher,
            services.clock,
            minute_checks=[
                lambda: send_daily_summary(services),
                lambda: check_alerts(services),
            ],
        )
        app[JOBS] = running
        log.info("dispatching every %g s", settings.tick_seconds)
        yield
        await stop_jobs(running)

    app.cleanup_ctx.extend([database, http, services, telegram, dispatcher, jobs])
    setup_health(app)
    setup_metrics(app)
    setup_webhook(app)
    setup_api(app)
    app.add_routes(telegram_routes())
    return app


def _pacer(settings: Settings, db: Database) -> Pacer:
    """Meta's per-number rate, shared by every process on the database; or a human gap."""
    options = settings.engine_options()
    if options.pacing is not None:
        return RandomGap(*options.pacing)
    sender = settings.whatsapp_phone_number_id or "console"
    return SharedTokenBucket(db, f"send:{sender}", settings.rate_per_second, clock=SystemClock())


def _console_warning(settings: Settings) -> str:
    missing = [
        name
        for name, value in (
            ("DRIPBOT_WHATSAPP_TOKEN", settings.whatsapp_token),
            ("DRIPBOT_WHATSAPP_PHONE_NUMBER_ID", settings.whatsapp_phone_number_id),
        )
        if not value
    ]
    return (
        f"WhatsApp is not configured ({' and '.join(missing)} not set): using the console "
        "provider. Messages are printed to standard output and recorded as sent, marked "
        "dry-run; nothing reaches WhatsApp."
    )
