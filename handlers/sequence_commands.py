"""Commands that define and steer sequences: /newsequence, /addstep, /pause, /clone..."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select

from handlers.commands import (
    AddStep,
    ArchiveSequence,
    CloneSequence,
    Describe,
    EditStep,
    ListSequences,
    NewSequence,
    PauseSequence,
    RemoveStep,
    ResumeSequence,
    SetKeyword,
    SetStopOnReply,
    SetWindow,
    ShowSequence,
)
from handlers.context import CommandContext
from handlers.formatting import describe_step, plural
from handlers.replies import Reply
from scheduler import sequence_records, sequence_status, sequences, step_edits
from scheduler.errors import Invalid
from scheduler.personalize import check_text
from scheduler.steps import StepSpec
from storage.models import Enrollment, OutboundMessage
from storage.states import SequenceStatus


def check_step(spec: StepSpec, number: int | None = None) -> None:
    """Refuse placeholders a lead could receive literally (``{name`` and the like)."""
    texts = [spec.body]
    for template in (spec.template, spec.fallback):
        if template is not None:
            texts.extend(template.params)
    problems = [p for text in texts for p in check_text(text)]
    if problems:
        where = f"step {number}: " if number is not None else ""
        raise Invalid(where + "; ".join(problems))


def _steps_text(steps: list[sequence_records.StepRecord]) -> list[str]:
    lines = []
    for step in steps:
        paused = " (paused: template rejected)" if step.paused else ""
        lines.append(f"{step.position}. {describe_step(step.spec)}{paused}")
    return lines


def _warnings(warnings: list[str]) -> list[str]:
    return [f"⚠ {w}" for w in warnings]


async def new_sequence(command: NewSequence, ctx: CommandContext) -> Reply:
    for number, spec in enumerate(command.steps, start=1):
        check_step(spec, number)
    created = await sequences.create_sequence(
        ctx.db, command.name, command.steps, now=ctx.clock.now()
    )
    lines = [
        f"Created sequence {created.sequence.name!r} with {plural(len(created.steps), 'step')}."
    ]
    lines += _steps_text(created.steps)
    if not created.steps:
        lines.append(f"Add steps with /addstep {_quoted(created.sequence.name)} Day 1: Hello!")
    lines += _warnings(created.warnings)
    return Reply("\n".join(lines))


async def add_step(command: AddStep, ctx: CommandContext) -> Reply:
    check_step(command.step)
    step, warnings = await step_edits.add_step(
        ctx.db, command.sequence, command.step, now=ctx.clock.now(), options=ctx.options
    )
    lines = [f"Added step {step.position}: {describe_step(step.spec)}"]
    return Reply("\n".join(lines + _warnings(warnings)))


async def edit_step(command: EditStep, ctx: CommandContext) -> Reply:
    check_step(command.step)
    step, warnings = await step_edits.edit_step(
        ctx.db,
        command.sequence,
        command.number,
        command.step,
        now=ctx.clock.now(),
        options=ctx.options,
    )
    lines = [f"Step {command.number} is now step {step.position}: {describe_step(step.spec)}"]
    if step.position == command.number:
        lines = [f"Changed step {step.position}: {describe_step(step.spec)}"]
    return Reply("\n".join(lines + _warnings(warnings)))


async def remove_step(command: RemoveStep, ctx: CommandContext) -> Reply:
    step = await step_edits.remove_step(
        ctx.db, command.sequence, command.number, now=ctx.clock.now()
    )
    return Reply(
        f"Removed step {command.number} ({describe_step(step.spec)}); "
        "its pending messages are cancelled."
    )


async def list_all(command: ListSequences, ctx: CommandContext) -> Reply:
    async with ctx.db.engine.connect() as conn:
        records = await sequence_records.list_sequences(conn, ctx.db.workspace_id)
        counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        rows = await conn.execute(
            select(Enrollment.sequence_id, Enrollment.status, func.count())
            .where(Enrollment.workspace_id == ctx.db.workspace_id)
            .group_by(Enrollment.sequence_id, Enrollment.status)
        )
        for sequence_id, status, count in rows:
            counts[sequence_id][status] = int(count)
    if not records:
        return Reply("No sequences yet. Create one with /newsequence <name>.")
    lines = ["Sequences:"]
    for record in records:
        c = counts[record.id]
        enrolled = sum(c.values())
        extra = f", keyword {record.keyword}" if record.keyword else ""
        lines.append(
            f"• {record.name} [{record.status}{extra}]: {enrolled} enrolled, "
            f"{c['active'] + c['paused']} active, {c['completed']} completed, "
            f"{c['opted_out']} opted out"
        )
    return Reply("\n".join(lines))


async def show(command: ShowSequence, ctx: CommandContext) -> Reply:
    async with ctx.db.engine.connect() as conn:
        record = await sequence_records.find_sequence(conn, ctx.db.workspace_id, command.sequence)
        steps = await sequence_records.load_steps(conn, record.id)
        per_step: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        rows = await conn.execute(
            select(OutboundMessage.step_id, OutboundMessage.status, func.count())
            .where(OutboundMessage.sequence_id == record.id, OutboundMessage.purpose == "drip")
            .group_by(OutboundMessage.step_id, OutboundMessage.status)
        )
        for step_id, status, count in rows:
            if step_id is not None:
                per_step[step_id][status] = int(count)
    window = record.send_window or "default"
    lines = [
        f"{record.name} [{record.status}]",
        f"Send window: {window}; stop on reply: {'on' if record.stop_on_reply else 'off'}; "
        f"keyword: {record.keyword or 'none'}",
    ]
    if record.description:
        lines.append(record.description)
    if not steps:
        lines.append("No steps yet.")
    for step, text in zip(steps, _steps_text(steps), strict=True):
        c = per_step[step.id]
        sent = c["sent"] + c["delivered"] + c["read"]
        lines.append(text)
        lines.append(
            f"   scheduled {c['scheduled'] + c['sending']} · sent {sent} · delivered "
            f"{c['delivered'] + c['read']} · read {c['read']} · failed {c['failed']} · "
            f"skipped {c['skipped']}"
        )
    return Reply("\n".join(lines))


async def pause(command: PauseSequence, ctx: CommandContext) -> Reply:
    record = await sequence_status.set_status(
        ctx.db, command.sequence, SequenceStatus.PAUSED, now=ctx.clock.now()
    )
    return Reply(
        f"Paused {record.name!r}. Nothing from it goes out until /resume {_quoted(record.name)}."
    )


async def resume(command: ResumeSequence, ctx: CommandContext) -> Reply:
    async with ctx.db.engine.connect() as conn:
        before = await sequence_records.find_sequence(conn, ctx.db.workspace_id, command.sequence)
    record = await sequence_status.set_status(
        ctx.db, command.sequence, SequenceStatus.ACTIVE, now=ctx.clock.now()
    )
    if before.status == SequenceStatus.PAUSED:
        return Reply(
            f"Resumed {record.name!r}; the remaining steps moved later by the time it was paused."
        )
    return Reply(f"{record.name!r} is active; any paused steps are running again.")


async def archive(command: ArchiveSequence, ctx: CommandContext) -> Reply:
    record = await sequence_status.set_status(
        ctx.db, command.sequence, SequenceStatus.ARCHIVED, now=ctx.clock.now()
    )
    return Reply(f"Archived {record.name!r}: its enrollments are stopped; history stays.")


async def clone(command: CloneSequence, ctx: CommandContext) -> Reply:
    created = await sequences.clone_sequence(
        ctx.db, command.sequence, command.new_name, now=ctx.clock.now()
    )
    return Reply(
        f"Cloned into {created.sequence.name!r} with {plural(len(created.steps), 'step')} "
        "(no enrollments)."
    )


async def set_keyword(command: SetKeyword, ctx: CommandContext) -> Reply:
    record = await sequences.update_settings(
        ctx.db, command.sequence, now=ctx.clock.now(), keyword=command.keyword
    )
    if record.keyword:
        return Reply(f"A lead who sends {record.keyword!r} now joins {record.name!r}.")
    return Reply(f"{record.name!r} has no keyword now.")


async def set_window(command: SetWindow, ctx: CommandContext) -> Reply:
    record = await sequences.update_settings(
        ctx.db,
        command.sequence,
        now=ctx.clock.now(),
        options=ctx.options,
        send_window=command.window,
    )
    window = record.send_window or "the default window"
    return Reply(f"{record.name!r} sends in {window} (contact-local time) from now on.")


async def set_stop_on_reply(command: SetStopOnReply, ctx: CommandContext) -> Reply:
    record = await sequences.update_settings(
        ctx.db, command.sequence, now=ctx.clock.now(), stop_on_reply=command.enabled
    )
    state = "stops" if record.stop_on_reply else "keeps going"
    return Reply(f"{record.name!r} now {state} for a contact who replies.")


async def describe(command: Describe, ctx: CommandContext) -> Reply:
    record = await sequences.update_settings(
        ctx.db, command.sequence, now=ctx.clock.now(), description=command.description
    )
    return Reply(f"Description of {record.name!r} saved.")


def _quoted(name: str) -> str:
    return f'"{name}"' if " " in name else name
