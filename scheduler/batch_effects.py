"""Carrying out what :func:`scheduler.policy.decide` made of a refused send.

A refusal changes more than its own row: it may defer the contact's later steps, opt the
contact out, pause a step or all sending, or call for an alert. :func:`apply_decision` turns a
decision into the message's row and notes these side effects; :func:`apply_effects` applies
them in the same transaction as the results and returns the alerts to send once it commits,
so an alert never announces a change that was rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.contacts import opt_out
from scheduler.phones import mask_phone
from scheduler.policy import Action, Decision, Rejected
from scheduler.result_rows import Plan, failed, release, retry, skipped
from scheduler.sequence_records import sequence_name_of_step
from storage.flags import SENDING_PAUSED, set_flag
from storage.models import Contact, Step
from storage.states import MessageStatus


@dataclass
class Effects:
    """Side effects of a batch's outcomes, applied in the same transaction as the results."""

    opt_outs: list[tuple[int, str]] = field(default_factory=list)
    undeliverable: list[int] = field(default_factory=list)
    paused_steps: list[tuple[int, str]] = field(default_factory=list)
    pause_all: str | None = None
    deferrals: list[tuple[int, datetime]] = field(default_factory=list)
    skipped_steps: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class BatchResult:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    skipped: int = 0


def apply_decision(
    decision: Decision,
    plan: Plan,
    outcome: Rejected,
    effects: Effects,
    summary: BatchResult,
    now: datetime,
) -> dict[str, Any]:
    item = plan.claimed
    code, reason = outcome.code, decision.reason
    action = decision.action
    if action is Action.RETRY:
        summary.retried += 1
        return retry(item, decision.at or item.due_at, code, reason)
    if action is Action.AWAIT_STATUS:
        summary.retried += 1
        row = retry(item, item.due_at, code, reason)
        row |= {"status": MessageStatus.SENDING.value, "lease_until": decision.at}
        return row
    if action is Action.DEFER_DAY:
        at = decision.at or item.due_at + timedelta(days=1)
        effects.deferrals.append((plan.contact_id, at))
        row = retry(item, at, code, reason)
        row["deferred_reason"] = f"{reason}; deferred to {at:%Y-%m-%d %H:%M} UTC"
        return row
    if action is Action.USE_FALLBACK_OR_SKIP:
        if not plan.used_fallback and item.step_id is not None:
            row = retry(item, item.due_at, code, reason)
            row["payload"] = {"use_fallback": True}
            return row
        summary.skipped += 1
        if plan.step_id is not None and item.purpose == "drip":
            effects.skipped_steps.append((plan.step_id, reason))
        return skipped(item, reason, code)
    if action is Action.PAUSE_STEP:
        if item.step_id is not None:
            effects.paused_steps.append((item.step_id, reason))
        return release(item, item.due_at, None) | {"error_code": code, "error_detail": reason}
    if action is Action.PAUSE_ALL:
        effects.pause_all = reason
        return release(item, item.due_at, None) | {"error_code": code, "error_detail": reason}
    summary.failed += 1
    if action is Action.OPT_OUT:
        effects.opt_outs.append((plan.contact_id, reason))
    elif action is Action.UNDELIVERABLE:
        effects.undeliverable.append(plan.contact_id)
    return failed(item, code, reason, now)


async def apply_effects(
    conn: AsyncConnection, workspace_id: int, effects: Effects, now: datetime
) -> list[tuple[str, str]]:
    alerts: list[tuple[str, str]] = []
    for contact_id, reason in effects.opt_outs:
        if await opt_out(conn, contact_id, source="error 131050", now=now):
            alerts.append(("opt_out", f"{await _who(conn, contact_id)} opted out: {reason}"))
    if effects.undeliverable:
        await conn.execute(
            update(Contact)
            .where(Contact.id.in_(effects.undeliverable), Contact.undeliverable_at.is_(None))
            .values(undeliverable_at=now, updated_at=now)
        )
    for step_id, reason in effects.paused_steps:
        changed = await conn.execute(
            update(Step)
            .where(Step.id == step_id, Step.paused_at.is_(None))
            .values(paused_at=now, pause_reason=reason)
        )
        if changed.rowcount:
            name = await sequence_name_of_step(conn, step_id)
            alerts.append(
                (
                    "template_rejected",
                    f"Template rejected ({reason}): a step of {name!r} is paused "
                    f"until /resume {name}",
                )
            )
    if effects.pause_all is not None:
        value = {"reason": effects.pause_all, "at": now.isoformat()}
        if await set_flag(conn, workspace_id, SENDING_PAUSED, value, now):
            alerts.append(
                (
                    "sending_paused",
                    f"Sending paused: {effects.pause_all}. Fix the WhatsApp token or "
                    "account, then send /resume sending.",
                )
            )
    for step_id, reason in dict(effects.skipped_steps).items():
        changed = await conn.execute(
            update(Step)
            .where(Step.id == step_id, Step.skip_alerted_at.is_(None))
            .values(skip_alerted_at=now)
        )
        if changed.rowcount:
            name = await sequence_name_of_step(conn, step_id)
            alerts.append(
                (
                    "skipped",
                    f"Skipped a step of {name!r}: {reason}. Add a fallback template "
                    "with /editstep so leads who have not written recently still get it.",
                )
            )
    return alerts


async def _who(conn: AsyncConnection, contact_id: int) -> str:
    row = (
        await conn.execute(select(Contact.phone, Contact.name).where(Contact.id == contact_id))
    ).first()
    if row is None:
        return f"contact {contact_id}"
    phone = mask_phone(row.phone) if row.phone else f"contact {contact_id}"
    return f"{row.name} ({phone})" if row.name else phone
