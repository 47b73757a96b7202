"""``GET /healthz``: can this process do its job right now?

Healthy means the database answers, the scheduler runs, and the dispatcher has ticked
recently (or is in the middle of a tick: draining a backlog at a paced rate can take
minutes). Sending paused by Meta (190/368) is reported but stays 200: a restart would not
fix it, an admin's ``/resume`` does.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from bot.jobs import JOBS, Jobs
from bot.services import SERVICES, Services
from storage.flags import SENDING_PAUSED, get_flag
from storage.outbox import queue_depth

log = logging.getLogger(__name__)

#: how long the database may take to answer ``SELECT 1``
DATABASE_TIMEOUT = 5.0
#: a tick older than this many tick intervals (and at least STALE_MIN_SECONDS) is stale
STALE_TICKS = 10
STALE_MIN_SECONDS = 60.0


@dataclass
class Health:
    database: bool = False
    scheduler: bool = False
    tick_running: bool = False
    last_tick_age_seconds: float | None = None
    queue_depth: int | None = None
    sending_paused: bool | None = None
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"status": "ok" if self.ok else "unhealthy"} | asdict(self)


def stale_after(tick_seconds: float) -> float:
    return max(STALE_MIN_SECONDS, STALE_TICKS * tick_seconds)


async def check_health(services: Services, jobs: Jobs) -> Health:
    health = Health(dry_run=services.sender.dry_run)
    now = services.clock.now()
    db = services.db
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT), db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            health.database = True
            health.queue_depth = await queue_depth(conn, db.workspace_id, now)
            health.sending_paused = (
                await get_flag(conn, db.workspace_id, SENDING_PAUSED) is not None
            )
    except (SQLAlchemyError, OSError, TimeoutError) as err:
        log.warning("health: database check failed: %s", err)
        health.database = False
        health.problems.append(f"database unreachable: {type(err).__name__}")
    health.scheduler = jobs.running
    if not health.scheduler:
        health.problems.append("scheduler not running")
    health.tick_running = jobs.tick.running
    dispatcher = services.dispatcher
    last_tick = dispatcher.last_tick if dispatcher is not None else None
    if last_tick is not None:
        health.last_tick_age_seconds = round((now - last_tick).total_seconds(), 3)
    since = last_tick or jobs.started_at
    limit = stale_after(services.settings.tick_seconds)
    if not health.tick_running and (now - since).total_seconds() > limit:
        health.problems.append(f"no dispatch tick for more than {limit:.0f} s")
    return health


async def healthz(request: web.Request) -> web.Response:
    health = await check_health(request.app[SERVICES], request.app[JOBS])
    return web.json_response(health.to_json(), status=200 if health.ok else 503)


def setup_health(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
