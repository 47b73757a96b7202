"""The Telegram admin bot: a python-telegram-bot application living inside ``serve``.

The application is driven by hand (initialize → start → polling or our own webhook route)
rather than by ``run_polling``, which would take over the event loop aiohttp runs on. PTB's
job queue is off: the service has one scheduler.

Every text goes to the shared interpreter, which decides who is an admin (anyone else gets
one refusal, then silence) and what a command means; one handler for all texts, not one per
command, so multi-line commands such as ``/newsequence`` arrive whole. What is Telegram's
own stays here: CSV documents (a caption ``/enroll <seq>``, or the file sent just after an
``/enroll <seq>`` without numbers), the command menu, and answering a lead by replying to
their forwarded message (takeover).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from telegram import BotCommand, Chat, Document, Update, User
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from bot.alerts import AlertHub
from bot.services import SERVICES, Services
from bot.telegram.render import send_reply
from bot.wiring import build_interpreter
from handlers.commands import Enroll
from handlers.grammar import UsageError, parse
from handlers.help import ENTRIES
from handlers.interpreter import Interpreter
from handlers.replies import Actor, Reply, Upload
from handlers.takeover import answer_lead, forwarded_contact
from scheduler.errors import EngineError
from scheduler.sequences import find_sequence
from scheduler.timing import local_time_label

log = logging.getLogger(__name__)

TelegramApp = Application[Any, Any, Any, Any, Any, Any]

WEBHOOK_PATH = "/webhook/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: only new messages: edits of old commands are not run again
ALLOWED_UPDATES = [Update.MESSAGE]
#: how long a CSV file is awaited after an ``/enroll <seq>`` without numbers
CSV_WAIT = timedelta(minutes=10)
#: api.telegram.org lets bots download files up to this size; a local Bot API server does not
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
OFFICIAL_API = "https://api.telegram.org"
#: above this size the admin is told the import is under way
LARGE_FILE = 1024 * 1024
CSV_TYPES = frozenset({"text/csv", "text/comma-separated-values", "application/csv"})
#: what Telegram accepts as a command name in the menu
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")

NOT_A_COMMAND = (
    "I understand commands: send /help for the list. To answer a lead, reply to their "
    "forwarded message."
)
NOT_CSV = "I only read CSV files: send a .csv file with the caption /enroll <seq>."
CSV_NEEDS_ENROLL = "A CSV file goes with /enroll <seq> as its caption (e.g. /enroll tips)."
WHICH_SEQUENCE = (
    "Which sequence should these contacts join? Send the file again with the caption "
    "/enroll <seq>, or send /enroll <seq> first and then the file."
)
OTHER_MESSAGE = (
    "I understand commands (send /help) and CSV files sent with the caption /enroll <seq>."
)


class TelegramStartError(RuntimeError):
    """The bot cannot start: a rejected token, an unreachable API, a missing setting."""


@dataclass
class _AwaitedCsv:
    command_text: str
    until: datetime


@dataclass
class TelegramHandle:
    """The running bot, kept in ``services.extras["telegram"]``."""

    application: TelegramApp
    services: Services
    interpreter: Interpreter
    mode: Literal["polling", "webhook"]
    #: the secret Telegram echoes in every webhook call (webhook mode only)
    webhook_secret: str | None = None
    awaited_csv: dict[int, _AwaitedCsv] = field(default_factory=dict)


async def start_telegram(services: Services) -> TelegramHandle | None:
    """Start the admin bot, or return None (one log line) when no token is configured.

    Raises :class:`TelegramStartError` when Telegram rejects the token or cannot be reached,
    and when webhook mode lacks its public URL.
    """
    settings = services.settings
    if settings.telegram_token is None:
        log.info("no Telegram bot: DRIPBOT_TELEGRAM_TOKEN is not set")
        return None
    token = settings.telegram_token.get_secret_value()
    secret: str | None = None
    if settings.telegram_mode == "webhook":
        if not settings.telegram_webhook_url:
            raise TelegramStartError(
                "DRIPBOT_TELEGRAM_MODE is webhook but DRIPBOT_TELEGRAM_WEBHOOK_URL is not set "
                f"(the public https URL of {WEBHOOK_PATH})"
            )
        secret = webhook_secret(settings.telegram_webhook_secret, token)
    interpreter = services.extras.get("interpreter")
    if not isinstance(interpreter, Interpreter):
        interpreter = build_interpreter(
            settings, services.db, services.clock, alerts=services.alerts, locks=services.locks
        )
        services.extras["interpreter"] = interpreter
    application = build_application(services, token)
    handle = TelegramHandle(application, services, interpreter, settings.telegram_mode, secret)
    _AdminChat(handle).install(application)
    root = settings.telegram_api_url
    try:
        await application.initialize()  # getMe: a bad token fails here
    except InvalidToken as err:
        await application.bot.shutdown()
        raise TelegramStartError(
            f"Telegram rejected DRIPBOT_TELEGRAM_TOKEN ({err}); check the token from @BotFather"
        ) from err
    except TelegramError as err:
        await application.bot.shutdown()
        raise TelegramStartError(f"cannot reach the Telegram Bot API at {root}: {err}") from err
    try:
        await application.start()
        await _register_commands(application)
        if secret is not None:
            await application.bot.set_webhook(
                str(settings.telegram_webhook_url),
                secret_token=secret,
                allowed_updates=ALLOWED_UPDATES,
            )
        else:
            assert application.updater is not None
            await application.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
    except TelegramError as err:
        await _close(application)
        raise TelegramStartError(f"the Telegram bot could not start: {err}") from err
    except BaseException:
        await _close(application)
        raise
    if isinstance(services.alerts, AlertHub):
        services.alerts.attach_telegram(application.bot)
    services.extras["telegram"] = handle
    how = f"webhook at {settings.telegram_webhook_url}" if secret else "polling"
    log.info("Telegram bot @%s is up (%s)", application.bot.username, how)
    return handle


async def stop_telegram(handle: TelegramHandle) -> None:
    """Deliver queued alerts, stop taking updates, and close the bot's HTTP clients."""
    services = handle.services
    if isinstance(services.alerts, AlertHub):
        await services.alerts.detach_telegram()
    await _close(handle.application)
    if services.extras.get("telegram") is handle:
        del services.extras["telegram"]


