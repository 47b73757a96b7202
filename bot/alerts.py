"""Alerts to the admins: every Telegram admin chat, admin WhatsApp numbers, and the log.

:class:`AlertHub` implements the engine's ``Alerts`` port. The engine calls it from the middle
of its work (a dispatch batch, an inbound webhook), so it must never raise and never make the
caller wait on Telegram: an alert is logged at once and queued for a worker that owns the
Telegram side. The worker merges a burst of alerts into one message per chat (a mass opt-out
is one message, not hundreds), waits out Telegram's flood control, and gives up quietly on a
chat that blocked the bot.

A lead's reply (kind ``reply`` with a ``contact_id``) always gets a message of its own: each
chat message is recorded with the contact, so an admin can answer the lead by replying to it
(see :mod:`handlers.takeover`).

Admin WhatsApp numbers get alerts through the outbox as ``notice`` messages, only while their
24-hour window is open (free text outside it would be refused and cost a template).
"""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar

from sqlalchemy import insert, select
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.config import Settings
from bot.telegram.render import MAX_TEXT, send_reply, split_text, utf16_length
from bot.wiring import admins_from
from handlers.replies import Attachment, Reply
from handlers.takeover import record_forward
from scheduler.clock import Clock
from scheduler.phones import mask_phone
from storage.database import Database
from storage.models import Contact, OutboundMessage
from storage.states import MessageStatus

log = logging.getLogger(__name__)
#: the alert lines themselves, under the same name the engine's fallback channel uses
alert_log = logging.getLogger("dripbot.alerts")

T = TypeVar("T")

WINDOW = timedelta(hours=24)
#: alerts waiting for Telegram beyond this are dropped (and counted), never piled up for ever
QUEUE_SIZE = 1000
#: attempts per chat message: flood control and network trouble are retried, others are not
ATTEMPTS = 3
#: the longest flood-control pause the worker honours before trying again
MAX_RETRY_AFTER = 60.0
#: kinds that are news, not trouble: logged at INFO
QUIET_KINDS = frozenset(
    {"reply", "opt_out", "opt_in", "keyword_enroll", "daily_summary", "sequence_finished"}
)
#: kinds not worth a WhatsApp notice: sending is paused, so the notice would wait behind it
NO_WHATSAPP_KINDS = frozenset({"sending_paused"})
#: how many recent alerts :attr:`AlertHub.sent` keeps, for status pages and tests
RECENT = 200
TAKEOVER_HINT = "↩ Reply to this message to answer them on WhatsApp."

_PHONE = re.compile(r"\+\d{7,15}")


@dataclass(frozen=True, slots=True)
class _Alert:
    kind: str
    text: str
    contact_id: int | None = None


