"""Opting out and back in: recognising the request, and carrying it out.

Four signals opt a lead out: an opt-out keyword as the whole message, the "Stop promotions"
button of a marketing template, WhatsApp's own marketing controls (the ``user_preferences``
webhook) and error 131050 on a failed status. Recognising a keyword is pure and strict: the
whole message must be the keyword, so "don't stop" never unsubscribes anyone. What counts:

- case, spaces, hyphens and underscores inside the message are ignored ("Stop all",
  "opt-out", "S T O P"), and so is punctuation or an emoji around it ("STOP!", "stop.",
  "*STOP*");
- a template button or interactive reply counts when its label or payload is a keyword, or
  is the "Stop promotions" label (also in Portuguese, as Meta localises it).

Carrying it out happens inside the caller's transaction, with the caller holding the
contact's send lock, so that no send can follow the commit. A confirmation is queued in the
outbox in that same transaction: it goes out exactly once, even if the webhook is replayed
or the process dies right after the commit.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Final

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from handlers.events import IncomingMessage
from scheduler.contacts import opt_in, opt_out
from scheduler.phones import mask_phone
from storage.models import OutboundMessage
from storage.states import MessageStatus

OPT_OUT_CONFIRMATION: Final = (
    "You're unsubscribed and won't get more messages from us. Reply START to join again."
)
OPT_IN_CONFIRMATION: Final = (
    "Welcome back! You're subscribed again. Reply STOP at any time to unsubscribe."
)

#: the spec's opt-out words, as :func:`keyword_key` spells them ("STOP ALL" → "stopall")
OPT_OUT_KEYWORDS: Final = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout"}
)
OPT_IN_KEYWORDS: Final = frozenset({"start", "unstop"})
#: the label of Meta's marketing opt-out quick reply, as seen in real payloads
STOP_PROMOTIONS_LABELS: Final = frozenset({"stoppromotions", "pararpromoções"})

#: message kinds whose text a person typed or tapped (keywords only count there)
_WORDED_KINDS: Final = frozenset({"text", "button", "interactive"})
_TAPPED_KINDS: Final = frozenset({"button", "interactive"})
_REMOVED_INSIDE: Final = str.maketrans("", "", "-_")


class OptOutSource(StrEnum):
    """Why a contact opted out; stored in ``contacts.opt_out_source``."""

    KEYWORD = "keyword"
    BUTTON = "button"
    PREFERENCES = "user_preferences"
    ERROR_131050 = "error 131050"


#: opt-outs the lead made in WhatsApp itself, which WhatsApp's "resume" may lift; an opt-out
#: made by an admin or through the API stays until the lead writes START
RESUMABLE_SOURCES: Final = frozenset(s.value for s in OptOutSource)


def keyword_key(text: str) -> str:
    """The message as keywords compare: trimmed of punctuation, symbols and spaces around it,
    without spaces, hyphens or underscores inside, case-folded."""
    start, end = 0, len(text)
    while start < end and _is_wrapping(text[start]):
        start += 1
    while end > start and _is_wrapping(text[end - 1]):
        end -= 1
    core = "".join(text[start:end].split()).translate(_REMOVED_INSIDE)
    return core.casefold()


def _is_wrapping(char: str) -> bool:
    """Punctuation, symbols (emoji included), separators and control characters."""
    return unicodedata.category(char)[0] in "PSZC"


def is_opt_out_text(text: str | None) -> bool:
    return text is not None and keyword_key(text) in OPT_OUT_KEYWORDS


def is_opt_in_text(text: str | None) -> bool:
    return text is not None and keyword_key(text) in OPT_IN_KEYWORDS


def is_stop_promotions(text: str | None) -> bool:
    return text is not None and keyword_key(text) in STOP_PROMOTIONS_LABELS


def opt_out_signal(message: IncomingMessage) -> OptOutSource | None:
    """Whether this message asks to opt out, and how it asked."""
    if message.kind not in _WORDED_KINDS:
        return None
    if message.kind in _TAPPED_KINDS:
        labels = (message.text, message.payload)
        if any(is_stop_promotions(label) or is_opt_out_text(label) for label in labels):
            return OptOutSource.BUTTON
        return None
    return OptOutSource.KEYWORD if is_opt_out_text(message.text) else None


def asks_to_opt_in(message: IncomingMessage) -> bool:
    """START (or UNSTOP) as the whole message, typed or tapped."""
    return message.kind in _WORDED_KINDS and is_opt_in_text(message.text)


def describe_source(source: str | None) -> str:
    """How an opt-out came about, for admins."""
    return {
        OptOutSource.KEYWORD.value: "by replying with an opt-out word",
        OptOutSource.BUTTON.value: 'by tapping "Stop promotions"',
        OptOutSource.PREFERENCES.value: "in WhatsApp's marketing settings",
        OptOutSource.ERROR_131050.value: (
            "in WhatsApp (error 131050: they stopped marketing messages)"
        ),
    }.get(source or "", f"({source})" if source else "")


def contact_label(
    contact_id: int, phone: str | None, user_id: str | None, name: str | None, *, full: bool
) -> str:
    """A contact as admins see it. Forwarded replies carry the full number (to answer);
    notices such as opt-outs mask it, like the logs they may end up in."""
    ident = (phone if full else mask_phone(phone)) if phone else (user_id or "no number")
    named = f"{name} " if name else ""
    return f"{named}({ident}, contact {contact_id})"


def opt_out_alert(label: str, source: str) -> str:
    return (
        f"{label} opted out {describe_source(source)}: every sequence stopped and pending "
        "messages cancelled."
    )


# --- carrying it out --------------------------------------------------------------------


async def apply_opt_out(
    conn: AsyncConnection,
    workspace_id: int,
    contact_id: int,
    *,
    source: str,
    now: datetime,
    confirm: bool,
) -> bool:
    """Opt the contact out in the caller's transaction; False when they already were.

    The caller holds the contact's send lock until this transaction commits. With
    ``confirm``, one confirmation is queued, only on the change itself, so a replayed or
    repeated STOP never sends a second one.
    """
    changed = await opt_out(conn, contact_id, source=str(source), now=now)
    if changed and confirm:
        # An older notice (e.g. an unsent "welcome back") must not follow the opt-out.
        await conn.execute(
            update(OutboundMessage)
            .where(
                OutboundMessage.contact_id == contact_id,
                OutboundMessage.purpose == "notice",
                OutboundMessage.status == MessageStatus.SCHEDULED.value,
            )
            .values(
                status=MessageStatus.CANCELLED.value,
                error_detail="superseded by an opt-out",
                updated_at=now,
            )
        )
        await queue_notice(conn, workspace_id, contact_id, OPT_OUT_CONFIRMATION, now=now)
    return changed


async def apply_opt_in(
    conn: AsyncConnection, workspace_id: int, contact_id: int, *, now: datetime, confirm: bool
) -> bool:
    """Lift an opt-out; enrollments stay ended. False when the contact was not opted out."""
    changed = await opt_in(conn, contact_id, now=now)
    if changed and confirm:
        await queue_notice(conn, workspace_id, contact_id, OPT_IN_CONFIRMATION, now=now)
    return changed


async def queue_notice(
    conn: AsyncConnection, workspace_id: int, contact_id: int, text: str, *, now: datetime
) -> None:
    """A one-off text for the dispatcher to send now (the lead just wrote: window open).

    A notice queued at or after an opt-out is the one message an opted-out contact still
    gets: its confirmation.
    """
    await conn.execute(
        insert(OutboundMessage).values(
            workspace_id=workspace_id,
            contact_id=contact_id,
            purpose="notice",
            status=MessageStatus.SCHEDULED.value,
            due_at=now,
            attempts=0,
            payload={"message": {"kind": "text", "text": text}},
            dry_run=False,
            business_initiated=False,
            created_at=now,
            updated_at=now,
        )
    )
