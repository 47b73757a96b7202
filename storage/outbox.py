"""The outbox's hot queries: claiming due messages and writing back what happened.

Claiming is one conditional UPDATE that works on both backends. On PostgreSQL the inner
SELECT takes ``FOR UPDATE SKIP LOCKED`` so several processes share the work; on SQLite that
clause compiles to nothing and the outer status guard keeps two claims apart.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step
from storage.states import ACCEPTED, EnrollmentStatus, MessageStatus

M = OutboundMessage
_SCHEDULED = MessageStatus.SCHEDULED.value
_SENDING = MessageStatus.SENDING.value


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    contact_id: int
    enrollment_id: int | None
    sequence_id: int | None
    step_id: int | None
    purpose: str
    attempts: int
    due_at: datetime
    payload: dict[str, Any] | None
    #: True when the row was reclaimed after its lease ran out (its first send is in doubt)
    reclaimed: bool


def _sendable(now: datetime) -> list[Any]:
    """What must hold for a message to go out now, beyond being due."""
    return [
        # An opt-out stops everything except its own confirmation, queued with it.
        or_(
            Contact.opted_out_at.is_(None),
            and_(M.purpose == "notice", M.created_at >= Contact.opted_out_at),
        ),
        Contact.paused_at.is_(None),
        or_(Contact.hold_until.is_(None), Contact.hold_until <= now, M.purpose != "drip"),
        or_(M.enrollment_id.is_(None), Enrollment.status == EnrollmentStatus.ACTIVE.value),
        or_(M.sequence_id.is_(None), Sequence.status == "active", M.purpose != "drip"),
        or_(M.step_id.is_(None), Step.paused_at.is_(None), M.purpose != "drip"),
    ]


async def claim(
    conn: AsyncConnection,
    workspace_id: int,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
) -> list[Claimed]:
    """Move up to ``limit`` due messages to ``sending`` and return them, oldest first.

    Rows left in ``sending`` whose lease ran out (a crash, a lost answer) are reclaimed first:
    they waited their lease for a status webhook to settle them and none came.
    """
    claimed = await _claim(conn, workspace_id, now=now, limit=limit, lease=lease, reclaim=True)
    if len(claimed) < limit:
        claimed += await _claim(
            conn, workspace_id, now=now, limit=limit - len(claimed), lease=lease, reclaim=False
        )
    return claimed


async def _claim(
    conn: AsyncConnection,
    workspace_id: int,
    *,
    now: datetime,
    limit: int,
    lease: timedelta,
    reclaim: bool,
) -> list[Claimed]:
    if reclaim:
        state = and_(M.status == _SENDING, M.lease_until <= now)
        order = M.lease_until
    else:
        state = and_(M.status == _SCHEDULED, M.due_at <= now)
        order = M.due_at
    candidates = select(M.id).where(M.workspace_id == workspace_id, state)
    if not reclaim:
        # Reclaimed rows skip these filters: the sender re-checks each one and cancels or
        # reschedules it, so nothing is left in "sending" for ever.
        candidates = (
            candidates.join(Contact, Contact.id == M.contact_id)
            .outerjoin(Enrollment, Enrollment.id == M.enrollment_id)
            .outerjoin(Sequence, Sequence.id == M.sequence_id)
            .outerjoin(Step, Step.id == M.step_id)
            .where(*_sendable(now))
        )
    candidates = (
        candidates.order_by(order, M.id).limit(limit).with_for_update(of=M, skip_locked=True)
    )
    statement = (
        update(M)
        .where(M.id.in_(candidates.scalar_subquery()), state)
        .values(
            status=_SENDING,
            lease_until=now + lease,
            attempts=M.attempts + 1,
            updated_at=now,
        )
        .returning(
            M.id,
            M.contact_id,
            M.enrollment_id,
            M.sequence_id,
            M.step_id,
            M.purpose,
            M.attempts,
            M.due_at,
            M.payload,
        )
    )
    rows = (await conn.execute(statement)).all()
    claimed = [Claimed(*row, reclaimed=reclaim) for row in rows]
    claimed.sort(key=lambda c: (c.due_at, c.id))
    return claimed


#: every column a finished send may change; each result row gives all of them
_RESULT_COLUMNS = (
    "status",
    "due_at",
    "wamid",
    "sent_at",
    "failed_at",
    "error_code",
    "error_detail",
    "deferred_reason",
    "payload",
    "dry_run",
    "business_initiated",
    "lease_until",
    "attempts",
)


async def record_results(
    conn: AsyncConnection, results: Seq[dict[str, Any]], *, now: datetime
) -> int:
    """Write back a batch of outcomes in one statement.

    Each dict has ``id`` plus every key of ``_RESULT_COLUMNS``. The ``status = 'sending'``
    guard means a status webhook that settled the row meanwhile is never overwritten.
    """
    if not results:
        return 0
    statement = (
        update(M)
        .where(M.id == bindparam("mid"), M.status == _SENDING)
        .values(
            {column: bindparam(f"r_{column}") for column in _RESULT_COLUMNS}
            | {"updated_at": bindparam("r_updated_at")}
        )
    )
    params = [
        {"mid": r["id"], "r_updated_at": now} | {f"r_{c}": r[c] for c in _RESULT_COLUMNS}
        for r in results
    ]
    result = await conn.execute(statement, params)
    accepted = [r for r in results if r["status"] == MessageStatus.SENT.value]
    if accepted:
        # A status webhook can settle a send before its batch is written back; the row then
        # has moved on, and only what the webhook could not know is filled in.
        await conn.execute(
            update(M)
            .where(
                M.id == bindparam("mid"),
                or_(*(M.status == s.value for s in ACCEPTED)),
                M.payload.is_(None),
            )
            .values(
                wamid=func.coalesce(M.wamid, bindparam("r_wamid")),
                sent_at=func.coalesce(M.sent_at, bindparam("r_sent_at")),
                payload=bindparam("r_payload"),
                dry_run=bindparam("r_dry_run"),
                business_initiated=bindparam("r_business_initiated"),
                lease_until=None,
                updated_at=bindparam("r_updated_at"),
            ),
            [
                {
                    "mid": r["id"],
                    "r_wamid": r["wamid"],
                    "r_sent_at": r["sent_at"],
                    "r_payload": r["payload"],
                    "r_dry_run": r["dry_run"],
                    "r_business_initiated": r["business_initiated"],
                    "r_updated_at": now,
                }
                for r in accepted
            ],
        )
    return int(result.rowcount or 0)


async def complete_enrollments(
    conn: AsyncConnection, enrollment_ids: Seq[int], *, now: datetime
) -> list[int]:
    """Mark finished the enrollments among these that have nothing left to send."""
    if not enrollment_ids:
        return []
    pending = exists().where(M.enrollment_id == Enrollment.id, M.status.in_([_SCHEDULED, _SENDING]))
    done = list(
        (
            await conn.execute(
                select(Enrollment.id).where(
                    Enrollment.id.in_(list(enrollment_ids)),
                    Enrollment.status == EnrollmentStatus.ACTIVE.value,
                    ~pending,
                )
            )
        ).scalars()
    )
    if done:
        await conn.execute(
            update(Enrollment)
            .where(Enrollment.id.in_(done), Enrollment.status == EnrollmentStatus.ACTIVE.value)
            .values(status=EnrollmentStatus.COMPLETED.value, completed_at=now)
        )
    return done


async def queue_depth(conn: AsyncConnection, workspace_id: int, now: datetime) -> int:
    """Messages due now and not yet sent (for /healthz, /metrics and /queue)."""
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(M)
                .where(M.workspace_id == workspace_id, M.status == _SCHEDULED, M.due_at <= now)
            )
        ).scalar_one()
    )


async def renew_leases(conn: AsyncConnection, workspace_id: int, *, until: datetime) -> int:
    """Extend to ``until`` the lease of every send in doubt whose lease ends earlier."""
    result = await conn.execute(
        update(M)
        .where(M.workspace_id == workspace_id, M.status == _SENDING, M.lease_until < until)
        .values(lease_until=until)
    )
    return int(result.rowcount or 0)
