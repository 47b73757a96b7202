"""Delivery statuses and template reviews: what WhatsApp says happened to what we sent.

Statuses come three to a message, in batches, out of order and more than once, so applying
one is a guarded UPDATE that moves a message only forward (:mod:`storage.states`): a repeated
or late status matches no row and changes nothing, on every replay and after restarts.
``sent``, ``delivered`` and ``read`` are applied for a whole batch in a handful of statements.
A ``failed`` status is rarer and may have consequences (opt-out, deferral, fallback); each
runs in the transaction that moves the message into ``failed``, so they happen once: a replay
finds the message failed already and does nothing.

A status names its message by WhatsApp id, and by our outbox id in the callback data
(``dripbot:<id>``). The callback wins: it also settles a send whose answer was lost (the
record still ``sending``, without a WhatsApp id), which then takes the id from the status.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    Update,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from handlers.events import DeliveryStatus, TemplateReview
from handlers.optout import OptOutSource, apply_opt_out, contact_label, opt_out_alert
from scheduler.contact_locks import ContactLocks
from scheduler.policy import DEFAULT_POLICY, Action, Rejected, RetryPolicy, decide, describe
from scheduler.ports import Alerts, message_id_from_callback
from scheduler.sequences import sequence_name_of_step, shift_pending
from storage.database import Database
from storage.flags import SENDING_PAUSED, set_flag
from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step
from storage.outbox import complete_enrollments
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus, can_move

log = logging.getLogger(__name__)

M = OutboundMessage
_S = MessageStatus
#: the statuses that only move a message forward, in the order that makes "latest wins"
PROGRESS: Final = (_S.SENT, _S.DELIVERED, _S.READ)
#: the instants each progress status fills in (read implies delivered implies sent)
_STAMPS: Final = {
    _S.SENT: ("sent_at",),
    _S.DELIVERED: ("sent_at", "delivered_at"),
    _S.READ: ("sent_at", "delivered_at", "read_at"),
}
#: template review events that stop a step from being sent
_BLOCKING_REVIEWS: Final = frozenset({"REJECTED", "DISABLED", "PAUSED"})
_DETAIL_LIMIT: Final = 500


def sources_of(target: MessageStatus) -> list[str]:
    """Every state a message may move to ``target`` from."""
    return [s.value for s in MessageStatus if can_move(s, target)]


def _may_move_to(target: MessageStatus) -> ColumnElement[bool]:
    """``status IN (...)`` written out as constants: an expanding parameter list cannot be
    part of a statement executed for many rows at once."""
    return M.status.in_([literal_column(f"'{source}'") for source in sources_of(target)])


@dataclass
class StatusSummary:
    progressed: int = 0
    failed: int = 0
    ignored: int = 0


# --- progress (sent, delivered, read) ---------------------------------------------------


def _progress_statement(target: MessageStatus, *, by_id: bool) -> Update:
    values: dict[str, Any] = {
        "status": target.value,
        "lease_until": None,
        "updated_at": bindparam("now"),
    }
    for column in _STAMPS[target]:
        values[column] = func.coalesce(getattr(M, column), bindparam("at"))
    conditions: list[ColumnElement[bool]] = [_may_move_to(target)]
    if by_id:
        # The callback names the record; the WhatsApp id must agree if the record has one.
        conditions += [
            M.id == bindparam("mid"),
            or_(M.wamid.is_(None), M.wamid == bindparam("w")),
        ]
        values["wamid"] = func.coalesce(M.wamid, bindparam("w"))
    else:
        conditions.append(M.wamid == bindparam("w"))
    return update(M).where(*conditions).values(values)


_BY_ID: Final = {target: _progress_statement(target, by_id=True) for target in PROGRESS}
_BY_WAMID: Final = {target: _progress_statement(target, by_id=False) for target in PROGRESS}


def _target(status: DeliveryStatus) -> MessageStatus | None:
    try:
        target = MessageStatus(status.status)
    except ValueError:
        return None
    return target if target in PROGRESS or target is _S.FAILED else None


def is_failure(status: DeliveryStatus) -> bool:
    return _target(status) is _S.FAILED


async def apply_statuses(
    db: Database,
    statuses: Seq[DeliveryStatus],
    *,
    now: datetime,
    alerts: Alerts,
    locks: ContactLocks,
    policy: RetryPolicy = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> StatusSummary:
    """Apply a batch of statuses; duplicates, late ones and unknown messages change nothing.

    Progress is applied first, in one transaction, then each failure in its own.
    """
    failures = [s for s in statuses if is_failure(s)]
    progress = [s for s in statuses if not is_failure(s)]
    summary = StatusSummary()
    if progress:
        async with db.engine.begin() as conn:
            summary = await apply_progress(conn, progress, now=now)
    chooser = rng or random.Random()
    for status in failures:
        summary.failed += 1
        await apply_failure(
            db, status, now=now, alerts=alerts, locks=locks, policy=policy, rng=chooser
        )
    return summary


async def apply_progress(
    conn: AsyncConnection, statuses: Seq[DeliveryStatus], *, now: datetime
) -> StatusSummary:
    """``sent``, ``delivered`` and ``read`` for many messages, in the caller's transaction, in
    a handful of statements. Anything else is counted as ignored."""
    summary = StatusSummary()
    by_id: dict[MessageStatus, dict[tuple[int, str], dict[str, Any]]] = {t: {} for t in PROGRESS}
    by_wamid: dict[MessageStatus, dict[str, dict[str, Any]]] = {t: {} for t in PROGRESS}
    for status in statuses:
        target = _target(status)
        if target is None or target is _S.FAILED:
            summary.ignored += 1
            continue
        summary.progressed += 1
        mid = message_id_from_callback(status.callback_data)
        params = {"w": status.wamid, "at": status.at, "now": now}
        if mid is not None:
            by_id[target].setdefault((mid, status.wamid), params | {"mid": mid})
        else:
            by_wamid[target].setdefault(status.wamid, params)
    # Ascending targets: whatever the arrival order, a message ends at the latest.
    for target in PROGRESS:
        if by_id[target]:
            await conn.execute(_BY_ID[target], list(by_id[target].values()))
        if by_wamid[target]:
            await conn.execute(_BY_WAMID[target], list(by_wamid[target].values()))
    settled = sorted({mid for target in PROGRESS for mid, _ in by_id[target]})
    if settled:
        # A send settled here may have been the enrollment's last one in doubt.
        enrollment_ids = (
            await conn.execute(
                select(M.enrollment_id).where(M.id.in_(settled), M.enrollment_id.is_not(None))
            )
        ).scalars()
        await complete_enrollments(conn, sorted({e for e in enrollment_ids if e}), now=now)
    return summary


# --- failures ---------------------------------------------------------------------------


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
            .where(M.id == message_id, *_key(status), _may_move_to(_S.FAILED))
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


# --- template reviews -------------------------------------------------------------------


async def apply_template_review(
    db: Database, review: TemplateReview, *, now: datetime, alerts: Alerts
) -> int:
    """Tell the admins; a rejected, paused or disabled template pauses the steps sending it
    (until ``/resume <sequence>``), since every send would fail. Returns the steps paused."""
    event = review.event.upper()
    paused: list[str] = []
    if event in _BLOCKING_REVIEWS and review.name:
        async with db.engine.begin() as conn:
            paused = await _pause_steps_using(conn, db.workspace_id, review, now)
    what = f"Template {review.name or '?'}" + (f" ({review.language})" if review.language else "")
    text = f"{what}: {event}"
    if review.reason and review.reason.upper() != "NONE":
        text += f", {review.reason}"
    if review.detail:
        text += f". {review.detail}"
    if paused:
        names = ", ".join(repr(n) for n in sorted(set(paused)))
        text += f"\nPaused steps using it in {names}; fix the template, then /resume the sequence."
    await alerts.alert(text, kind="template_status")
    return len(paused)


async def _pause_steps_using(
    conn: AsyncConnection, workspace_id: int, review: TemplateReview, now: datetime
) -> list[str]:
    rows = await conn.execute(
        select(Step.id, Step.template, Sequence.name)
        .join(Sequence, Sequence.id == Step.sequence_id)
        .where(
            Sequence.workspace_id == workspace_id,
            Sequence.status != "archived",
            Step.deleted_at.is_(None),
            Step.paused_at.is_(None),
            Step.template.is_not(None),
        )
    )
    matching = [(row.id, row.name) for row in rows if _same_template(row.template, review)]
    if not matching:
        return []
    reason = f"template {review.name} {review.event.lower()} by Meta"
    await conn.execute(
        update(Step)
        .where(and_(Step.id.in_([step_id for step_id, _ in matching]), Step.paused_at.is_(None)))
        .values(paused_at=now, pause_reason=reason)
    )
    return [name for _, name in matching]


def _same_template(template: Any, review: TemplateReview) -> bool:
    if not isinstance(template, dict) or template.get("name") != review.name:
        return False
    language = template.get("language")
    return review.language is None or language is None or language == review.language
