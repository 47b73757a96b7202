"""Commands about contacts: /enroll, /unenroll, /contact, /optout, /preview..."""

from __future__ import annotations

from handlers.bulk_import import import_contacts
from handlers.commands import (
    Enroll,
    ListOptOuts,
    OptOut,
    PauseContact,
    Preview,
    ResumeContact,
    ShowContact,
    Unenroll,
)
from handlers.context import CommandContext
from handlers.csv_import import read_contacts_from_bytes, read_contacts_from_path
from handlers.formatting import enroll_report, excerpt
from handlers.replies import Reply
from scheduler import contacts, sequence_records, step_edits
from scheduler.contacts import ContactRecord
from scheduler.enrollment import ContactInput
from scheduler.enrollment import enroll as enroll_contacts
from scheduler.errors import Invalid, NotFound
from scheduler.personalize import ContactFields, render, sample_contact
from scheduler.phones import mask_phone
from scheduler.steps import StepSpec
from scheduler.timing import local_time_label, zone_for
from storage.states import EnrollmentStatus


async def enroll(command: Enroll, ctx: CommandContext) -> Reply:
    now = ctx.clock.now()
    if ctx.upload is not None:
        batches = read_contacts_from_bytes(
            ctx.upload.data, max_rows=ctx.csv_max_rows, max_bytes=ctx.csv_max_bytes
        )
        report = await import_contacts(
            ctx.db, command.sequence, batches, now=now, options=ctx.options, force=command.force
        )
        return Reply(enroll_report(report), ok=report.enrolled > 0 or report.total == 0)
    if command.csv_path is not None:
        if ctx.actor.channel != "cli":
            raise Invalid("a file path only works in `dripbot admin`; send the CSV as a document")
        batches = read_contacts_from_path(
            command.csv_path,
            max_rows=ctx.csv_max_rows,
            max_bytes=ctx.csv_max_bytes,
        )
        report = await import_contacts(
            ctx.db, command.sequence, batches, now=now, options=ctx.options, force=command.force
        )
        return Reply(enroll_report(report), ok=report.enrolled > 0 or report.total == 0)
    if not command.entries:
        raise Invalid(
            f"whom should I enroll? Add '<phone> [name]' after /enroll {command.sequence}, "
            "one per line, or send a CSV file with that caption"
        )
    inputs = [ContactInput(e.phone, name=e.name, line=e.line) for e in command.entries]
    report = await enroll_contacts(
        ctx.db, command.sequence, inputs, now=now, options=ctx.options, force=command.force
    )
    if len(inputs) == 1 and report.enrolled == 1:
        contact_id, _ = report.enrolled_ids[0]
        async with ctx.db.engine.connect() as conn:
            record = await contacts.get_contact(conn, contact_id)
            pending = await contacts.pending_sends(conn, record, limit=1)
        lines = [f"Enrolled {record.label} into {report.sequence!r}."]
        if pending:
            lines.append("Next: " + _pending_line(pending[0]))
        return Reply("\n".join(lines))
    return Reply(enroll_report(report), ok=report.enrolled > 0)


def _pending_line(pending: contacts.PendingSend) -> str:
    text = (
        f"step {pending.step_position} of {pending.step_count} in {pending.sequence!r} at "
        f"{local_time_label(pending.due_at, pending.timezone)}"
    )
    if pending.deferred_reason:
        text += f" (deferred: {pending.deferred_reason})"
    if pending.held_by:
        text += f" — on hold: {pending.held_by}"
    return text


async def unenroll(command: Unenroll, ctx: CommandContext) -> Reply:
    name, contact = await contacts.set_enrollment_status(
        ctx.db,
        command.sequence,
        command.phone,
        EnrollmentStatus.STOPPED,
        now=ctx.clock.now(),
        region=ctx.options.default_region,
    )
    return Reply(f"Unenrolled {contact.label} from {name!r}; their pending steps are cancelled.")


async def pause_contact(command: PauseContact, ctx: CommandContext) -> Reply:
    contact = await contacts.pause_contact(
        ctx.db, command.phone, now=ctx.clock.now(), region=ctx.options.default_region
    )
    return Reply(f"Paused every sequence for {contact.label} until /resumecontact.")


async def resume_contact(command: ResumeContact, ctx: CommandContext) -> Reply:
    contact = await contacts.resume_contact(
        ctx.db, command.phone, now=ctx.clock.now(), region=ctx.options.default_region
    )
    return Reply(f"Resumed {contact.label}; their remaining steps moved later by the pause.")


