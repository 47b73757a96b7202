"""Logging for a running dripbot: one stderr handler, phone numbers masked, secrets never.

Masking happens in the formatter, on the finished line (tracebacks included), so a number or
token that reaches a log through an exception message or a third-party library is caught as
well as our own calls. Library chatter that would drown the useful lines is turned down.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.config import Settings
from scheduler.phones import mask_phone

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MIN_SECRET_LENGTH = 4

#: ``+4915123456789`` anywhere, and bare WhatsApp ids (country code, no ``+``) of 10-15 digits
_E164 = re.compile(r"(?<![\w+])\+\d{7,15}(?!\d)")
_WA_ID = re.compile(r"(?<![\w.:/+-])\d{10,15}(?![\w.])")
#: credentials with a recognisable shape, even when they are not ours
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+")
_TELEGRAM = re.compile(r"(?<!\d)\d{6,12}:[A-Za-z0-9_-]{30,}")
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]+:)[^@\s]+(@)")

#: libraries whose INFO lines are per request or per job run
_QUIET = ("apscheduler", "aiosqlite", "httpx", "httpcore", "alembic.runtime.migration")


def mask_line(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with secrets, credentials and phone numbers hidden."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    text = _TELEGRAM.sub("***", text)
    text = _URL_PASSWORD.sub(r"\1***\2", text)
    text = _E164.sub(lambda m: mask_phone(m.group(0)), text)
    return _WA_ID.sub(lambda m: mask_phone("+" + m.group(0)).removeprefix("+"), text)


class MaskingFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = (), fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        # Longest first, so a secret that contains another is hidden whole. A value of a few
        # characters would blank out ordinary words, and guards nothing worth the noise.
        usable = {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        self.secrets = sorted(usable, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return mask_line(super().format(record), self.secrets)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the call (it may be replaced)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value, so the log formatter can hide it."""
    values = [
        settings.whatsapp_token,
        settings.whatsapp_app_secret,
        settings.whatsapp_verify_token,
        settings.telegram_token,
        settings.telegram_webhook_secret,
    ]
    found = [v.get_secret_value() for v in values if v is not None]
    try:
        password = make_url(settings.database_url).password
    except ArgumentError:
        password = None
    if password:
        found.append(str(password))
    return found


def safe_url(url: str) -> str:
    """A database URL fit for a log line (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return mask_line(url)


def configure_logging(settings: Settings) -> None:
    """Install dripbot's handler on the root logger (again on each call, never twice)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(MaskingFormatter(secrets_of(settings)))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in _QUIET:
        # At DEBUG everything speaks; otherwise these only warn.
        logging.getLogger(name).setLevel(
            logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
        )
