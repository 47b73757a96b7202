"""The dispatcher: claim what is due, render it, send it, record what happened.

One batch at a time: a claim (one UPDATE), one read of the context, concurrent sends within
the pacing limits, and one write of the results. No transaction stays open across an HTTP
call. The decisions in between (window, fallback, reach, spacing) are plain code on plain
rows; what to do about an error is :func:`scheduler.policy.decide`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.contacts import opt_out
from scheduler.options import EngineOptions
from scheduler.pacing import Pacer, make_pacer
from scheduler.personalize import ContactFields, render
from scheduler.phones import mask_phone
from scheduler.policy import (
    Accepted,
    Action,
    Decision,
    Outcome,
    Rejected,
    RetryPolicy,
    decide,
    pauses_all,
)
from scheduler.ports import Alerts, MessageSender, OutgoingMessage, callback_data
from scheduler.sequences import sequence_name_of_step, shift_pending, spec_of
from scheduler.steps import StepSpec, TemplateRef
from storage.database import Database
from storage.flags import SENDING_PAUSED, get_flag, set_flag
from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step
from storage.outbox import Claimed, claim, complete_enrollments, record_results, renew_leases
from storage.states import EnrollmentStatus, MessageStatus

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
REACH_PERIOD = timedelta(hours=24)
#: messages claimed at once: enough to keep the default 256 sends in flight
BATCH_SIZE = 500


@dataclass
class _Plan:
    """What to do with one claimed message: send ``message``, or write ``result`` as is."""

    claimed: Claimed
    contact_id: int
    message: OutgoingMessage | None = None
    result: dict[str, Any] | None = None
    business_initiated: bool = False
    used_fallback: bool = False
    step_id: int | None = None


@dataclass
class _Effects:
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


class Dispatcher:
    def __init__(
        self,
        db: Database,
        sender: MessageSender,
        clock: Clock,
        options: EngineOptions,
        alerts: Alerts,
        *,
        locks: ContactLocks | None = None,
        pacer: Pacer | None = None,
        batch_size: int = BATCH_SIZE,
        concurrency: int = 64,
        rng: random.Random | None = None,
        on_send: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.db = db
        self.sender = sender
        self.clock = clock
        self.options = options
        self.alerts = alerts
        # Not `locks or ...`: an empty ContactLocks is falsy (it has __len__).
        self.locks = locks if locks is not None else ContactLocks()
        self.pacer = pacer or make_pacer(options.rate_per_second, options.pacing)
        self.batch_size = batch_size if options.pacing is None else 1
        self.concurrency = concurrency
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(lease=timedelta(seconds=options.send_lease_seconds))
        self.gap = timedelta(seconds=options.contact_gap_seconds)
        self.on_send = on_send
        self._stopping = False
        #: at start and after a failed tick, sends in doubt get a full lease again first
        self._recovering = True
        self.last_tick: datetime | None = None

    def stop(self) -> None:
        """Finish the batch in hand and claim nothing more (for a clean shutdown)."""
        self._stopping = True

    async def tick(self, max_batches: int | None = None) -> int:
        """Send everything due now, batch after batch; returns how many messages were handled."""
        handled = 0
        batches = 0
        if self._recovering:
            await self._renew_leases()
        while not self._stopping and (max_batches is None or batches < max_batches):
            try:
                result = await self.run_batch()
            except Exception:
                self._recovering = True
                raise
            handled += result.claimed
            batches += 1
            if result.claimed < self.batch_size:
                break
        self.last_tick = self.clock.now()
        return handled

    async def _renew_leases(self) -> None:
        """Give every send still in doubt a full lease from now.

        After a crash or a database outage, Meta's retried status webhooks need time to come
        in and settle what was sent; reclaiming at once would send those messages twice.
        """
        lease = timedelta(seconds=self.options.send_lease_seconds)
        async with self.db.engine.begin() as conn:
            renewed = await renew_leases(conn, self.db.workspace_id, until=self.clock.now() + lease)
        if renewed:
            log.info("%d sends in doubt wait up to %s for their status", renewed, lease)
        self._recovering = False

    async def run_batch(self) -> BatchResult:
        now = self.clock.now()
        ws = self.db.workspace_id
        async with self.db.engine.begin() as conn:
            if await get_flag(conn, ws, SENDING_PAUSED) is not None:
                return BatchResult()
            claimed = await claim(
                conn,
                ws,
                now=now,
                limit=self.batch_size,
                lease=timedelta(seconds=self.options.send_lease_seconds),
            )
        if not claimed:
            return BatchResult()
        held = set(await self.locks.acquire_many(c.contact_id for c in claimed))
        try:
            async with self.db.engine.connect() as conn:
                context = await _Context.load(conn, ws, claimed, now, self)
            plans = self._plan(claimed, context, now)
            sending = {p.contact_id for p in plans if p.message is not None}
            for contact_id in held - sending:
                self.locks.release(contact_id)
                held.discard(contact_id)
            outcomes = await self._send_all(plans, held)
        finally:
            for contact_id in held:
                self.locks.release(contact_id)
        return await self._record(plans, outcomes, now)

    # --- planning -----------------------------------------------------------------------

    def _plan(self, claimed: list[Claimed], ctx: _Context, now: datetime) -> list[_Plan]:
        plans = []
        next_allowed: dict[int, datetime] = dict(ctx.next_allowed)
        for item in claimed:
            plan = _Plan(item, item.contact_id, step_id=item.step_id)
            plans.append(plan)
            contact = ctx.contacts.get(item.contact_id)
            if contact is None or _opted_out(item, contact):
                plan.result = _cancelled(item, "opted out")
                continue
            if item.reclaimed and not ctx.eligible(item, contact, now):
                plan.result = _release(item, item.due_at, None)
                continue
            allowed = next_allowed.get(contact.id)
            if allowed is not None and allowed > now:
                # Meta allows about one message per 6 s to one person: keep the order, wait.
                plan.result = _release(item, max(item.due_at, allowed), None)
                next_allowed[contact.id] = allowed + self.gap
                continue
            self._build(plan, item, contact, ctx, now)
            if plan.message is None:
                continue
            if plan.business_initiated and not ctx.take_reach(contact.id):
                limit = self.options.daily_reach_limit
                plan.message = None
                plan.result = _release(
                    item,
                    ctx.reach_frees_at or now + REACH_PERIOD,
                    f"daily reach limit ({limit} contacts outside their 24-hour window) "
                    "reached; waits for room",
                )
                continue
            next_allowed[contact.id] = now + self.gap
        return plans

    def _build(
        self, plan: _Plan, item: Claimed, contact: Any, ctx: _Context, now: datetime
    ) -> None:
        if not contact.phone:
            plan.result = _failed(
                item, None, "contact has no phone number, only a WhatsApp id", now
            )
            return
        payload = item.payload or {}
        if item.step_id is None:
            message = payload.get("message")
            if not isinstance(message, dict):
                plan.result = _failed(item, None, "nothing to send", now)
                return
            plan.message = _message_from_json(contact.phone, message, item.id)
            return
        step = ctx.steps.get(item.step_id)
        if step is None or step.deleted_at is not None:
            plan.result = _cancelled(item, "step removed")
            return
        spec = spec_of(step)
        fields = _fields(contact)
        window_open = contact.last_inbound_at is not None and contact.last_inbound_at > now - WINDOW
        if spec.kind == "template":
            assert spec.template is not None
            plan.message = _template(contact.phone, spec.template, fields, item.id)
            plan.business_initiated = not window_open
        elif window_open and not payload.get("use_fallback"):
            plan.message = _free_form(contact.phone, spec, fields, item.id)
        elif spec.fallback is not None:
            plan.message = _template(contact.phone, spec.fallback, fields, item.id)
            plan.business_initiated = True
            plan.used_fallback = True
        else:
            reason = "24-hour window closed and the step has no fallback template"
            plan.result = _skipped(item, reason)
            if item.purpose == "drip":
                plan.step_id = item.step_id

    # --- sending ------------------------------------------------------------------------

    async def _send_all(
        self, plans: list[_Plan], held: set[int]
    ) -> dict[int, tuple[Outcome, float]]:
        outcomes: dict[int, tuple[Outcome, float]] = {}
        queue = [p for p in plans if p.message is not None]
        queue.reverse()  # pop() from the end keeps the batch's order
        halted = False

        async def send(plan: _Plan) -> None:
            nonlocal halted
            assert plan.message is not None
            try:
                await self.pacer.wait()
                if halted:
                    return  # the token or account was refused: the rest stays queued
                started = time.perf_counter()
                try:
                    outcome = await self.sender.send(plan.message)
                except Exception as err:  # a sender must not raise; be safe if one does
                    log.exception("sender raised for message %s", plan.claimed.id)
                    outcome = Rejected(None, f"{type(err).__name__}: {err}", in_doubt=True)
                elapsed = time.perf_counter() - started
                outcomes[plan.claimed.id] = (outcome, elapsed)
                if isinstance(outcome, Rejected) and pauses_all(outcome):
                    halted = True
                if self.on_send is not None:
                    self.on_send(elapsed, isinstance(outcome, Accepted))
            finally:
                if plan.contact_id in held:
                    held.discard(plan.contact_id)
                    self.locks.release(plan.contact_id)

        async def worker() -> None:
            # A fixed pool pulling from the batch costs less than a task per message.
            while queue:
                await send(queue.pop())

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(queue)))))
        return outcomes

    # --- recording ----------------------------------------------------------------------

    async def _record(
        self, plans: list[_Plan], outcomes: dict[int, tuple[Outcome, float]], now: datetime
    ) -> BatchResult:
        results: list[dict[str, Any]] = []
        effects = _Effects()
        summary = BatchResult(claimed=len(plans))
        for plan in plans:
            item = plan.claimed
            if plan.result is not None:
                results.append(plan.result)
                if plan.result["status"] == MessageStatus.SKIPPED.value:
                    summary.skipped += 1
                    if plan.step_id is not None:
                        effects.skipped_steps.append((plan.step_id, plan.result["error_detail"]))
                continue
            assert plan.message is not None
            if item.id not in outcomes:  # never sent: the batch halted on a token error
                results.append(_release(item, item.due_at, None))
                continue
            outcome, _elapsed = outcomes[item.id]
            if isinstance(outcome, Accepted):
                summary.sent += 1
                results.append(_sent(item, plan, outcome.wamid, now, self.sender.dry_run))
                continue
            decision = decide(outcome, item.attempts, now, self.rng, self.policy)
            results.append(self._apply(decision, plan, outcome, effects, summary, now))
        async with self.db.engine.begin() as conn:
            # Shift later steps first: the deferred message is still "sending", so it is not
            # moved twice.
            for contact_id in {contact_id for contact_id, _ in effects.deferrals}:
                await shift_pending(
                    conn, timedelta(days=1), now=now, contact_id=contact_id, after=now
                )
            await record_results(conn, results, now=now)
            alerts = await self._effects(conn, effects, now)
            enrollment_ids = {
                p.claimed.enrollment_id for p in plans if p.claimed.enrollment_id is not None
            }
            await complete_enrollments(conn, sorted(enrollment_ids), now=now)
        for kind, text in alerts:
            await self.alerts.alert(text, kind=kind)
        return summary

    def _apply(
        self,
        decision: Decision,
        plan: _Plan,
        outcome: Rejected,
        effects: _Effects,
        summary: BatchResult,
        now: datetime,
    ) -> dict[str, Any]:
        item = plan.claimed
        code, reason = outcome.code, decision.reason
        action = decision.action
        if action is Action.RETRY:
            summary.retried += 1
            return _retry(item, decision.at or item.due_at, code, reason)
        if action is Action.AWAIT_STATUS:
            summary.retried += 1
            row = _retry(item, item.due_at, code, reason)
            row |= {"status": MessageStatus.SENDING.value, "lease_until": decision.at}
            return row
        if action is Action.DEFER_DAY:
            at = decision.at or item.due_at + timedelta(days=1)
            effects.deferrals.append((plan.contact_id, at))
            row = _retry(item, at, code, reason)
            row["deferred_reason"] = f"{reason}; deferred to {at:%Y-%m-%d %H:%M} UTC"
            return row
        if action is Action.USE_FALLBACK_OR_SKIP:
            if not plan.used_fallback and item.step_id is not None:
                row = _retry(item, item.due_at, code, reason)
                row["payload"] = {"use_fallback": True}
                return row
            summary.skipped += 1
            if plan.step_id is not None and item.purpose == "drip":
                effects.skipped_steps.append((plan.step_id, reason))
            return _skipped(item, reason, code)
        if action is Action.PAUSE_STEP:
            if item.step_id is not None:
                effects.paused_steps.append((item.step_id, reason))
            return _release(item, item.due_at, None) | {"error_code": code, "error_detail": reason}
        if action is Action.PAUSE_ALL:
            effects.pause_all = reason
            return _release(item, item.due_at, None) | {"error_code": code, "error_detail": reason}
        summary.failed += 1
        if action is Action.OPT_OUT:
            effects.opt_outs.append((plan.contact_id, reason))
        elif action is Action.UNDELIVERABLE:
            effects.undeliverable.append(plan.contact_id)
        return _failed(item, code, reason, now)

    async def _effects(
        self, conn: AsyncConnection, effects: _Effects, now: datetime
    ) -> list[tuple[str, str]]:
        alerts: list[tuple[str, str]] = []
        ws = self.db.workspace_id
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
            if await set_flag(conn, ws, SENDING_PAUSED, value, now):
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


# --- context ----------------------------------------------------------------------------


class _Context:
    """Everything a batch needs to decide, read in a handful of queries."""

    def __init__(self) -> None:
        self.contacts: dict[int, Any] = {}
        self.steps: dict[int, Any] = {}
        self.next_allowed: dict[int, datetime] = {}
        self.live: dict[int, bool] = {}
        self.reach_left: int | None = None
        self.reached: set[int] = set()
        self.reach_frees_at: datetime | None = None

    @classmethod
    async def load(
        cls,
        conn: AsyncConnection,
        workspace_id: int,
        claimed: list[Claimed],
        now: datetime,
        dispatcher: Dispatcher,
    ) -> _Context:
        ctx = cls()
        contact_ids = sorted({c.contact_id for c in claimed})
        step_ids = sorted({c.step_id for c in claimed if c.step_id is not None})
        ctx.contacts = {
            row.id: row
            for row in await conn.execute(
                select(
                    Contact.id,
                    Contact.phone,
                    Contact.name,
                    Contact.first_name,
                    Contact.email,
                    Contact.company,
                    Contact.custom_fields,
                    Contact.opted_out_at,
                    Contact.paused_at,
                    Contact.hold_until,
                    Contact.last_inbound_at,
                ).where(Contact.id.in_(contact_ids))
            )
        }
        if step_ids:
            ctx.steps = {
                row.id: row for row in await conn.execute(select(Step).where(Step.id.in_(step_ids)))
            }
        gap = dispatcher.gap
        recent = await conn.execute(
            select(OutboundMessage.contact_id, func.max(OutboundMessage.sent_at))
            .where(
                OutboundMessage.contact_id.in_(contact_ids),
                OutboundMessage.sent_at > now - gap,
            )
            .group_by(OutboundMessage.contact_id)
        )
        ctx.next_allowed = {
            contact_id: last + gap for contact_id, last in recent if last is not None
        }
        reclaimed = [c for c in claimed if c.reclaimed and c.enrollment_id is not None]
        if reclaimed:
            rows = await conn.execute(
                select(Enrollment.id, Enrollment.status, Sequence.status.label("seq"))
                .join(Sequence, Sequence.id == Enrollment.sequence_id)
                .where(Enrollment.id.in_([c.enrollment_id for c in reclaimed]))
            )
            ctx.live = {
                r.id: r.status == EnrollmentStatus.ACTIVE and r.seq == "active" for r in rows
            }
        limit = dispatcher.options.daily_reach_limit
        if limit is not None:
            since = now - REACH_PERIOD
            reach = (
                OutboundMessage.workspace_id == workspace_id,
                OutboundMessage.business_initiated.is_(True),
                OutboundMessage.sent_at > since,
            )
            used, oldest = (
                await conn.execute(
                    select(
                        func.count(func.distinct(OutboundMessage.contact_id)),
                        func.min(OutboundMessage.sent_at),
                    ).where(*reach)
                )
            ).one()
            ctx.reach_left = max(0, limit - int(used))
            ctx.reach_frees_at = oldest + REACH_PERIOD if oldest is not None else None
            ctx.reached = set(
                (
                    await conn.execute(
                        select(OutboundMessage.contact_id)
                        .where(*reach, OutboundMessage.contact_id.in_(contact_ids))
                        .distinct()
                    )
                ).scalars()
            )
        return ctx

    def eligible(self, item: Claimed, contact: Any, now: datetime) -> bool:
        if item.purpose != "drip":
            return True
        if contact.paused_at is not None:
            return False
        if contact.hold_until is not None and contact.hold_until > now:
            return False
        if item.enrollment_id is not None and not self.live.get(item.enrollment_id, False):
            return False
        step = self.steps.get(item.step_id) if item.step_id is not None else None
        return step is None or step.paused_at is None

    def take_reach(self, contact_id: int) -> bool:
        """Whether one more business-initiated message to this contact fits Meta's tier."""
        if self.reach_left is None or contact_id in self.reached:
            return True
        if self.reach_left <= 0:
            return False
        self.reach_left -= 1
        self.reached.add(contact_id)
        return True


