"""The engine's MessageSender, twice: the real Graph API, and a console dry run.

Errors become values here (``Rejected`` with Meta's code), so the engine decides what they
mean without knowing anything about HTTP.
"""

from __future__ import annotations

import itertools
import logging
import sys
from typing import Any, TextIO

from bot.whatsapp.client import GraphClient
from bot.whatsapp.errors import WhatsAppApiError, WhatsAppError
from bot.whatsapp.messages import media_message, template_message, text_message
from scheduler.phones import mask_phone
from scheduler.policy import Accepted, Outcome, Rejected
from scheduler.ports import OutgoingMessage

log = logging.getLogger(__name__)


def graph_payload(message: OutgoingMessage) -> dict[str, Any]:
    """The Cloud API JSON for one rendered message."""
    if message.kind == "template":
        assert message.template_name and message.template_language
        return template_message(
            message.to,
            message.template_name,
            message.template_language,
            message.template_params,
            header=message.template_header,
            callback_data=message.callback_data,
        )
    if message.kind == "media":
        assert message.media_type and message.media_url
        return media_message(
            message.to,
            message.media_type,
            message.media_url,
            caption=message.text or None,
            callback_data=message.callback_data,
        )
    return text_message(message.to, message.text, callback_data=message.callback_data)


class GraphSender:
    dry_run = False

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    async def send(self, message: OutgoingMessage) -> Outcome:
        try:
            result = await self.client.send(graph_payload(message))
        except WhatsAppApiError as err:
            return Rejected(err.code, err.describe(), in_doubt=err.in_doubt)
        except WhatsAppError as err:
            return Rejected(None, str(err), in_doubt=True)
        return Accepted(result.wamid)


class ConsoleSender:
    """Prints each message instead of sending it: the no-configuration default."""

    dry_run = True

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._ids = itertools.count(1)

    async def send(self, message: OutgoingMessage) -> Outcome:
        stream = self._stream or sys.stdout
        if message.kind == "template":
            body = f"template {message.template_name} ({message.template_language}) " + " | ".join(
                message.template_params
            )
        elif message.kind == "media":
            body = f"{message.media_type} {message.media_url} | {message.text}"
        else:
            body = message.text
        print(f"[dry-run] to {mask_phone(message.to)}: {body}", file=stream, flush=True)
        return Accepted(f"dryrun.{next(self._ids)}")
