"""What the admin bot does with each kind of message.

Every text goes to the shared interpreter, which decides who is an admin (anyone else gets
one refusal, then silence) and what a command means; one handler for all texts, not one per
command, so multi-line commands such as ``/newsequence`` arrive whole. What is Telegram's
own is handled here: CSV documents (:mod:`bot.telegram.csv_uploads`) and answering a lead by
replying to their forwarded message (takeover).
"""

from __future__ import annotations

import logging

from telegram import Chat, Update, User
from telegram.error import Conflict, NetworkError, TelegramError
from telegram.ext import ContextTypes, MessageHandler, filters

from bot.telegram.commands import parsed_command
from bot.telegram.csv_uploads import CsvUploads
from bot.telegram.handle import TelegramApp, TelegramHandle
from bot.telegram.render import send_reply
from handlers.commands import Enroll
from handlers.replies import Actor, Reply
from handlers.takeover import answer_lead, forwarded_contact
from scheduler.errors import EngineError
from scheduler.timing import local_time_label

log = logging.getLogger(__name__)

NOT_A_COMMAND = (
    "I understand commands: send /help for the list. To answer a lead, reply to their "
    "forwarded message."
)
OTHER_MESSAGE = (
    "I understand commands (send /help) and CSV files sent with the caption /enroll <seq>."
)


class AdminChat:
    """The handlers: what the bot does with each kind of message."""

    def __init__(self, handle: TelegramHandle) -> None:
        self.handle = handle
        self.services = handle.services
        self.interpreter = handle.interpreter
        self.csv = CsvUploads(handle)

    def install(self, application: TelegramApp) -> None:
        application.add_handler(MessageHandler(filters.Document.ALL, self.on_document))
        application.add_handler(MessageHandler(filters.TEXT, self.on_text))
        application.add_handler(
            MessageHandler(filters.ALL & ~filters.StatusUpdate.ALL, self.on_other)
        )
        application.add_error_handler(self.on_error)

    # -- texts -----------------------------------------------------------------------------

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user, chat = update.effective_message, update.effective_user, update.effective_chat
        if message is None or user is None or chat is None or message.text is None:
            return
        actor = _actor(user, chat)
        text = message.text
        if not self.interpreter.is_admin(actor):
            await self._answer(context, chat.id, await self.interpreter.run(actor, text))
            return
        if not text.lstrip().startswith("/"):
            quoted = message.reply_to_message
            contact_id = (
                None
                if quoted is None
                else await forwarded_contact(self.services.db, chat.id, quoted.message_id)
            )
            reply = (
                Reply(NOT_A_COMMAND, ok=False)
                if contact_id is None
                else await self._take_over(contact_id, text)
            )
            await self._answer(context, chat.id, reply)
            return
        command = parsed_command(text)
        if isinstance(command, Enroll) and not command.entries and command.csv_path is None:
            await self._answer(context, chat.id, await self.csv.await_csv(chat.id, text, command))
            return
        await self._answer(context, chat.id, await self.interpreter.run(actor, text))

    async def _take_over(self, contact_id: int, text: str) -> Reply:
        services = self.services
        try:
            done = await answer_lead(
                services.db, services.clock, services.options, contact_id, text
            )
        except EngineError as err:
            return Reply(f"Not sent: {err}.", ok=False)
        zone = services.settings.timezone
        if done.hold_until > services.clock.now():
            hold = f"their drips are on hold until {local_time_label(done.hold_until, zone)}"
        else:
            hold = "their drips are not held (DRIPBOT_TAKEOVER_HOURS is 0)"
        lines = [f"Sent to {done.label}; {hold}."]
        if not done.window_open:
            lines.append(
                "They last wrote more than 24 hours ago, so WhatsApp may refuse a free text."
            )
        return Reply("\n".join(lines))

    # -- documents -------------------------------------------------------------------------

    async def on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user, chat = update.effective_message, update.effective_user, update.effective_chat
        if message is None or user is None or chat is None or message.document is None:
            return
        actor = _actor(user, chat)
        caption = (message.caption or "").strip()
        if not self.interpreter.is_admin(actor):
            await self._answer(context, chat.id, await self.interpreter.run(actor, caption))
            return
        reply = await self.csv.import_csv(context, chat.id, actor, message.document, caption)
        await self._answer(context, chat.id, reply)

    # -- anything else ---------------------------------------------------------------------

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None:
            return
        actor = _actor(user, chat)
        if self.interpreter.is_admin(actor):
            await self._answer(context, chat.id, Reply(OTHER_MESSAGE, ok=False))
        else:
            await self._answer(context, chat.id, await self.interpreter.run(actor, ""))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        if not isinstance(update, Update):
            # Trouble fetching updates: PTB retries by itself, with a growing pause.
            if isinstance(err, NetworkError | Conflict):
                log.warning("fetching Telegram updates failed (retrying): %s", err)
            else:
                log.error("fetching Telegram updates failed", exc_info=err)
            return
        log.error("a Telegram update failed", exc_info=err)
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or not self.interpreter.is_admin(_actor(user, chat)):
            return
        what = str(err) if err is not None and str(err) else type(err).__name__
        try:
            await context.bot.send_message(
                chat.id, f"Something went wrong: {what}. The details are in the server log."
            )
        except TelegramError as send_err:
            log.warning("could not tell chat %s about the failure: %s", chat.id, send_err)

    async def _answer(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply) -> None:
        await send_reply(context.bot, chat_id, reply)


def _actor(user: User, chat: Chat) -> Actor:
    return Actor("telegram", str(user.id), chat_id=str(chat.id), name=user.full_name)
