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

import random
from collections.abc import Sequence as Seq
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.events import DeliveryStatus, TemplateReview
from handlers.status_failures import apply_failure
from handlers.status_moves import target_of
from handlers.status_progress import StatusSummary, apply_progress
from scheduler.contact_locks import ContactLocks
from scheduler.policy import DEFAULT_POLICY, RetryPolicy
from scheduler.ports import Alerts
from storage.database import Database
from storage.models import Sequence, Step
from storage.states import MessageStatus

#: template review events that stop a step from being sent
_BLOCKING_REVIEWS: Final = frozenset({"REJECTED", "DISABLED", "PAUSED"})


def is_failure(status: DeliveryStatus) -> bool:
    return target_of(status) is MessageStatus.FAILED


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
