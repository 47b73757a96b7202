"""Messages from WhatsApp users: opt-outs, START, sequence keywords, replies, admin commands.

Every message is handled once. A WhatsApp id already recorded is skipped; the record is
written in the same transaction as the effect that must not be lost (an opt-out, a reply's
consequences), so a crash before that commit replays the message and a crash after it
changes nothing on replay. Effects that cannot share that transaction are ordered so a
replay repeats nothing harmful: a keyword enrollment runs before the record (enrolling twice
is refused as "already enrolled"), an admin command after it (a command is never run twice).
Alerts go out after the commit: at most once.

Decisions beyond the spec:

- The 24-hour window opens on every user message except WhatsApp's system notices, at the
  message's own time (never later than now, never moving backwards).
- Reactions are recorded and open the window, but are not replies: they do not stop a
  sequence and are not forwarded. System notices (a changed number) are forwarded so an admin
  can update the contact; they are not replies either.
- A message from an opted-out contact is recorded and forwarded (it may ask how to come
  back), and changes nothing else; START (or UNSTOP) re-subscribes them with a confirmation.
- A lead known only by a business-scoped user id cannot be enrolled or sent to: a keyword
  from them is forwarded as a reply, and an opt-out is recorded without a confirmation.
- When one message names two contacts (a user-id-only one and another with the phone), they
  become one: the phone's contact keeps both ids and inherits an opt-out.
- ``resume`` in WhatsApp's marketing controls lifts an opt-out the lead made in WhatsApp
  (keyword, button, marketing controls, 131050), not one an admin made, and only when it is
  newer than the opt-out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence as Seq
from datetime import datetime
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.admin_inbound import command_text, handle_command, is_admin
from handlers.events import IncomingMessage, PreferenceChange
from handlers.inbound_context import Handled, InboundContext
from handlers.inbound_records import contact_matches, ensure_contact, is_recorded, record_message
from handlers.optout import (
    RESUMABLE_SOURCES,
    OptOutSource,
    apply_opt_in,
    apply_opt_out,
    asks_to_opt_in,
    contact_label,
    opt_out_alert,
    opt_out_signal,
)
from scheduler.contacts import ContactRecord, contact_record
from scheduler.enrollment import ContactInput, enroll
from scheduler.errors import EngineError
from scheduler.sequence_records import SequenceRecord, find_by_keyword
from scheduler.sequence_status import stop_enrollments
from storage.models import Contact, Enrollment, Sequence
from storage.states import LIVE_ENROLLMENT

log = logging.getLogger(__name__)

_KEYWORD_KINDS: Final = frozenset({"text", "button", "interactive"})
#: user messages that do not count as a reply to a sequence
_NOT_REPLIES: Final = frozenset({"reaction", "system"})
_NOT_FORWARDED: Final = frozenset({"reaction"})
_LIVE = [s.value for s in LIVE_ENROLLMENT]


# --- messages ---------------------------------------------------------------------------


async def handle_message(ctx: InboundContext, message: IncomingMessage) -> Handled:
    """Record the message and act on it: admin command, opt-out, START, keyword, or reply."""
    if await is_recorded(ctx.db, message.wamid):
        return Handled.DUPLICATE
    now = ctx.clock.now()
    window_at = None if message.kind == "system" else min(message.at, now)
    async with ctx.db.engine.begin() as conn:
        contact, inherited = await ensure_contact(
            conn, ctx.db.workspace_id, message.sender, now=now, window_at=window_at
        )
    if inherited is not None:
        # Two records of one person met: the opt-out of one now covers the other.
        await _opt_out_silently(ctx, contact, inherited, now)
        contact = await _reload(ctx, contact.id)

    if is_admin(ctx, message) and command_text(message) is not None:
        return await handle_command(ctx, contact, message, now)
    signal = opt_out_signal(message)
    if signal is not None:
        return await _opt_out(ctx, contact, message, signal, now)
    if contact.opted_out_at is not None:
        if asks_to_opt_in(message):
            return await _opt_in(ctx, contact, message, now)
        return await _reply(ctx, contact, message, now, opted_out=True)
    sequence = await _keyword_sequence(ctx, message)
    if sequence is not None and contact.phone is not None:
        return await _join(ctx, contact, message, sequence, now)
    return await _reply(ctx, contact, message, now, opted_out=False)


async def _reload(ctx: InboundContext, contact_id: int) -> ContactRecord:
    async with ctx.db.engine.connect() as conn:
        row = (await conn.execute(select(Contact).where(Contact.id == contact_id))).one()
    return contact_record(row)


# --- opt-out and opt-in -----------------------------------------------------------------


async def _opt_out(
    ctx: InboundContext,
    contact: ContactRecord,
    message: IncomingMessage,
    source: OptOutSource,
    now: datetime,
) -> Handled:
    ws = ctx.db.workspace_id
    # The lock makes the commit wait for a send to this contact already under way, and
    # every later send re-reads the opt-out under the same lock.
    async with ctx.locks.hold(contact.id), ctx.db.engine.begin() as conn:
        if not await record_message(conn, ws, contact.id, message):
            return Handled.DUPLICATE
        changed = await apply_opt_out(
            conn, ws, contact.id, source=source, now=now, confirm=contact.phone is not None
        )
    if changed:
        await ctx.alerts.alert(opt_out_alert(_who(contact), source), kind="opt_out")
    return Handled.OPTED_OUT


async def _opt_out_silently(
    ctx: InboundContext, contact: ContactRecord, source: str, now: datetime
) -> bool:
    async with ctx.locks.hold(contact.id), ctx.db.engine.begin() as conn:
        changed = await apply_opt_out(
            conn, ctx.db.workspace_id, contact.id, source=source, now=now, confirm=False
        )
    if changed:
        await ctx.alerts.alert(opt_out_alert(_who(contact), source), kind="opt_out")
    return changed


async def _opt_in(
    ctx: InboundContext, contact: ContactRecord, message: IncomingMessage, now: datetime
) -> Handled:
    ws = ctx.db.workspace_id
    async with ctx.db.engine.begin() as conn:
        if not await record_message(conn, ws, contact.id, message):
            return Handled.DUPLICATE
        changed = await apply_opt_in(
            conn, ws, contact.id, now=now, confirm=contact.phone is not None
        )
    if changed:
        await ctx.alerts.alert(
            f"{_who(contact)} re-subscribed by sending {message.text!r}; "
            "earlier enrollments stay ended.",
            kind="opt_in",
        )
    return Handled.OPTED_IN


async def handle_preference(ctx: InboundContext, change: PreferenceChange) -> bool:
    """WhatsApp's marketing controls: ``stop`` opts out (no confirmation: the lead did not
    write to us), ``resume`` lifts an opt-out the lead made. True when something changed."""
    value = change.value.strip().lower()
    now = ctx.clock.now()
    if value not in ("stop", "resume"):
        log.info("ignored a user_preferences value %r", change.value)
        return False
    async with ctx.db.engine.begin() as conn:
        if value == "resume":
            by_phone, by_user = await contact_matches(conn, ctx.db.workspace_id, change.sender)
            contact = by_phone or by_user
            if contact is None:
                return False
        else:
            contact, _ = await ensure_contact(conn, ctx.db.workspace_id, change.sender, now=now)
    if value == "stop":
        return await _opt_out_silently(ctx, contact, OptOutSource.PREFERENCES, now)
    if contact.opted_out_at is None or contact.opt_out_source not in RESUMABLE_SOURCES:
        return False
    if change.at is not None and change.at <= contact.opted_out_at:
        return False  # an older resume replayed after a newer opt-out
    async with ctx.db.engine.begin() as conn:
        changed = await apply_opt_in(conn, ctx.db.workspace_id, contact.id, now=now, confirm=False)
    if changed:
        await ctx.alerts.alert(
            f"{_who(contact)} resumed marketing messages in WhatsApp and is subscribed "
            "again; earlier enrollments stay ended.",
            kind="opt_in",
        )
    return changed


# --- keywords ---------------------------------------------------------------------------


async def _keyword_sequence(ctx: InboundContext, message: IncomingMessage) -> SequenceRecord | None:
    if message.kind not in _KEYWORD_KINDS or not message.text:
        return None
    async with ctx.db.engine.connect() as conn:
        return await find_by_keyword(conn, ctx.db.workspace_id, message.text)


async def _join(
    ctx: InboundContext,
    contact: ContactRecord,
    message: IncomingMessage,
    sequence: SequenceRecord,
    now: datetime,
) -> Handled:
    assert contact.phone is not None
    try:
        report = await enroll(
            ctx.db,
            sequence.id,
            [ContactInput(contact.phone)],
            now=now,
            options=ctx.options,
            source="keyword",
        )
    except EngineError as err:
        log.warning("keyword %r for %r did not enroll: %s", message.text, sequence.name, err)
        report = None
    async with ctx.db.engine.begin() as conn:
        if not await record_message(conn, ctx.db.workspace_id, contact.id, message):
            return Handled.DUPLICATE
    if report is not None and report.enrolled:
        await ctx.alerts.alert(
            f"{_who(contact)} joined {sequence.name!r} by sending {message.text!r}.",
            kind="keyword_enroll",
        )
        return Handled.ENROLLED
    if report is not None:
        problems = report.already_enrolled.lines + report.opted_out.lines + report.invalid.lines
        why = problems[0].reason if problems else "nothing to do"
        log.info("keyword for %r from contact %s: %s", sequence.name, contact.id, why)
    return Handled.RECORDED


# --- replies ----------------------------------------------------------------------------


async def _reply(
    ctx: InboundContext,
    contact: ContactRecord,
    message: IncomingMessage,
    now: datetime,
    *,
    opted_out: bool,
) -> Handled:
    ws = ctx.db.workspace_id
    is_reply = message.kind not in _NOT_REPLIES and not opted_out
    stopped: list[str] = []
    sequences: list[str] = []
    async with ctx.db.engine.begin() as conn:
        if not await record_message(conn, ws, contact.id, message):
            return Handled.DUPLICATE
        if is_reply:
            sequences, stopped = await _mark_replied(conn, contact.id, now)
    if message.kind not in _NOT_FORWARDED:
        await ctx.alerts.alert(
            _forward_text(contact, message, sequences, stopped, opted_out), kind="reply"
        )
    return Handled.REPLY if is_reply else Handled.RECORDED


async def _mark_replied(
    conn: AsyncConnection, contact_id: int, now: datetime
) -> tuple[list[str], list[str]]:
    """Count the reply on the contact's live enrollments; stop those that stop on reply.

    Returns the names of the sequences the contact is in, and of those now stopped.
    """
    live = list(
        await conn.execute(
            select(Enrollment.id, Sequence.name, Sequence.stop_on_reply)
            .join(Sequence, Sequence.id == Enrollment.sequence_id)
            .where(Enrollment.contact_id == contact_id, Enrollment.status.in_(_LIVE))
            .order_by(Enrollment.id)
        )
    )
    if not live:
        return [], []
    await conn.execute(
        update(Enrollment)
        .where(
            Enrollment.id.in_([row.id for row in live]),
            Enrollment.replied_at.is_(None),
        )
        .values(replied_at=now)
    )
    stopped = []
    for row in live:
        if row.stop_on_reply:
            await stop_enrollments(conn, now=now, reason="replied", enrollment_id=row.id)
            stopped.append(row.name)
    return [row.name for row in live], stopped


def _forward_text(
    contact: ContactRecord,
    message: IncomingMessage,
    sequences: Seq[str],
    stopped: Seq[str],
    opted_out: bool,
) -> str:
    kind = message.kind
    if kind == "system":
        head = f"WhatsApp notice about {_who(contact, full=True)}"
    else:
        head = f"Reply from {_who(contact, full=True)}"
    notes = []
    if opted_out:
        notes.append("opted out")
    if sequences:
        notes.append("in " + ", ".join(repr(s) for s in sequences))
    if stopped:
        notes.append("stopped on reply: " + ", ".join(repr(s) for s in stopped))
    if notes:
        head += " (" + "; ".join(notes) + ")"
    label = "" if kind == "text" else f"[{kind}] "
    return f"{head}:\n{label}{message.text or ''}".rstrip()


def _who(contact: ContactRecord, *, full: bool = False) -> str:
    return contact_label(contact.id, contact.phone, contact.user_id, contact.name, full=full)
