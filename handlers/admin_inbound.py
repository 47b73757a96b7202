"""Admin commands over WhatsApp: a message from an admin number that starts with ``/``.

The command runs through the interpreter every chat channel shares, after the message is
recorded, so a replayed message never runs a command twice. A CSV document captioned
``/enroll`` is fetched (size-capped) and handed over as the command's upload. The answer goes
back as text, cut into WhatsApp-sized parts; attachments cannot be sent this way yet and the
answer says so.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from handlers.events import IncomingMessage
from handlers.inbound_context import Handled, InboundContext, MediaUnavailable
from handlers.inbound_records import record_message
from handlers.replies import Actor, Reply, Upload
from scheduler.contacts import ContactRecord
from scheduler.phones import mask_phone
from scheduler.policy import Accepted
from scheduler.ports import OutgoingMessage

log = logging.getLogger(__name__)

#: WhatsApp refuses text bodies longer than this
TEXT_LIMIT: Final = 4096


def is_admin(ctx: InboundContext, message: IncomingMessage) -> bool:
    phone = message.sender.phone
    return phone is not None and phone in ctx.admin_numbers


def command_text(message: IncomingMessage) -> str | None:
    if message.kind not in ("text", "document") or not message.text:
        return None
    text = message.text.strip()
    return text if text.startswith("/") else None


async def handle_command(
    ctx: InboundContext, contact: ContactRecord, message: IncomingMessage, now: datetime
) -> Handled:
    async with ctx.db.engine.begin() as conn:
        if not await record_message(conn, ctx.db.workspace_id, contact.id, message):
            return Handled.DUPLICATE
    text = command_text(message)
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
