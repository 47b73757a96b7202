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
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.events import Identity, IncomingMessage, PreferenceChange
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
from handlers.replies import Actor, Reply, Upload
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.contacts import ContactRecord, contact_record
from scheduler.enrollment import ContactInput, enroll
from scheduler.errors import EngineError
from scheduler.options import EngineOptions
from scheduler.phones import mask_phone
from scheduler.policy import Accepted
from scheduler.ports import Alerts, MessageSender, OutgoingMessage
from scheduler.sequences import SequenceRecord, find_by_keyword, stop_enrollments
from storage.database import Database
from storage.models import Contact, Enrollment, InboundMessage, OutboundMessage, Sequence
from storage.states import LIVE_ENROLLMENT

log = logging.getLogger(__name__)

#: WhatsApp refuses text bodies longer than this
TEXT_LIMIT: Final = 4096
_KEYWORD_KINDS: Final = frozenset({"text", "button", "interactive"})
#: user messages that do not count as a reply to a sequence
_NOT_REPLIES: Final = frozenset({"reaction", "system"})
_NOT_FORWARDED: Final = frozenset({"reaction"})
_LIVE = [s.value for s in LIVE_ENROLLMENT]


class CommandRunner(Protocol):
    """The admin command interpreter shared by every chat channel."""

    async def run(self, actor: Actor, text: str, upload: Upload | None = None) -> Reply: ...


class MediaUnavailable(Exception):
    """An attachment could not be fetched; the message says why, fit for an admin."""


class MediaSource(Protocol):
    """Fetches an inbound attachment's bytes (size-capped by the implementation)."""

    async def fetch(self, media_id: str) -> bytes: ...


@dataclass
class InboundContext:
    """What handling a message needs from the running service."""

    db: Database
    clock: Clock
    options: EngineOptions
    alerts: Alerts
    sender: MessageSender
    locks: ContactLocks
    #: admin WhatsApp numbers, E.164
    admin_numbers: frozenset[str] = frozenset()
    commands: CommandRunner | None = None
    media: MediaSource | None = None


class Handled(StrEnum):
    """What became of a message (for logs, metrics and tests)."""

    DUPLICATE = "duplicate"
    COMMAND = "command"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    ENROLLED = "enrolled"
    REPLY = "reply"
    RECORDED = "recorded"


# --- messages ---------------------------------------------------------------------------


async def handle_message(ctx: InboundContext, message: IncomingMessage) -> Handled:
    """Record the message and act on it: admin command, opt-out, START, keyword, or reply."""
    if await _seen(ctx.db, message.wamid):
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

    if _is_admin(ctx, message) and _command_text(message) is not None:
        return await _command(ctx, contact, message, now)
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


async def _seen(db: Database, wamid: str) -> bool:
    async with db.engine.connect() as conn:
        query = select(exists().where(InboundMessage.wamid == wamid))
        return bool((await conn.execute(query)).scalar())


async def _record(
    conn: AsyncConnection, workspace_id: int, contact_id: int, message: IncomingMessage
) -> bool:
    """Write the message once; False when its WhatsApp id was already recorded."""
    statement = (
        _insert_or_skip(conn, InboundMessage)
        .values(
            workspace_id=workspace_id,
            contact_id=contact_id,
            wamid=message.wamid,
            kind=message.kind[:30],
            body=message.text,
            received_at=message.at,
        )
        .returning(InboundMessage.id)
    )
    return (await conn.execute(statement)).first() is not None


