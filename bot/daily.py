"""The daily summary and the minute's alert checks, as plain functions of :class:`Services`.

Several replicas may run the same jobs on one database. Each once-only effect first inserts
a marker row into ``job_runs``; the unique ``(job, run_key)`` lets exactly one process win
(an INSERT that loses raises an integrity error on SQLite and PostgreSQL alike), so a summary
or an alert goes out once whoever runs the job.

Both functions are cheap to call every minute: :func:`send_daily_summary` does nothing before
``DRIPBOT_STATS_TIME`` (local to ``DRIPBOT_TIMEZONE``) or once today's summary went out, and
catches up after a restart that missed the moment. Database errors propagate; the scheduler
job that calls them logs and tries again next time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from bot.alerts import AlertHub
from bot.services import Services
from handlers.formatting import plural
from storage.database import Database
from storage.models import Enrollment, JobRun, OutboundMessage, Sequence
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus, SequenceStatus

log = logging.getLogger(__name__)

SUMMARY_JOB = "daily_summary"
ALERT_JOB = "alert"
#: the share of failed sends in the last hour above which admins hear about it
FAILURE_THRESHOLD = 0.10
#: fewer sends than this in the hour say nothing about a rate
MIN_ATTEMPTS = 10
FAILURE_PERIOD = timedelta(hours=1)
#: trend days in the summary and its chart
SUMMARY_DAYS = 14

M = OutboundMessage
_ACCEPTED = [MessageStatus.SENT.value, MessageStatus.DELIVERED.value, MessageStatus.READ.value]


async def claim_run(db: Database, job: str, run_key: str, now: datetime) -> bool:
    """Insert the once-only marker; True if this process inserted it (and so does the work)."""
    try:
        async with db.engine.begin() as conn:
            await conn.execute(insert(JobRun).values(job=job, run_key=run_key, created_at=now))
    except IntegrityError:
        return False
    return True


async def release_run(db: Database, job: str, run_key: str) -> None:
    """Drop a marker whose work could not be done, so a later run tries again."""
    async with db.engine.begin() as conn:
        await conn.execute(delete(JobRun).where(JobRun.job == job, JobRun.run_key == run_key))


async def has_run(db: Database, job: str, run_key: str) -> bool:
    async with db.engine.connect() as conn:
        found = await conn.execute(
            select(JobRun.id).where(JobRun.job == job, JobRun.run_key == run_key)
        )
        return found.first() is not None


# --- the daily summary -------------------------------------------------------------------


def summary_day(services: Services, now: datetime) -> date | None:
    """The local date whose summary is due at ``now``; None before today's stats time."""
    settings = services.settings
    local = now.astimezone(ZoneInfo(settings.timezone))
    if local.time().replace(tzinfo=None) < settings.stats_at:
        return None
    return local.date()


async def send_daily_summary(services: Services, *, now: datetime | None = None) -> bool:
    """Send today's summary with its chart if it is due and no process sent it yet.

    Returns True if this process sent it. When no admin chat could be reached, the marker
    is dropped again so the next call retries.
    """
    now = now or services.clock.now()
    today = summary_day(services, now)
    if today is None:
        return False
    db = services.db
    run_key = f"{db.workspace_id}:{today.isoformat()}"
    if await has_run(db, SUMMARY_JOB, run_key):
        return False
    hub = services.alerts if isinstance(services.alerts, AlertHub) else None
    if hub is not None and not await _has_recipients(hub):
        return False
    if not await claim_run(db, SUMMARY_JOB, run_key, now):
        return False
    try:
        text, chart = await _summary(services, now, today)
        if hub is None:
            await services.alerts.alert(text, kind="daily_summary")
            return True
        if await hub.broadcast(text, kind="daily_summary", image=chart):
            return True
    except BaseException:
        await release_run(db, SUMMARY_JOB, run_key)
        raise
    await release_run(db, SUMMARY_JOB, run_key)
    log.warning("the daily summary reached no admin chat; trying again at the next run")
    return False


async def _has_recipients(hub: AlertHub) -> bool:
    if hub.telegram_attached and hub.telegram_chats:
        return True
    return bool(await hub.open_whatsapp_admins())


