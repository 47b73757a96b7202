"""The WhatsApp webhook: ``GET``/``POST /webhook/whatsapp``.

``GET`` is Meta's subscription handshake. A ``POST`` is checked (an app secret must be
configured, the body must fit under the size cap and carry Meta's signature, and it must be
JSON), then handed to the inbox (:mod:`bot.inbox`) and answered only once the inbox has stored
it, so a crash after the 200 loses nothing; processing happens after the answer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from bot.config import Settings
from bot.inbox import Inbox
from bot.metrics import Metrics
from bot.services import SERVICES
from bot.whatsapp.signature import verify
from storage.database import UNAVAILABLE

log = logging.getLogger(__name__)

PATH: Final = "/webhook/whatsapp"
SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_READ_CHUNK: Final = 64 * 1024


INBOX: Final = web.AppKey("whatsapp_inbox", Inbox)


def setup_webhook(app: web.Application) -> None:
    """Add the webhook routes and the inbox's lifecycle; ``app[SERVICES]`` must be set by
    an earlier ``cleanup_ctx``."""
    app[INBOX] = Inbox()
    app.router.add_get(PATH, verify_subscription)
    app.router.add_post(PATH, receive)
    app.cleanup_ctx.append(_inbox_lifecycle)


async def _inbox_lifecycle(app: web.Application) -> AsyncIterator[None]:
    inbox = app[INBOX]
    await inbox.start(app[SERVICES])
    try:
        yield
    finally:
        await inbox.stop()


async def verify_subscription(request: web.Request) -> web.Response:
    """Meta's handshake: echo ``hub.challenge`` when the verify token matches."""
    settings = request.app[SERVICES].settings
    expected = settings.whatsapp_verify_token
    query = request.query
    token = query.get("hub.verify_token", "")
    if (
        expected is not None
        and query.get("hub.mode") == "subscribe"
        and hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        return web.Response(text=query.get("hub.challenge", ""))
    return web.Response(status=403, text="verification failed")


async def receive(request: web.Request) -> web.Response:
    """Check, store, answer; processing happens after the answer."""
    inbox = request.app[INBOX]
    services = request.app[SERVICES]
    status, result, text = await _receive(request, inbox, services.settings)
    inbox.stats.received += 1
    if status != 200:
        inbox.stats.refused += 1
    metrics = services.extras.get("metrics")
    if isinstance(metrics, Metrics):
        metrics.webhooks.labels(result=result).inc()
    return web.Response(status=status, text=text)


async def _receive(request: web.Request, inbox: Inbox, settings: Settings) -> tuple[int, str, str]:
    """(HTTP status, result label for /metrics, answer text)."""
    secret = settings.whatsapp_app_secret
    if secret is None:
        inbox.warn_no_secret()
        return 401, "not_configured", "no app secret configured"
    limit = settings.webhook_max_bytes
    raw = await _read_capped(request, limit)
    if raw is None:
        return 413, "too_large", f"body over {limit} bytes"
    if not verify(raw, request.headers.get(SIGNATURE_HEADER), secret.get_secret_value()):
        return 401, "bad_signature", "bad signature"
    try:
        body = raw.decode("utf-8")
        payload = json.loads(body)
    except ValueError:
        return 400, "malformed", "malformed JSON"
    try:
        await inbox.store(body, payload)
    except UNAVAILABLE as err:
        # Meta retries for days: while the database is away, one line per refused POST
        log.warning(
            "webhook body not stored, database unavailable (%s); answered 503", type(err).__name__
        )
        return 503, "not_stored", "not stored, try again"
    except Exception:
        log.exception("webhook body not stored; Meta will retry it")
        return 503, "not_stored", "not stored, try again"
    return 200, "stored", "OK"


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it is over ``limit`` bytes (the app's own cap may be
    smaller than Meta's 3 MB, so the stream is read directly)."""
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            return None
        try:
            return await request.content.readexactly(declared)
        except asyncio.IncompleteReadError as err:
            return err.partial  # a short body cannot carry a valid signature
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
