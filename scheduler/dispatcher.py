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
from datetime import datetime, timedelta
from typing import Any

from scheduler.batch_context import REACH_PERIOD, BatchContext
from scheduler.batch_effects import BatchResult, Effects, apply_decision, apply_effects
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.options import EngineOptions
from scheduler.outgoing import contact_fields, free_form, message_from_json, template
from scheduler.pacing import Pacer, make_pacer
from scheduler.policy import Accepted, Outcome, Rejected, RetryPolicy, decide, pauses_all
from scheduler.ports import Alerts, MessageSender
from scheduler.result_rows import Plan, cancelled, failed, release, sent, skipped
from scheduler.sequence_records import spec_of
from scheduler.sequence_status import shift_pending
from storage.database import Database
from storage.flags import SENDING_PAUSED, get_flag
from storage.outbox import Claimed, claim, complete_enrollments, record_results, renew_leases
from storage.states import MessageStatus

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
#: messages claimed at once: enough to keep the default 256 sends in flight
BATCH_SIZE = 500


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
                context = await BatchContext.load(
                    conn,
                    ws,
                    claimed,
                    now,
                    gap=self.gap,
                    reach_limit=self.options.daily_reach_limit,
                )
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

    def _plan(self, claimed: list[Claimed], ctx: BatchContext, now: datetime) -> list[Plan]:
        plans = []
        next_allowed: dict[int, datetime] = dict(ctx.next_allowed)
        for item in claimed:
            plan = Plan(item, item.contact_id, step_id=item.step_id)
            plans.append(plan)
            contact = ctx.contacts.get(item.contact_id)
            if contact is None or _opted_out(item, contact):
                plan.result = cancelled(item, "opted out")
                continue
            if item.reclaimed and not ctx.eligible(item, contact, now):
                plan.result = release(item, item.due_at, None)
                continue
            allowed = next_allowed.get(contact.id)
            if allowed is not None and allowed > now:
                # Meta allows about one message per 6 s to one person: keep the order, wait.
                plan.result = release(item, max(item.due_at, allowed), None)
                next_allowed[contact.id] = allowed + self.gap
                continue
            self._build(plan, item, contact, ctx, now)
            if plan.message is None:
                continue
            if plan.business_initiated and not ctx.take_reach(contact.id):
                limit = self.options.daily_reach_limit
                plan.message = None
                plan.result = release(
                    item,
                    ctx.reach_frees_at or now + REACH_PERIOD,
                    f"daily reach limit ({limit} contacts outside their 24-hour window) "
                    "reached; waits for room",
                )
                continue
            next_allowed[contact.id] = now + self.gap
        return plans

    def _build(
        self, plan: Plan, item: Claimed, contact: Any, ctx: BatchContext, now: datetime
    ) -> None:
        if not contact.phone:
            plan.result = failed(item, None, "contact has no phone number, only a WhatsApp id", now)
            return
        payload = item.payload or {}
        if item.step_id is None:
            message = payload.get("message")
            if not isinstance(message, dict):
                plan.result = failed(item, None, "nothing to send", now)
                return
            plan.message = message_from_json(contact.phone, message, item.id)
            return
        step = ctx.steps.get(item.step_id)
        if step is None or step.deleted_at is not None:
            plan.result = cancelled(item, "step removed")
            return
        spec = spec_of(step)
        fields = contact_fields(contact)
        window_open = contact.last_inbound_at is not None and contact.last_inbound_at > now - WINDOW
        if spec.kind == "template":
            assert spec.template is not None
            plan.message = template(contact.phone, spec.template, fields, item.id)
            plan.business_initiated = not window_open
        elif window_open and not payload.get("use_fallback"):
            plan.message = free_form(contact.phone, spec, fields, item.id)
        elif spec.fallback is not None:
            plan.message = template(contact.phone, spec.fallback, fields, item.id)
            plan.business_initiated = True
            plan.used_fallback = True
        else:
            reason = "24-hour window closed and the step has no fallback template"
            plan.result = skipped(item, reason)
            if item.purpose == "drip":
                plan.step_id = item.step_id

    # --- sending ------------------------------------------------------------------------

    async def _send_all(
        self, plans: list[Plan], held: set[int]
    ) -> dict[int, tuple[Outcome, float]]:
        outcomes: dict[int, tuple[Outcome, float]] = {}
        queue = [p for p in plans if p.message is not None]
        queue.reverse()  # pop() from the end keeps the batch's order
        halted = False

        async def send(plan: Plan) -> None:
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
        self, plans: list[Plan], outcomes: dict[int, tuple[Outcome, float]], now: datetime
    ) -> BatchResult:
        results: list[dict[str, Any]] = []
        effects = Effects()
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
                results.append(release(item, item.due_at, None))
                continue
            outcome, _elapsed = outcomes[item.id]
            if isinstance(outcome, Accepted):
                summary.sent += 1
                results.append(sent(item, plan, outcome.wamid, now, self.sender.dry_run))
                continue
            decision = decide(outcome, item.attempts, now, self.rng, self.policy)
            results.append(apply_decision(decision, plan, outcome, effects, summary, now))
        async with self.db.engine.begin() as conn:
            # Shift later steps first: the deferred message is still "sending", so it is not
            # moved twice.
            for contact_id in {contact_id for contact_id, _ in effects.deferrals}:
                await shift_pending(
                    conn, timedelta(days=1), now=now, contact_id=contact_id, after=now
                )
            await record_results(conn, results, now=now)
            alerts = await apply_effects(conn, self.db.workspace_id, effects, now)
            enrollment_ids = {
                p.claimed.enrollment_id for p in plans if p.claimed.enrollment_id is not None
            }
            await complete_enrollments(conn, sorted(enrollment_ids), now=now)
        for kind, text in alerts:
            await self.alerts.alert(text, kind=kind)
        return summary


def _opted_out(item: Claimed, contact: Any) -> bool:
    """An opted-out contact gets nothing but the confirmation queued with the opt-out."""
    if contact.opted_out_at is None:
        return False
    return not (item.purpose == "notice" and item.due_at >= contact.opted_out_at)