def _opted_out(item: Claimed, contact: Any) -> bool:
    """An opted-out contact gets nothing but the confirmation queued with the opt-out."""
    if contact.opted_out_at is None:
        return False
    return not (item.purpose == "notice" and item.due_at >= contact.opted_out_at)


# --- message building -------------------------------------------------------------------


def _fields(contact: Any) -> ContactFields:
    return ContactFields(
        name=contact.name,
        first_name=contact.first_name,
        phone=contact.phone,
        company=contact.company,
        email=contact.email,
        custom=contact.custom_fields or {},
    )


def _template(to: str, ref: TemplateRef, fields: ContactFields, message_id: int) -> OutgoingMessage:
    return OutgoingMessage(
        to=to,
        kind="template",
        template_name=ref.name,
        template_language=ref.language,
        template_params=tuple(render(p, fields) for p in ref.params),
        template_header=ref.header,
        callback_data=callback_data(message_id),
    )


def _free_form(to: str, spec: StepSpec, fields: ContactFields, message_id: int) -> OutgoingMessage:
    text = render(spec.body, fields)
    if spec.kind == "media":
        return OutgoingMessage(
            to=to,
            kind="media",
            text=text,
            media_type=spec.media_type,
            media_url=spec.media_url,
            callback_data=callback_data(message_id),
        )
    return OutgoingMessage(to=to, kind="text", text=text, callback_data=callback_data(message_id))


