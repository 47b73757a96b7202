"""How a :class:`~handlers.replies.Reply` looks in Telegram.

Plain text only (no parse mode), so names and messages typed by leads can never break the
markup. Telegram caps a message at 4,096 and a caption at 1,024 characters, counted in UTF-16
code units; long answers are split on line breaks. A short text rides along as the caption of
its document or chart; a long one goes first, on its own.
"""

from __future__ import annotations

import logging

from telegram import Bot, Message
from telegram.error import BadRequest

from handlers.replies import Attachment, Reply

log = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CAPTION = 1024


def utf16_length(text: str) -> int:
    """Telegram counts characters as UTF-16 code units: an emoji is two."""
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Pieces of at most ``limit`` units, cut at a line break, else a space, else anywhere.

    Blank pieces are dropped: Telegram refuses an empty message.
    """
    pieces: list[str] = []
    rest = text
    while rest:
        fit = _fitting(rest, limit)
        if fit == len(rest):
            pieces.append(rest)
            break
        cut = rest.rfind("\n", 0, fit + 1)
        if cut < fit // 2:
            cut = rest.rfind(" ", 0, fit + 1)
        if cut < fit // 2:
            pieces.append(rest[:fit])
            rest = rest[fit:]
        else:
            pieces.append(rest[:cut].rstrip("\n"))
            rest = rest[cut + 1 :].lstrip("\n")
    return [piece for piece in pieces if piece.strip()]


def _fitting(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 units."""
    units = 0
    for index, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


async def send_reply(bot: Bot, chat_id: int | str, reply: Reply) -> list[Message]:
    """Send ``reply`` to ``chat_id``; an empty reply sends nothing. Returns what was sent."""
    attachments = [a for a in (reply.document, reply.image) if a is not None]
    text = reply.text.strip()
    caption: str | None = None
    if len(attachments) == 1 and text and utf16_length(text) <= MAX_CAPTION:
        caption, text = text, ""
    sent = [await bot.send_message(chat_id, piece) for piece in split_text(text)]
    if reply.document is not None:
        sent.append(await _send_document(bot, chat_id, reply.document, caption))
    if reply.image is not None:
        sent.append(await _send_image(bot, chat_id, reply.image, caption))
    return sent


async def _send_document(
    bot: Bot, chat_id: int | str, attachment: Attachment, caption: str | None
) -> Message:
    return await bot.send_document(
        chat_id, document=attachment.data, filename=attachment.filename, caption=caption
    )


async def _send_image(
    bot: Bot, chat_id: int | str, attachment: Attachment, caption: str | None
) -> Message:
    try:
        return await bot.send_photo(
            chat_id, photo=attachment.data, filename=attachment.filename, caption=caption
        )
    except BadRequest as err:
        # Telegram refuses photos it cannot process (size, proportions); a file always goes.
        log.warning("Telegram refused the image as a photo (%s); sending it as a file", err)
        return await _send_document(bot, chat_id, attachment, caption)
