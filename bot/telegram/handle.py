"""The running Telegram bot as the rest of ``serve`` sees it: the PTB application, the
interpreter it feeds, and the little state the chat keeps between messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from telegram.ext import Application

from bot.services import Services
from handlers.interpreter import Interpreter

TelegramApp = Application[Any, Any, Any, Any, Any, Any]


@dataclass
class AwaitedCsv:
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
    awaited_csv: dict[int, AwaitedCsv] = field(default_factory=dict)
