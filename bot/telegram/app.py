"""The Telegram admin bot: a python-telegram-bot application living inside ``serve``.

The application is driven by hand (initialize → start → polling or our own webhook route)
rather than by ``run_polling``, which would take over the event loop aiohttp runs on. PTB's
job queue is off: the service has one scheduler.

The handlers live in :mod:`bot.telegram.admin_chat`; what stays here is the application's
life: starting it (polling or webhook), our webhook route, and stopping it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import ApplicationBuilder

from bot.alerts import AlertHub
from bot.services import SERVICES, Services
from bot.telegram.admin_chat import AdminChat
from bot.telegram.commands import register_commands
from bot.telegram.handle import TelegramApp, TelegramHandle
from bot.wiring import build_interpreter
from handlers.interpreter import Interpreter

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: only new messages: edits of old commands are not run again
ALLOWED_UPDATES = [Update.MESSAGE]


class TelegramStartError(RuntimeError):
    """The bot cannot start: a rejected token, an unreachable API, a missing setting."""


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
    AdminChat(handle).install(application)
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
        await register_commands(application)
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


async def _close(application: TelegramApp) -> None:
    if application.updater is not None and application.updater.running:
        await application.updater.stop()
    if application.running:
        await application.stop()
    await application.shutdown()