def _message_from_json(to: str, data: dict[str, Any], message_id: int) -> OutgoingMessage:
    header = data.get("header")
    return OutgoingMessage(
        to=to,
        kind=data.get("kind", "text"),
        text=str(data.get("text", "")),
        media_type=data.get("media_type"),
        media_url=data.get("media_url"),
        template_name=data.get("template"),
        template_language=data.get("language"),
        template_params=tuple(data.get("params") or ()),
        template_header=(header[0], header[1]) if header else None,
        callback_data=callback_data(message_id),
    )


# --- result rows ------------------------------------------------------------------------


def _row(item: Claimed, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": item.id,
        "status": MessageStatus.SCHEDULED.value,
        "due_at": item.due_at,
        "wamid": None,
        "sent_at": None,
        "failed_at": None,
        "error_code": None,
        "error_detail": None,
        "deferred_reason": None,
        "payload": item.payload,
        "dry_run": False,
        "business_initiated": False,
        "lease_until": None,
        "attempts": item.attempts,
    }
    row.update(values)
    return row


def _sent(item: Claimed, plan: _Plan, wamid: str, now: datetime, dry_run: bool) -> dict[str, Any]:
    assert plan.message is not None
    return _row(
        item,
        status=MessageStatus.SENT.value,
        wamid=wamid,
        sent_at=now,
        payload=plan.message.to_json() | ({"fallback": True} if plan.used_fallback else {}),
        dry_run=dry_run,
        business_initiated=plan.business_initiated,
    )


