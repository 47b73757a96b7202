"""Commands about the outbox: /queue, /test, /pause sending, /resume sending."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select

from handlers.commands import PauseSending, ResumeSending, SendTest, ShowQueue
from handlers.context import CommandContext
from handlers.formatting import plural
from handlers.replies import Reply
from scheduler import contacts, sequence_records
from scheduler.errors import Invalid, NotFound
from scheduler.phones import mask_phone
from scheduler.timing import local_time_label
from storage.flags import SENDING_PAUSED, clear_flag, get_flag, set_flag
from storage.models import Contact, OutboundMessage, Sequence, Step
from storage.states import MessageStatus

M = OutboundMessage


async def send_test(command: SendTest, ctx: CommandContext) -> Reply:
    """Queue every step for one number now, outside any enrollment."""
    now = ctx.clock.now()
    region = ctx.options.default_region
    async with ctx.db.engine.begin() as conn:
        sequence = await sequence_records.find_sequence(conn, ctx.db.workspace_id, command.sequence)
        steps = await sequence_records.load_steps(conn, sequence.id)
        if not steps:
            raise Invalid(f"{sequence.name!r} has no steps to test")
        try:
            contact = await contacts.find_contact(conn, ctx.db.workspace_id, command.phone, region)
        except NotFound:
            phone = contacts.parse_phone(command.phone, region)
            await conn.execute(
                insert(Contact).values(
                    workspace_id=ctx.db.workspace_id,
                    phone=phone,
                    custom_fields={},
                    created_at=now,
                    updated_at=now,
                )
            )
            contact = await contacts.find_contact(conn, ctx.db.workspace_id, phone, region)
        if contact.opted_out_at is not None:
            raise Invalid(f"{contact.label} opted out; test messages are not sent to them either")
        await conn.execute(
            insert(M),
            [
                {
                    "workspace_id": ctx.db.workspace_id,
                    "contact_id": contact.id,
                    "sequence_id": sequence.id,
                    "step_id": step.id,
                    "purpose": "test",
                    "status": MessageStatus.SCHEDULED.value,
                    # the dispatcher keeps Meta's 6 s gap between messages to one person
                    "due_at": now + timedelta(microseconds=index),
                    "attempts": 0,
                    "dry_run": False,
                    "business_initiated": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for index, step in enumerate(steps)
            ],
        )
    return Reply(
        f"Queued {plural(len(steps), 'test message')} of {sequence.name!r} to {contact.label}; "
        f"they go out now, about {ctx.options.contact_gap_seconds:g} s apart. "
        "Text steps need the number to have written in the last 24 hours, or a fallback."
    )


async def show_queue(command: ShowQueue, ctx: CommandContext) -> Reply:
    now = ctx.clock.now()
    ws = ctx.db.workspace_id
    scheduled = (M.workspace_id == ws, M.status == MessageStatus.SCHEDULED.value)

    async with ctx.db.engine.connect() as conn:

        async def count(*conditions: object) -> int:
            query = select(func.count()).select_from(M).where(*scheduled, *conditions)  # type: ignore[arg-type]
            return int((await conn.execute(query)).scalar_one())

        due_now = await count(M.due_at <= now)
        next_hour = await count(M.due_at > now, M.due_at <= now + timedelta(hours=1))
        next_day = await count(M.due_at > now, M.due_at <= now + timedelta(days=1))
        retrying = await count(M.attempts > 0, M.error_code.is_not(None))
        in_flight = int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(M)
                    .where(M.workspace_id == ws, M.status == MessageStatus.SENDING.value)
                )
            ).scalar_one()
        )
        failed = int(
            (
                await conn.execute(
                    select(func.count())
                    .select_from(M)
                    .where(
                        M.workspace_id == ws,
                        M.status == MessageStatus.FAILED.value,
                        M.updated_at > now - timedelta(days=1),
                    )
                )
            ).scalar_one()
        )
        deferred = list(
            await conn.execute(
                select(Contact.phone, Sequence.name, Step.position, M.due_at, M.deferred_reason)
                .join(Contact, Contact.id == M.contact_id)
                .outerjoin(Sequence, Sequence.id == M.sequence_id)
                .outerjoin(Step, Step.id == M.step_id)
                .where(*scheduled, M.deferred_reason.is_not(None))
                .order_by(M.due_at)
                .limit(10)
            )
        )
        paused = await get_flag(conn, ws, SENDING_PAUSED)
    lines = []
    if paused is not None:
        lines.append(f"⏸ Sending is paused: {paused.get('reason')}. /resume sending to restart.")
    lines += [
        f"Due now: {due_now}",
        f"Next hour: {next_hour}",
        f"Next 24 hours: {next_day}",
        f"Sending now: {in_flight}",
        f"Retrying: {retrying}",
        f"Failed (last 24 hours): {failed}",
    ]
    if deferred:
        lines.append("Deferred:")
        for phone, name, position, due, reason in deferred:
            where = f"{name} step {position}" if name else "one-off"
            who = mask_phone(phone) if phone else "?"
            lines.append(
                f"• {who} {where} → {local_time_label(due, ctx.options.default_timezone)}: {reason}"
            )
    return Reply("\n".join(lines))


async def pause_sending(command: PauseSending, ctx: CommandContext) -> Reply:
    now = ctx.clock.now()
    value = {"reason": f"paused by an admin ({ctx.actor.channel})", "at": now.isoformat()}
    async with ctx.db.engine.begin() as conn:
        changed = await set_flag(conn, ctx.db.workspace_id, SENDING_PAUSED, value, now)
    if not changed:
        return Reply("Sending was already paused. /resume sending to restart.")
    return Reply("Sending paused: nothing new goes out until /resume sending.")


async def resume_sending(command: ResumeSending, ctx: CommandContext) -> Reply:
    async with ctx.db.engine.begin() as conn:
        changed = await clear_flag(conn, ctx.db.workspace_id, SENDING_PAUSED)
    if not changed:
        return Reply("Sending was not paused.")
    return Reply("Sending resumed: due messages go out with the next tick.")
