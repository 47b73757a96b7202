"""A WhatsApp Cloud API client that depends on nothing else in this project.

Payload builders, the Graph client, and the error catalogue could be published on their own.
"""

from __future__ import annotations

from bot.whatsapp.client import GraphClient, MediaInfo, SendResult
from bot.whatsapp.errors import (
    ERROR_MEANINGS,
    MediaTooLargeError,
    WhatsAppApiError,
    WhatsAppError,
    WhatsAppTransportError,
    describe_code,
)
from bot.whatsapp.messages import media_message, recipient, template_message, text_message

__all__ = [
    "ERROR_MEANINGS",
    "GraphClient",
    "MediaInfo",
    "MediaTooLargeError",
    "SendResult",
    "WhatsAppApiError",
    "WhatsAppError",
    "WhatsAppTransportError",
    "describe_code",
    "media_message",
    "recipient",
    "template_message",
    "text_message",
]
