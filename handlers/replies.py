"""What every channel gets back from a command: a value each channel renders its own way."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    #: False when the command was refused or failed (the text says why)
    ok: bool = True
    document: Attachment | None = None
    image: Attachment | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is asking: ``channel`` is telegram, whatsapp or cli; ``identifier`` the user id
    or E.164 number. ``chat_id`` is where answers go (Telegram chat, WhatsApp number)."""

    channel: str
    identifier: str
    chat_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Upload:
    """A document that came with a command (a CSV to enroll)."""

    filename: str
    data: bytes