async def _summary(services: Services, now: datetime, today: date) -> tuple[str, bytes | None]:
    # Imported here: charts pull in matplotlib, which only the summary and /stats need.
    from handlers.stats import collect_stats, render_chart, summary_text

    report = await collect_stats(
        services.db, now, days=SUMMARY_DAYS, timezone=services.settings.timezone
    )
    title = f"Daily summary · {today:%a %d %b %Y}"
    text = summary_text(report, title=title, day=today - timedelta(days=1))
    chart = None if report.is_empty else render_chart(report)
    return text, chart


# --- alert conditions --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Finished:
    id: int
    name: str
    completed: int
    total: int


async def check_alerts(services: Services, *, now: datetime | None = None) -> list[str]:
    """Check the conditions the engine cannot see in one send; returns the alerts raised here.

    - a sequence finished by everyone (all its enrollments ended, at least one completed),
      once per sequence;
    - a failure rate over 10 % in the last hour (at least ten attempts), once per hour.

    Skipped steps, a rejected token and a rejected template are raised by the dispatcher
    as they happen.
    """
    now = now or services.clock.now()
    raised: list[str] = []
    for finished in await _finished_sequences(services.db):
        if not await claim_run(services.db, ALERT_JOB, f"finished:{finished.id}", now):
            continue
        text = (
            f"Sequence {finished.name!r} is finished: all {plural(finished.total, 'enrollment')} "
            f"ended, {finished.completed:,} completed every step. /stats {finished.name} "
            "has the figures."
        )
        await services.alerts.alert(text, kind="sequence_finished")
        raised.append(text)
    failure = await _failure_alert(services.db, now)
    if failure is not None:
        hour = now.replace(minute=0, second=0, microsecond=0)
        run_key = f"failure_rate:{services.db.workspace_id}:{hour:%Y-%m-%dT%H}"
        if await claim_run(services.db, ALERT_JOB, run_key, now):
            await services.alerts.alert(failure, kind="failure_rate")
            raised.append(failure)
    return raised


async def _finished_sequences(db: Database) -> list[_Finished]:
    """Non-archived sequences with no live enrollment and a completed one, not yet alerted."""
    live = [s.value for s in LIVE_ENROLLMENT]
    completed = func.sum(case((Enrollment.status == EnrollmentStatus.COMPLETED.value, 1), else_=0))
    still_live = func.sum(case((Enrollment.status.in_(live), 1), else_=0))
    query = (
        select(Sequence.id, Sequence.name, completed.label("completed"), func.count().label("n"))
        .join(Enrollment, Enrollment.sequence_id == Sequence.id)
        .where(
            Sequence.workspace_id == db.workspace_id,
            Sequence.status != SequenceStatus.ARCHIVED.value,
        )
        .group_by(Sequence.id, Sequence.name)
        .having(still_live == 0, completed > 0)
    )
    async with db.engine.connect() as conn:
        alerted = set(
            (
                await conn.execute(
                    select(JobRun.run_key).where(
                        JobRun.job == ALERT_JOB, JobRun.run_key.like("finished:%")
                    )
                )
            ).scalars()
        )
        rows = (await conn.execute(query)).all()
    return [
        _Finished(int(row.id), row.name, int(row.completed or 0), int(row.n))
        for row in rows
        if f"finished:{row.id}" not in alerted
    ]


async def _failure_alert(db: Database, now: datetime) -> str | None:
    """The alert text when over 10 % of the last hour's send attempts failed, else None."""
    since = now - FAILURE_PERIOD
    ws = M.workspace_id == db.workspace_id
    sent_query = select(func.count()).where(
        ws, M.status.in_(_ACCEPTED), M.sent_at > since, M.sent_at <= now
    )
    failed_in_hour = and_(
        ws, M.status == MessageStatus.FAILED.value, M.failed_at > since, M.failed_at <= now
    )
    async with db.engine.connect() as conn:
        sent = int((await conn.execute(sent_query)).scalar_one())
        reasons = (
            await conn.execute(
                select(M.error_detail, func.count().label("n"))
                .where(failed_in_hour)
                .group_by(M.error_detail)
                .order_by(func.count().desc())
            )
        ).all()
    failed = sum(int(row.n) for row in reasons)
    attempts = sent + failed
    if attempts < MIN_ATTEMPTS or failed <= FAILURE_THRESHOLD * attempts:
        return None
    top = reasons[0]
    cause = f" Most often: {top.error_detail or 'no reason given'} ({top.n:,})."
    return (
        f"Failure rate {100 * failed / attempts:.0f}% in the last hour: {failed:,} of "
        f"{attempts:,} sends failed.{cause} See /queue."
    )