def _insert_or_skip(conn: AsyncConnection, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either backend."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


# --- contacts ---------------------------------------------------------------------------


async def ensure_contact(
    conn: AsyncConnection,
    workspace_id: int,
    who: Identity,
    *,
    now: datetime,
    window_at: datetime | None = None,
) -> tuple[ContactRecord, str | None]:
    """The contact WhatsApp means, created on first contact, with both ids kept.

    Returns the contact and, when two records turned out to be one person and only the
    other one was opted out, that opt-out's source for the caller to apply under the lock.
    ``window_at`` records a user message at that time (opening the 24-hour window).
    """
    if who.phone is None and who.user_id is None:
        raise ValueError("a WhatsApp user without phone or user id")
    by_phone, by_user = await _matches(conn, workspace_id, who)
    inherited: str | None = None
    # The user id can go on the record only when no other record holds it.
    may_take_user_id = by_user is None
    dirty = False
    if by_phone is not None and by_user is not None and by_phone.id != by_user.id:
        dirty, inherited = await _merge(conn, by_user, into=by_phone, now=now)
    found = by_phone or by_user
    if found is None:
        await conn.execute(
            _insert_or_skip(conn, Contact).values(
                workspace_id=workspace_id,
                phone=who.phone,
                user_id=who.user_id,
                name=who.name,
                custom_fields={},
                created_at=now,
                updated_at=now,
            )
        )
        by_phone, by_user = await _matches(conn, workspace_id, who)
        found = by_phone or by_user
        assert found is not None, "the contact was just written"
    values: dict[str, Any] = {}
    if found.phone is None and who.phone is not None:
        values["phone"] = who.phone
    if found.user_id is None and who.user_id is not None and may_take_user_id:
        values["user_id"] = who.user_id
    if found.name is None and who.name:
        values["name"] = who.name
    if values:
        values["updated_at"] = now
        await conn.execute(update(Contact).where(Contact.id == found.id).values(**values))
    if window_at is not None:
        await conn.execute(
            update(Contact)
            .where(
                Contact.id == found.id,
                or_(Contact.last_inbound_at.is_(None), Contact.last_inbound_at < window_at),
            )
            .values(last_inbound_at=window_at)
        )
    if dirty or values or window_at is not None:
        found = contact_record(
            (await conn.execute(select(Contact).where(Contact.id == found.id))).one()
        )
    return found, inherited


async def _matches(
    conn: AsyncConnection, workspace_id: int, who: Identity
) -> tuple[ContactRecord | None, ContactRecord | None]:
    conditions = []
    if who.phone is not None:
        conditions.append(Contact.phone == who.phone)
    if who.user_id is not None:
        conditions.append(Contact.user_id == who.user_id)
    rows = [
        contact_record(row)
        for row in await conn.execute(
            select(Contact).where(Contact.workspace_id == workspace_id, or_(*conditions))
        )
    ]
    by_phone = next((c for c in rows if who.phone is not None and c.phone == who.phone), None)
    by_user = next((c for c in rows if who.user_id is not None and c.user_id == who.user_id), None)
    return by_phone, by_user


async def _merge(
    conn: AsyncConnection, other: ContactRecord, *, into: ContactRecord, now: datetime
) -> tuple[bool, str | None]:
    """Fold a user-id-only contact into the contact with the phone (same person).

    Returns whether it merged, and the opt-out the phone's contact inherits, if any.
    """
    if other.phone is not None:
        # The user id belongs to a record with another phone: leave both as they are.
        log.info("user id of contact %s also seen with contact %s's phone", other.id, into.id)
        return False, None
    await conn.execute(
        update(Contact).where(Contact.id == other.id).values(user_id=None, updated_at=now)
    )
    await conn.execute(
        update(Contact)
        .where(Contact.id == into.id)
        .values(
            user_id=other.user_id,
            name=func.coalesce(Contact.name, other.name),
            updated_at=now,
        )
    )
    if other.last_inbound_at is not None:
        await conn.execute(
            update(Contact)
            .where(
                Contact.id == into.id,
                or_(
                    Contact.last_inbound_at.is_(None),
                    Contact.last_inbound_at < other.last_inbound_at,
                ),
            )
            .values(last_inbound_at=other.last_inbound_at)
        )
    for table in (InboundMessage, OutboundMessage):
        await conn.execute(
            update(table).where(table.contact_id == other.id).values(contact_id=into.id)
        )
    enrolled = await conn.execute(select(exists().where(Enrollment.contact_id == other.id)))
    if not enrolled.scalar():
        await conn.execute(delete(Contact).where(Contact.id == other.id))
    if other.opted_out_at is not None and into.opted_out_at is None:
        return True, other.opt_out_source or OptOutSource.KEYWORD.value
    return True, None


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
        if not await _record(conn, ws, contact.id, message):
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
        if not await _record(conn, ws, contact.id, message):
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
            by_phone, by_user = await _matches(conn, ctx.db.workspace_id, change.sender)
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
        if not await _record(conn, ctx.db.workspace_id, contact.id, message):
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
        if not await _record(conn, ws, contact.id, message):
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


# --- admin commands ---------------------------------------------------------------------


def _is_admin(ctx: InboundContext, message: IncomingMessage) -> bool:
    phone = message.sender.phone
    return phone is not None and phone in ctx.admin_numbers


def _command_text(message: IncomingMessage) -> str | None:
    if message.kind not in ("text", "document") or not message.text:
        return None
    text = message.text.strip()
    return text if text.startswith("/") else None


async def _command(
    ctx: InboundContext, contact: ContactRecord, message: IncomingMessage, now: datetime
) -> Handled:
    async with ctx.db.engine.begin() as conn:
        if not await _record(conn, ctx.db.workspace_id, contact.id, message):
            return Handled.DUPLICATE
    text = _command_text(message)
    phone = message.sender.phone
    assert text is not None and phone is not None
    actor = Actor("whatsapp", phone, chat_id=phone, name=message.sender.name)
    reply = await _run_command(ctx, actor, text, message)
    await _answer(ctx, phone, reply)
    return Handled.COMMAND


async def _run_command(
    ctx: InboundContext, actor: Actor, text: str, message: IncomingMessage
) -> Reply:
    if ctx.commands is None:
        return Reply("Commands are not available yet.", ok=False)
    upload = None
    if message.kind == "document" and text.split()[0].lower() == "/enroll":
        media = message.media
        if media is None or media.id is None:
            return Reply("That file arrived without a media id; please send it again.", ok=False)
        if ctx.media is None:
            return Reply("Files cannot be fetched: WhatsApp is not configured.", ok=False)
        try:
            data = await ctx.media.fetch(media.id)
        except MediaUnavailable as err:
            return Reply(f"Could not fetch {media.filename or 'the file'}: {err}", ok=False)
        upload = Upload(media.filename or "upload.csv", data)
    try:
        return await ctx.commands.run(actor, text, upload)
    except Exception:
        log.exception("admin command from WhatsApp failed")
        return Reply("Something went wrong running that command; the log has details.", ok=False)


async def _answer(ctx: InboundContext, phone: str, reply: Reply) -> None:
    """Send the reply as text (the admin just wrote, so the window is open)."""
    text = reply.text
    for attachment in (reply.document, reply.image):
        if attachment is not None:
            text += (
                f"\n\n({attachment.filename} cannot be sent over WhatsApp yet; "
                "use Telegram or dripbot admin for it.)"
            )
    for part in split_text(text):
        outcome = await ctx.sender.send(OutgoingMessage(to=phone, kind="text", text=part))
        if not isinstance(outcome, Accepted):
            log.warning("answer to admin %s not sent: %s", mask_phone(phone), outcome)
            return


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut a long answer into WhatsApp-sized parts, at line breaks where possible."""
    text = text or "(empty answer)"
    parts = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        parts.append(text[:cut])
        text = text[cut:].lstrip("\n")
    parts.append(text)
    return parts
