"""Commands that report: /stats and /export."""

from __future__ import annotations

import asyncio
import csv
import io

from sqlalchemy import select

from handlers.commands import Export, ShowStats
from handlers.context import CommandContext
from handlers.replies import Attachment, Reply
from handlers.stats import collect_stats, render_chart, summary_text
from scheduler import sequence_records
from storage.models import Contact, Enrollment, OutboundMessage, Step

EXPORT_COLUMNS = (
    "phone",
    "name",
    "email",
    "company",
    "status",
    "enrolled_at",
    "replied_at",
    "completed_at",
    "ended_at",
    "end_reason",
    "last_step_sent",
    "next_step",
    "next_due_at",
    "opted_out",
)


async def stats(command: ShowStats, ctx: CommandContext) -> Reply:
    report = await collect_stats(ctx.db, ctx.clock.now(), sequence=command.sequence)
    chart = await asyncio.to_thread(render_chart, report)
    return Reply(
        summary_text(report),
        image=Attachment("stats.png", chart, "image/png") if chart else None,
    )


async def export(command: Export, ctx: CommandContext) -> Reply:
    """A CSV of every enrollment in the sequence with its state, as a document."""
    async with ctx.db.engine.connect() as conn:
        sequence = await sequence_records.find_sequence(conn, ctx.db.workspace_id, command.sequence)
        rows = list(
            await conn.execute(
                select(
                    Enrollment.id,
                    Contact.phone,
                    Contact.name,
                    Contact.email,
                    Contact.company,
                    Enrollment.status,
                    Enrollment.enrolled_at,
                    Enrollment.replied_at,
                    Enrollment.completed_at,
                    Enrollment.ended_at,
                    Enrollment.end_reason,
                    Contact.opted_out_at,
                )
                .join(Contact, Contact.id == Enrollment.contact_id)
                .where(Enrollment.sequence_id == sequence.id)
                .order_by(Enrollment.id)
            )
        )
        progress: dict[int, tuple[int | None, int | None, object]] = {}
        messages = await conn.execute(
            select(
                OutboundMessage.enrollment_id,
                OutboundMessage.status,
                Step.position,
                OutboundMessage.due_at,
            )
            .join(Step, Step.id == OutboundMessage.step_id)
            .where(OutboundMessage.sequence_id == sequence.id, OutboundMessage.purpose == "drip")
            .order_by(OutboundMessage.enrollment_id, Step.position)
        )
        for enrollment_id, status, position, due in messages:
            if enrollment_id is None:
                continue
            last, nxt, nxt_due = progress.get(enrollment_id, (None, None, None))
            if status in ("sent", "delivered", "read"):
                last = position
            elif status == "scheduled" and nxt is None:
                nxt, nxt_due = position, due
            progress[enrollment_id] = (last, nxt, nxt_due)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        last, nxt, nxt_due = progress.get(row.id, (None, None, None))
        writer.writerow(
            [
                row.phone or "",
                row.name or "",
                row.email or "",
                row.company or "",
                row.status,
                _iso(row.enrolled_at),
                _iso(row.replied_at),
                _iso(row.completed_at),
                _iso(row.ended_at),
                row.end_reason or "",
                last or "",
                nxt or "",
                _iso(nxt_due),
                "yes" if row.opted_out_at else "",
            ]
        )
    filename = f"{_slug(sequence.name)}-enrollments.csv"
    return Reply(
        f"{len(rows)} enrollments of {sequence.name!r}.",
        document=Attachment(filename, out.getvalue().encode("utf-8"), "text/csv"),
    )


def _iso(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else ""


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "sequence"
