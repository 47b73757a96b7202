"""Commands as the Telegram bot sees them: the menu it registers with Telegram, and the
parse that tells a command from any other text before the interpreter runs it.
"""

from __future__ import annotations

import logging
import re

from telegram import BotCommand
from telegram.error import TelegramError

from bot.telegram.handle import TelegramApp
from handlers.grammar import UsageError, parse
from handlers.help import ENTRIES

log = logging.getLogger(__name__)

#: what Telegram accepts as a command name in the menu
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


def bot_commands() -> list[BotCommand]:
    """The command menu: every command whose name Telegram accepts (not "pause sending")."""
    return [
        BotCommand(entry.name, entry.summary[:256])
        for entry in ENTRIES
        if _COMMAND_NAME.fullmatch(entry.name)
    ]


async def register_commands(application: TelegramApp) -> None:
    try:
        await application.bot.set_my_commands(bot_commands())
    except TelegramError as err:
        log.warning("could not register the command menu with Telegram: %s", err)


def parsed_command(text: str) -> object:
    try:
        return parse(text)
    except UsageError:
        return None
