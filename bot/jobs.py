"""The APScheduler jobs: the dispatch tick, and a minute job for the daily summary and alerts.

The database holds the schedule; APScheduler only says "look now". One interval job calls the
dispatcher, never one job per message. A failing tick (the database briefly gone) is logged
and the next one tries again: the job itself never dies.

Shutdown lets a tick in flight finish, so messages already sent get recorded. A tick that does
not finish within the grace period is cancelled; its messages stay ``sending`` with a lease
and are retried (or settled by a status webhook) after the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from bot.config import Settings
from scheduler.clock import Clock, SystemClock
from scheduler.dispatcher import Dispatcher
from storage.database import UNAVAILABLE

log = logging.getLogger(__name__)

TICK_JOB_ID = "dispatch-tick"
MINUTE_JOB_ID = "minute-checks"
#: the daily summary's and the alert conditions' cadence (spec: checked every minute)
MINUTE_SECONDS = 60.0
#: how long shutdown waits for a tick in flight before cancelling it
SHUTDOWN_GRACE = 10.0


class _SkippedTickFilter(logging.Filter):
    """A tick still running when the next one is due is normal (a long backlog), not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_SKIPPED_TICK_FILTER = _SkippedTickFilter()


class TickJob:
    """Runs :meth:`Dispatcher.tick` for the scheduler and knows whether one is in flight."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        #: ticks finished (failed ones included) and ticks that failed
        self.runs = 0
        self.failures = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[object] | None = None

    @property
    def running(self) -> bool:
        return not self._idle.is_set()

    async def run(self) -> None:
        self._idle.clear()
        self._task = asyncio.current_task()
        try:
            await self.dispatcher.tick()
        except UNAVAILABLE as err:
            # The database is away (restart, network): one line a tick, not a traceback.
            self.failures += 1
            log.warning("dispatch tick: database unavailable (%s); retrying", type(err).__name__)
        except Exception:
            self.failures += 1
            log.exception("dispatch tick failed; the next tick tries again")
        finally:
            self.runs += 1
            self._task = None
            self._idle.set()

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until no tick is in flight; False if one still is after ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


@dataclass
class Jobs:
    scheduler: AsyncIOScheduler
    tick: TickJob
    #: when the jobs started (the app clock), so health can judge a first tick still to come
    started_at: datetime

    @property
    def running(self) -> bool:
        return bool(self.scheduler.state == STATE_RUNNING)


JOBS: web.AppKey[Jobs] = web.AppKey("jobs", Jobs)


class MinuteJob:
    """Runs each once-a-minute check in turn; one failing never stops the others."""

    def __init__(self, checks: Sequence[Callable[[], Awaitable[object]]]) -> None:
        self.checks = list(checks)
        self.runs = 0

    async def run(self) -> None:
        for check in self.checks:
            try:
                await check()
            except Exception:
                log.exception("periodic check %s failed; it runs again next minute", check)
        self.runs += 1


def start_jobs(
    settings: Settings,
    dispatcher: Dispatcher,
    clock: Clock,
    minute_checks: Sequence[Callable[[], Awaitable[object]]] = (),
) -> Jobs:
    """Start the scheduler; the first tick runs at once, so overdue steps go out at start."""
    logging.getLogger("apscheduler.scheduler").addFilter(_SKIPPED_TICK_FILTER)
    scheduler = AsyncIOScheduler(timezone=UTC)
    tick = TickJob(dispatcher)
    scheduler.add_job(
        tick.run,
        "interval",
        seconds=settings.tick_seconds,
        id=TICK_JOB_ID,
        name="dispatch tick",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
        # APScheduler fires on the wall clock whatever clock the engine is given.
        next_run_time=SystemClock().now(),
    )
    if minute_checks:
        scheduler.add_job(
            MinuteJob(minute_checks).run,
            "interval",
            seconds=MINUTE_SECONDS,
            id=MINUTE_JOB_ID,
            name="daily summary and alert checks",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            next_run_time=SystemClock().now(),
        )
    scheduler.start()
    return Jobs(scheduler, tick, clock.now())


async def stop_jobs(jobs: Jobs, grace: float = SHUTDOWN_GRACE) -> None:
    """Stop ticking, let a tick in flight finish (bounded), then shut the scheduler down."""
    jobs.scheduler.pause()
    jobs.tick.dispatcher.stop()
    # A run the scheduler has just submitted starts now and, the dispatcher being stopped,
    # returns at once instead of being cancelled below.
    await asyncio.sleep(0)
    if not await jobs.tick.wait_idle(grace):
        log.warning(
            "a dispatch tick still runs after %.0f s; stopping it (its messages stay 'sending' "
            "and are retried after the send lease)",
            grace,
        )
        jobs.tick.cancel()
        await jobs.tick.wait_idle(grace)
    jobs.scheduler.shutdown(wait=False)
    # AsyncIOScheduler completes its shutdown in a callback on the next turn of the loop.
    await asyncio.sleep(0)