def build_application(services: Services, token: str) -> TelegramApp:
    root = services.settings.telegram_api_url
    builder = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        .job_queue(None)
    )
    if services.settings.telegram_mode == "webhook":
        builder = builder.updater(None)
    application: TelegramApp = builder.build()
    return application


def webhook_secret(configured: Any, token: str) -> str:
    """The configured secret, or one derived from the token (Telegram allows [A-Za-z0-9_-])."""
    if configured is not None:
        value = str(configured.get_secret_value())
        if value:
            return value
    return hashlib.sha256(f"dripbot-telegram-webhook:{token}".encode()).hexdigest()


def telegram_routes(handle: TelegramHandle | None = None) -> list[web.RouteDef]:
    """``POST /webhook/telegram``, feeding Telegram's updates to the running bot.

    Routes must exist before the aiohttp app starts, while the bot starts later (in a
    ``cleanup_ctx``): without ``handle`` the route finds the bot in
    ``services.extras["telegram"]`` on each call and answers 404 while there is none.
    """

    async def receive(request: web.Request) -> web.StreamResponse:
        current = handle or request.app[SERVICES].extras.get("telegram")
        if not isinstance(current, TelegramHandle) or current.webhook_secret is None:
            raise web.HTTPNotFound()
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), current.webhook_secret.encode()):
            log.warning("Telegram webhook call without the right secret token; ignored")
            raise web.HTTPUnauthorized()
        try:
            data = await request.json()
            update = Update.de_json(data, current.application.bot)
        except Exception:
            # Telegram would resend a refused update for ever: acknowledge and log it.
            log.warning("unreadable Telegram update ignored", exc_info=True)
            return web.Response(text="ignored")
        await current.application.update_queue.put(update)
        return web.Response(text="ok")

    return [web.post(WEBHOOK_PATH, receive)]


def bot_commands() -> list[BotCommand]:
    """The command menu: every command whose name Telegram accepts (not "pause sending")."""
    return [
        BotCommand(entry.name, entry.summary[:256])
        for entry in ENTRIES
        if _COMMAND_NAME.fullmatch(entry.name)
    ]