def _retry(item: Claimed, at: datetime, code: int | None, reason: str) -> dict[str, Any]:
    return _row(item, due_at=at, error_code=code, error_detail=reason)


def _release(item: Claimed, at: datetime, reason: str | None) -> dict[str, Any]:
    """Back to the queue without counting an attempt (it was never tried)."""
    return _row(item, due_at=at, deferred_reason=reason, attempts=max(0, item.attempts - 1))


def _failed(item: Claimed, code: int | None, reason: str, now: datetime) -> dict[str, Any]:
    return _row(
        item, status=MessageStatus.FAILED.value, failed_at=now, error_code=code, error_detail=reason
    )


def _skipped(item: Claimed, reason: str, code: int | None = None) -> dict[str, Any]:
    return _row(item, status=MessageStatus.SKIPPED.value, error_code=code, error_detail=reason)


def _cancelled(item: Claimed, reason: str) -> dict[str, Any]:
    return _row(item, status=MessageStatus.CANCELLED.value, error_detail=reason)


async def _who(conn: AsyncConnection, contact_id: int) -> str:
    row = (
        await conn.execute(select(Contact.phone, Contact.name).where(Contact.id == contact_id))
    ).first()
    if row is None:
        return f"contact {contact_id}"
    phone = mask_phone(row.phone) if row.phone else f"contact {contact_id}"
    return f"{row.name} ({phone})" if row.name else phone