async def show_contact(command: ShowContact, ctx: CommandContext) -> Reply:
    async with ctx.db.engine.connect() as conn:
        record = await contacts.find_contact(
            conn, ctx.db.workspace_id, command.phone, ctx.options.default_region
        )
        enrollments = await contacts.enrollments_of(conn, record.id)
        pending = await contacts.pending_sends(conn, record, limit=5)
        recent = await contacts.recent_messages(conn, record.id, limit=5)
    zone = zone_for(record.timezone, record.phone, ctx.options.default_timezone)
    lines = [record.label]
    details = [
        f"{label}: {value}"
        for label, value in (
            ("first name", record.first_name),
            ("email", record.email),
            ("company", record.company),
            ("user id", record.user_id),
        )
        if value
    ]
    details.append(f"time zone: {zone}")
    lines.append("; ".join(details))
    if record.custom_fields:
        lines.append("fields: " + ", ".join(f"{k}={v}" for k, v in record.custom_fields.items()))
    lines.append(_opt_state(record))
    if record.paused_at:
        lines.append("Paused by an admin (/resumecontact to continue).")
    if record.undeliverable_at:
        lines.append("WhatsApp reported this number undeliverable (131026).")
    if record.last_inbound_at:
        lines.append("Last message from them: " + local_time_label(record.last_inbound_at, zone))
    if enrollments:
        lines.append("Enrollments:")
        for e in enrollments:
            tail = f" ({e.end_reason})" if e.end_reason else ""
            replied = ", replied" if e.replied_at else ""
            lines.append(
                f"• {e.sequence}: {e.status}{replied}, since "
                f"{local_time_label(e.enrolled_at, zone)}{tail}"
            )
    else:
        lines.append("Not enrolled in any sequence.")
    if pending:
        lines.append("Next: " + _pending_line(pending[0]))
        for later in pending[1:]:
            lines.append("  then " + _pending_line(later))
    if recent:
        lines.append("Last messages:")
        for m in recent:
            where = f"{m.sequence} step {m.step_position}" if m.sequence else "one-off"
            error = f" — {m.detail}" if m.detail and m.status in ("failed", "skipped") else ""
            lines.append(f"• {where}: {m.status} {local_time_label(m.at, zone)}{error}")
    return Reply("\n".join(lines))


def _opt_state(record: ContactRecord) -> str:
    if record.opted_out_at is None:
        return "Subscribed (not opted out)."
    source = f" via {record.opt_out_source}" if record.opt_out_source else ""
    return f"Opted out{source} on {record.opted_out_at:%Y-%m-%d %H:%M} UTC: never messaged."


async def opt_out(command: OptOut, ctx: CommandContext) -> Reply:
    contact, changed = await contacts.opt_out_number(
        ctx.db,
        command.phone,
        now=ctx.clock.now(),
        region=ctx.options.default_region,
        locks=ctx.locks,
    )
    if not changed:
        return Reply(f"{contact.label} was already opted out.")
    return Reply(f"Opted out {contact.label}: every sequence stopped, pending messages cancelled.")


async def list_opt_outs(command: ListOptOuts, ctx: CommandContext) -> Reply:
    records = await contacts.list_opted_out(ctx.db)
    if not records:
        return Reply("Nobody has opted out.")
    lines = [f"Opted out ({len(records)}{'+' if len(records) >= 200 else ''}):"]
    for record in records:
        who = (record.phone and mask_phone(record.phone)) or record.user_id or str(record.id)
        name = f"{record.name} " if record.name else ""
        when = f"{record.opted_out_at:%Y-%m-%d}" if record.opted_out_at else ""
        source = f" ({record.opt_out_source})" if record.opt_out_source else ""
        lines.append(f"• {name}{who} {when}{source}")
    return Reply("\n".join(lines))


async def preview(command: Preview, ctx: CommandContext) -> Reply:
    now = ctx.clock.now()
    async with ctx.db.engine.connect() as conn:
        sequence = await sequence_records.find_sequence(conn, ctx.db.workspace_id, command.sequence)
        steps = await sequence_records.load_steps(conn, sequence.id)
        record = None
        if command.phone is not None:
            try:
                record = await contacts.find_contact(
                    conn, ctx.db.workspace_id, command.phone, ctx.options.default_region
                )
            except NotFound:
                record = None
                phone = contacts.parse_phone(command.phone, ctx.options.default_region)
    if not steps:
        return Reply(f"{sequence.name!r} has no steps yet.")
    if record is not None:
        fields = _fields(record)
        zone = zone_for(record.timezone, record.phone, ctx.options.default_timezone)
        who = record.label
    elif command.phone is not None:
        fields = ContactFields(phone=phone)
        zone = zone_for(None, phone, ctx.options.default_timezone)
        who = f"{phone} (not a contact yet)"
    else:
        fields = sample_contact()
        zone = ctx.options.default_timezone
        who = f"a sample contact ({fields.name})"
    window = sequence.window(ctx.options)
    lines = [f"{sequence.name!r} for {who}, if enrolled now ({zone}):"]
    for step in steps:
        due = step_edits.planned_due(step.spec, now, 0, zone, window)
        when = local_time_label(max(due, now), zone)
        lines.append(f"{step.position}. {step.spec.timing.describe()} → {when}")
        lines.append("   " + _rendered(step.spec, fields))
    return Reply("\n".join(lines))


def _fields(record: ContactRecord) -> ContactFields:
    return ContactFields(
        name=record.name,
        first_name=record.first_name,
        phone=record.phone,
        company=record.company,
        email=record.email,
        custom={str(k): str(v) for k, v in record.custom_fields.items()},
    )


def _rendered(spec: StepSpec, fields: ContactFields) -> str:
    if spec.kind == "template":
        assert spec.template is not None
        params = ", ".join(render(p, fields) for p in spec.template.params)
        return f"template {spec.template.name} ({spec.template.language}): {params}"
    text = render(spec.body, fields)
    if spec.kind == "media":
        text = f"[{spec.media_type} {spec.media_url}] {text}".rstrip()
    if spec.fallback is not None:
        params = ", ".join(render(p, fields) for p in spec.fallback.params)
        text += f"\n   (window closed → template {spec.fallback.name}: {excerpt(params, 80)})"
    return text