class AlertHub:
    """Fans every alert out to the admin chats; see the module docstring."""

    def __init__(self, settings: Settings, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.telegram_chats: tuple[int, ...] = tuple(dict.fromkeys(settings.admin_telegram_ids))
        self.whatsapp_numbers: frozenset[str] = admins_from(settings).whatsapp_numbers
        self.takeover_hours = settings.takeover_hours
        #: the latest alerts as (kind, text), oldest first (as the log fallback keeps them)
        self.sent: list[tuple[str, str]] = []
        #: alerts dropped because the Telegram queue was full
        self.dropped = 0
        self._bot: Bot | None = None
        self._queue: asyncio.Queue[_Alert] = asyncio.Queue(QUEUE_SIZE)
        self._worker: asyncio.Task[None] | None = None
        self._unreachable: set[int] = set()

    # -- Telegram lifecycle ------------------------------------------------------------------

    @property
    def telegram_attached(self) -> bool:
        return self._bot is not None

    def attach_telegram(self, bot: Bot) -> None:
        """Start delivering to the Telegram admin chats through ``bot``.

        Call it from a running event loop: it starts the delivery worker.
        """
        if self._worker is not None:
            raise RuntimeError("a Telegram bot is already attached")
        self._bot = bot
        self._worker = asyncio.get_running_loop().create_task(
            self._deliver_forever(), name="dripbot-alerts"
        )

    async def detach_telegram(self, grace: float = 5.0) -> None:
        """Deliver what is queued (for at most ``grace`` seconds), then stop the worker."""
        if self._worker is None:
            return
        await self.flush(grace)
        self._worker.cancel()
        await asyncio.wait({self._worker})  # never raises the worker's cancellation here
        self._worker = None
        self._bot = None
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()

    async def flush(self, timeout: float = 10.0) -> bool:  # noqa: ASYNC109 - bounded by design
        """Wait until every queued alert went out (or failed); False if ``timeout`` passed."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            return False
        return True

    # -- the Alerts port ---------------------------------------------------------------------

    async def alert(self, text: str, *, kind: str, contact_id: int | None = None) -> None:
        """Tell the admins. Never raises: a failing channel is logged, the others still go."""
        try:
            self._remember(kind, text)
            if self._bot is not None and self.telegram_chats:
                try:
                    self._queue.put_nowait(_Alert(kind, text, contact_id))
                except asyncio.QueueFull:
                    self.dropped += 1
                    log.warning("alert queue full: dropped a %s alert for Telegram", kind)
            if kind not in NO_WHATSAPP_KINDS:
                await self._notify_whatsapp(text)
        except Exception:
            log.exception("could not pass on a %s alert", kind)

    async def broadcast(self, text: str, *, kind: str, image: bytes | None = None) -> int:
        """Send now, with an optional PNG, to every admin chat; returns how many it reached.

        For the daily summary, whose caller needs to know whether anyone got it. Never raises.
        """
        reached = 0
        try:
            self._remember(kind, text)
            reply = Reply(
                text, image=Attachment("stats.png", image, "image/png") if image else None
            )
            if self._bot is not None:
                bot = self._bot
                for chat in self.telegram_chats:
                    sent = await self._attempt(chat, partial(send_reply, bot, chat, reply))
                    reached += sent is not None
            reached += await self._notify_whatsapp(text)
        except Exception:
            log.exception("could not broadcast a %s message", kind)
        return reached

    async def open_whatsapp_admins(self) -> list[int]:
        """Contact ids of admin WhatsApp numbers whose 24-hour window is open now."""
        if not self.whatsapp_numbers:
            return []
        since = self.clock.now() - WINDOW
        async with self.db.engine.connect() as conn:
            found = await conn.execute(
                select(Contact.id).where(
                    Contact.workspace_id == self.db.workspace_id,
                    Contact.phone.in_(sorted(self.whatsapp_numbers)),
                    Contact.last_inbound_at > since,
                    Contact.opted_out_at.is_(None),
                )
            )
            return [int(contact_id) for contact_id in found.scalars()]

    # -- internals ---------------------------------------------------------------------------

    def _remember(self, kind: str, text: str) -> None:
        self.sent.append((kind, text))
        if len(self.sent) > RECENT:
            del self.sent[: len(self.sent) - RECENT]
        level = logging.INFO if kind in QUIET_KINDS else logging.WARNING
        alert_log.log(level, "[%s] %s", kind, _PHONE.sub(lambda m: mask_phone(m[0]), text))

    async def _notify_whatsapp(self, text: str) -> int:
        """Queue ``text`` as a notice to each admin number whose window is open."""
        recipients = await self.open_whatsapp_admins()
        if not recipients:
            return 0
        now = self.clock.now()
        body = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
        async with self.db.engine.begin() as conn:
            await conn.execute(
                insert(OutboundMessage),
                [
                    {
                        "workspace_id": self.db.workspace_id,
                        "contact_id": contact_id,
                        "purpose": "notice",
                        "status": MessageStatus.SCHEDULED.value,
                        "due_at": now,
                        "attempts": 0,
                        "payload": {"message": {"kind": "text", "text": body}},
                        "dry_run": False,
                        "business_initiated": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for contact_id in recipients
                ],
            )
        return len(recipients)

    async def _deliver_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._deliver(batch)
            except Exception:
                log.exception("delivering %d alert(s) to Telegram failed", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _deliver(self, batch: list[_Alert]) -> None:
        bot = self._bot
        if bot is None:
            return
        dropped, self.dropped = self.dropped, 0
        messages: list[tuple[str, int | None]] = []
        plain: list[str] = []
        for item in batch:
            if item.kind == "reply" and item.contact_id is not None:
                messages += [(text, None) for text in _packed(plain)]
                plain = []
                messages.append((_forward_text(item.text), item.contact_id))
            else:
                plain.append(item.text)
        if dropped:
            plain.append(f"({dropped} more alert(s) were dropped: too many at once; see the log)")
        messages += [(text, None) for text in _packed(plain)]
        for text, contact_id in messages:
            for chat in self.telegram_chats:
                sent = await self._attempt(chat, partial(bot.send_message, chat, text))
                if sent is not None and contact_id is not None:
                    await record_forward(
                        self.db, chat, sent.message_id, contact_id, now=self.clock.now()
                    )

    async def _attempt(self, chat: int, send: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``send`` for ``chat``, retrying flood control and network trouble."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                result = await send()
            except RetryAfter as err:
                await asyncio.sleep(min(_seconds(err), MAX_RETRY_AFTER))
            except Forbidden as err:
                if chat not in self._unreachable:
                    self._unreachable.add(chat)
                    log.warning(
                        "admin chat %s cannot be reached (%s): that admin must open the bot "
                        "in Telegram and send /start",
                        chat,
                        err,
                    )
                return None
            except BadRequest as err:
                log.warning("Telegram refused an alert for chat %s: %s", chat, err)
                return None
            except NetworkError as err:
                log.warning("Telegram unreachable for chat %s (attempt %d): %s", chat, attempt, err)
                await asyncio.sleep(attempt)
            except TelegramError as err:
                log.warning("Telegram refused an alert for chat %s: %s", chat, err)
                return None
            else:
                self._unreachable.discard(chat)
                return result
        log.warning("gave up on an alert for chat %s after %d attempts", chat, ATTEMPTS)
        return None


def _seconds(err: RetryAfter) -> float:
    # PTB 22 warns on reading retry_after unless PTB_TIMEDELTA is set; both forms are handled.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = err.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _forward_text(text: str) -> str:
    hinted = f"{text}\n\n{TAKEOVER_HINT}"
    return hinted if utf16_length(hinted) <= MAX_TEXT else split_text(text)[0]


def _packed(texts: list[str]) -> list[str]:
    """Join alerts with blank lines into as few messages as Telegram's limit allows."""
    messages: list[str] = []
    current = ""
    for text in texts:
        for piece in split_text(text):
            joined = f"{current}\n\n{piece}" if current else piece
            if utf16_length(joined) <= MAX_TEXT:
                current = joined
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages
