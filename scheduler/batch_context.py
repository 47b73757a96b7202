"""What a batch needs to know before deciding, read in a handful of queries.

The dispatcher reads this once per batch, after the claim and before any send: the contacts
and steps involved, when each contact may next be written to (Meta's gap between messages to
one person), whether a reclaimed message's enrollment is still live, and how much of the daily
reach limit is left. Every decision about the batch is then made on these rows in memory.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step
from storage.outbox import Claimed
from storage.states import EnrollmentStatus

REACH_PERIOD = timedelta(hours=24)


class BatchContext:
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
        *,
        gap: timedelta,
        reach_limit: int | None,
    ) -> BatchContext:
        """``gap`` is the least time between two messages to one contact; ``reach_limit`` the
        most contacts a day outside their 24-hour window (None: no limit)."""
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
        limit = reach_limit
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
