"""A ``failed`` status and what its error code means: an opt-out, an undeliverable number, a
day's deferral, the step's fallback template, a paused step or paused sending.

Failures are rare and have consequences, so each is applied on its own, in the transaction
that moves the message into ``failed``: a replay finds the message failed already, and the
consequence happens once.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime
from typing import Any, Final

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from handlers.events import DeliveryStatus
from handlers.optout import OptOutSource, apply_opt_out, contact_label, opt_out_alert
from handlers.status_moves import may_move_to
from scheduler.contact_locks import ContactLocks
from scheduler.policy import DEFAULT_POLICY, Action, Rejected, RetryPolicy, decide, describe
from scheduler.ports import Alerts, message_id_from_callback
from scheduler.sequence_records import sequence_name_of_step
from scheduler.sequence_status import shift_pending
from storage.database import Database
from storage.flags import SENDING_PAUSED, set_flag
from storage.models import Contact, Enrollment, OutboundMessage, Step
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus

log = logging.getLogger(__name__)

M = OutboundMessage
_S = MessageStatus
_DETAIL_LIMIT: Final = 500


def _key(status: DeliveryStatus) -> list[ColumnElement[bool]]:
    mid = message_id_from_callback(status.callback_data)
    if mid is None:
        return [M.wamid == status.wamid]
    return [M.id == mid, or_(M.wamid.is_(None), M.wamid == status.wamid)]


def failure_detail(status: DeliveryStatus) -> str:
    """The code's meaning, then Meta's own words when they add something."""
    detail = describe(status.error_code, status.error_detail or "failed without a reason")
    extra = status.error_detail
    if extra and extra.lower() not in detail.lower():
        detail = f"{detail} ({extra})"
    return detail[:_DETAIL_LIMIT]


async def apply_failure(
    db: Database,
    status: DeliveryStatus,
    *,
    now: datetime,
    alerts: Alerts,
    locks: ContactLocks,
    policy: RetryPolicy = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> None:
    """Move one message into ``failed`` and carry out what its code means, once."""
    rng = rng or random.Random()
    async with db.engine.connect() as conn:
        found = (await conn.execute(select(M.id, M.contact_id).where(*_key(status)))).first()
    if found is None:
        log.debug("failed status for an unknown message %s", status.wamid)
        return
    detail = failure_detail(status)
    rejected = Rejected(status.error_code, detail)
    opting_out = decide(rejected, 1, now, rng, policy).action is Action.OPT_OUT
    messages: list[tuple[str, str]] = []
    if opting_out:
        # Like any opt-out: commit under the contact's send lock, so no send follows it.
        async with locks.hold(found.contact_id), db.engine.begin() as conn:
            await _fail(conn, db, found.id, status, detail, rejected, now, policy, rng, messages)
    else:
        async with db.engine.begin() as conn:
            await _fail(conn, db, found.id, status, detail, rejected, now, policy, rng, messages)
    for kind, text in messages:
        await alerts.alert(text, kind=kind)


async def _fail(
    conn: AsyncConnection,
    db: Database,
    message_id: int,
    status: DeliveryStatus,
    detail: str,
    rejected: Rejected,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
    alerts: list[tuple[str, str]],
) -> None:
    """Move one message into ``failed`` and carry out what its error code means."""
    row = (
        await conn.execute(
            update(M)
            .where(M.id == message_id, *_key(status), may_move_to(_S.FAILED))
            .values(
                status=_S.FAILED.value,
                wamid=func.coalesce(M.wamid, status.wamid),
                failed_at=status.at,
                error_code=status.error_code,
                error_detail=detail,
                lease_until=None,
                updated_at=now,
            )
            .returning(
                M.id,
                M.contact_id,
                M.enrollment_id,
                M.sequence_id,
                M.step_id,
                M.purpose,
                M.payload,
                M.attempts,
            )
        )
    ).first()
    if row is None:
        return  # already failed, or further along: a replay or a late status
    decision = decide(rejected, max(1, row.attempts), now, rng, policy)
    action = decision.action
    who = await _who(conn, row.contact_id)
    if action is Action.OPT_OUT:
        source = OptOutSource.ERROR_131050
        if await apply_opt_out(
            conn, db.workspace_id, row.contact_id, source=source, now=now, confirm=False
        ):
            alerts.append(("opt_out", opt_out_alert(who, source)))
    elif action is Action.UNDELIVERABLE:
        await conn.execute(
            update(Contact)
            .where(Contact.id == row.contact_id, Contact.undeliverable_at.is_(None))
            .values(undeliverable_at=now, updated_at=now)
        )
    elif action is Action.DEFER_DAY and _is_drip(row):
        if await _keep_enrollment(conn, row.enrollment_id):
            at = decision.at or now + policy.defer
            # Later steps first, so the shift does not catch the row added below.
            await shift_pending(conn, policy.defer, now=now, contact_id=row.contact_id, after=now)
            await _requeue(
                conn,
                db.workspace_id,
                row,
                now=now,
                due=at,
                deferred_reason=f"{decision.reason}; deferred to {at:%Y-%m-%d %H:%M} UTC",
            )
    elif action is Action.USE_FALLBACK_OR_SKIP and _is_drip(row):
        await _fallback_or_skip(conn, db.workspace_id, row, decision.reason, now, alerts)
    elif action is Action.PAUSE_STEP and row.step_id is not None:
        paused = await conn.execute(
            update(Step)
            .where(Step.id == row.step_id, Step.paused_at.is_(None))
            .values(paused_at=now, pause_reason=decision.reason)
        )
        if paused.rowcount:
            name = await sequence_name_of_step(conn, row.step_id)
            alerts.append(
                (
                    "template_rejected",
                    f"Template rejected ({decision.reason}): a step of {name!r} is paused "
                    f"until /resume {name}",
                )
            )
    elif action is Action.PAUSE_ALL:
        value = {"reason": decision.reason, "at": now.isoformat()}
        if await set_flag(conn, db.workspace_id, SENDING_PAUSED, value, now):
            alerts.append(
                (
                    "sending_paused",
                    f"Sending paused: {decision.reason}. Fix the WhatsApp account, then send "
                    "/resume sending.",
                )
            )


def _is_drip(row: Any) -> bool:
    return bool(row.purpose == "drip" and row.step_id is not None and row.enrollment_id)


async def _keep_enrollment(conn: AsyncConnection, enrollment_id: int) -> bool:
    """Whether the enrollment can take one more message, reopening it if this failed message
    was what completed it. A stopped or opted-out enrollment stays ended."""
    row = (
        await conn.execute(
            select(Enrollment.status, Enrollment.sequence_id, Enrollment.contact_id).where(
                Enrollment.id == enrollment_id
            )
        )
    ).first()
    if row is None:
        return False
    if row.status in LIVE_ENROLLMENT:
        return True
    if row.status != EnrollmentStatus.COMPLETED:
        return False
    other_live = await conn.execute(
        select(
            exists().where(
                Enrollment.sequence_id == row.sequence_id,
                Enrollment.contact_id == row.contact_id,
                Enrollment.status.in_([s.value for s in LIVE_ENROLLMENT]),
            )
        )
    )
    if other_live.scalar():
        return False
    await conn.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, Enrollment.status == EnrollmentStatus.COMPLETED)
        .values(status=EnrollmentStatus.ACTIVE.value, completed_at=None)
    )
    return True


async def _requeue(
    conn: AsyncConnection,
    workspace_id: int,
    row: Any,
    *,
    now: datetime,
    due: datetime,
    deferred_reason: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """A new outbox record for the same step; attempts carry over, so the retry limit of
    the policy counts across them."""
    await conn.execute(
        insert(M).values(
            workspace_id=workspace_id,
            contact_id=row.contact_id,
            enrollment_id=row.enrollment_id,
            sequence_id=row.sequence_id,
            step_id=row.step_id,
            purpose=row.purpose,
            status=_S.SCHEDULED.value,
            due_at=due,
            attempts=row.attempts,
            payload=payload,
            deferred_reason=deferred_reason,
            dry_run=False,
            business_initiated=False,
            created_at=now,
            updated_at=now,
        )
    )


async def _fallback_or_skip(
    conn: AsyncConnection,
    workspace_id: int,
    row: Any,
    reason: str,
    now: datetime,
    alerts: list[tuple[str, str]],
) -> None:
    """131047: the window closed after all. Send the step's fallback template, once."""
    fallback = (
        await conn.execute(select(Step.fallback_template).where(Step.id == row.step_id))
    ).scalar_one_or_none()
    sent = row.payload or {}
    already_template = sent.get("kind") == "template" or bool(sent.get("fallback"))
    if fallback and not already_template and await _keep_enrollment(conn, row.enrollment_id):
        await _requeue(conn, workspace_id, row, now=now, due=now, payload={"use_fallback": True})
        return
    await conn.execute(
        update(M)
        .where(M.id == row.id)
        .values(error_detail=f"{reason}; step skipped: no fallback template")
    )
    flagged = await conn.execute(
        update(Step)
        .where(Step.id == row.step_id, Step.skip_alerted_at.is_(None))
        .values(skip_alerted_at=now)
    )
    if flagged.rowcount:
        name = await sequence_name_of_step(conn, row.step_id)
        alerts.append(
            (
                "skipped",
                f"Skipped a step of {name!r}: {reason}. Add a fallback template with "
                "/editstep so leads who have not written recently still get it.",
            )
        )


async def _who(conn: AsyncConnection, contact_id: int) -> str:
    row = (
        await conn.execute(
            select(Contact.phone, Contact.user_id, Contact.name).where(Contact.id == contact_id)
        )
    ).first()
    if row is None:
        return f"contact {contact_id}"
    return contact_label(contact_id, row.phone, row.user_id, row.name, full=False)