async def _register_commands(application: TelegramApp) -> None:
    try:
        await application.bot.set_my_commands(bot_commands())
    except TelegramError as err:
        log.warning("could not register the command menu with Telegram: %s", err)


async def _close(application: TelegramApp) -> None:
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    if application.running:
        await application.stop()
    await application.shutdown()


class _AdminChat:
    """The handlers: what the bot does with each kind of message."""

    def __init__(self, handle: TelegramHandle) -> None:
        self.handle = handle
        self.services = handle.services
        self.interpreter = handle.interpreter

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
        command = _parsed(text)
        if isinstance(command, Enroll) and not command.entries and command.csv_path is None:
            await self._answer(context, chat.id, await self._await_csv(chat.id, text, command))
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

    async def _await_csv(self, chat_id: int, text: str, command: Enroll) -> Reply:
        services = self.services
        try:
            async with services.db.engine.connect() as conn:
                sequence = await find_sequence(conn, services.db.workspace_id, command.sequence)
        except EngineError as err:
            return Reply(_sentence(str(err)), ok=False)
        until = services.clock.now() + CSV_WAIT
        self.handle.awaited_csv[chat_id] = _AwaitedCsv(text, until)
        minutes = int(CSV_WAIT.total_seconds() // 60)
        return Reply(
            f"Send the CSV file now (within {minutes} minutes) and I will enroll its rows into "
            f"{sequence.name!r}. Or type the numbers: /enroll {command.sequence}, then one "
            "'<phone> [name]' per line."
        )

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
        reply = await self._import_csv(context, chat.id, actor, message.document, caption)
        await self._answer(context, chat.id, reply)

    async def _import_csv(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        chat_id: int,
        actor: Actor,
        document: Document,
        caption: str,
    ) -> Reply:
        if not _is_csv(document):
            return Reply(NOT_CSV, ok=False)
        if caption:
            command = _parsed(caption)
            if not isinstance(command, Enroll):
                return Reply(CSV_NEEDS_ENROLL, ok=False)
            command_text = caption
        else:
            awaited = self.handle.awaited_csv.pop(chat_id, None)
            if awaited is None or awaited.until < self.services.clock.now():
                return Reply(WHICH_SEQUENCE, ok=False)
            command_text = awaited.command_text
        name = document.file_name or "contacts.csv"
        limit = self.services.settings.csv_max_bytes
        size = document.file_size
        if size is not None and size > limit:
            return Reply(_too_big(name, size, limit), ok=False)
        official = self.services.settings.telegram_api_url == OFFICIAL_API
        if official and size is not None and size > TELEGRAM_DOWNLOAD_LIMIT:
            return Reply(
                f"{name} is {human_size(size)}, and Telegram lets bots download files of up "
                f"to {human_size(TELEGRAM_DOWNLOAD_LIMIT)}. Nothing was imported: split it into "
                "smaller files, or point DRIPBOT_TELEGRAM_API_URL at a local Bot API server.",
                ok=False,
            )
        if size is not None and size >= LARGE_FILE:
            await context.bot.send_message(chat_id, f"Reading {name} ({human_size(size)})…")
        file = await document.get_file(read_timeout=60)
        data = bytes(await file.download_as_bytearray(read_timeout=300))
        if len(data) > limit:
            return Reply(_too_big(name, len(data), limit), ok=False)
        return await self.interpreter.run(actor, command_text, Upload(name, data))

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


def _parsed(text: str) -> object:
    try:
        return parse(text)
    except UsageError:
        return None


def _is_csv(document: Document) -> bool:
    name = (document.file_name or "").lower()
    return name.endswith(".csv") or (document.mime_type or "").lower() in CSV_TYPES


def _too_big(name: str, size: int, limit: int) -> str:
    return (
        f"{name} is {human_size(size)}, over the {human_size(limit)} limit for a CSV file "
        "(DRIPBOT_CSV_MAX_BYTES). Nothing was imported: split it into smaller files and send "
        "them one by one."
    )


def human_size(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else "Something went wrong."
