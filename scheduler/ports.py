"""What the engine needs from the outside world, as small protocols ``bot`` implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from scheduler.policy import Outcome

MessageKind = Literal["text", "media", "template"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One fully rendered WhatsApp message, channel-neutral."""

    to: str  # E.164 with "+"
    kind: MessageKind
    text: str = ""  # the text body, or the media caption
    media_type: str | None = None
    media_url: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_params: tuple[str, ...] = ()
    template_header: tuple[str, str] | None = None
    #: echoed back by Meta on status webhooks: names the outbox record
    callback_data: str | None = None

    def to_json(self) -> dict[str, object]:
        """What the outbox keeps of a sent message (for /contact, audits, resends)."""
        data: dict[str, object] = {"kind": self.kind}
        if self.kind == "template":
            data |= {
                "template": self.template_name,
                "language": self.template_language,
                "params": list(self.template_params),
            }
            if self.template_header:
                data["header"] = list(self.template_header)
        else:
            data["text"] = self.text
            if self.kind == "media":
                data |= {"media_type": self.media_type, "media_url": self.media_url}
        return data


class MessageSender(Protocol):
    """Sends one message; never raises for API errors, it returns them as values."""

    @property
    def dry_run(self) -> bool: ...

    async def send(self, message: OutgoingMessage) -> Outcome: ...


class Alerts(Protocol):
    """Tells the admins something (Telegram chats, admin WhatsApp numbers, the log)."""

    async def alert(self, text: str, *, kind: str, contact_id: int | None = None) -> None:
        """``contact_id`` names the lead an alert is about, so admins can answer them."""
        ...


class LogAlerts:
    """The fallback alert channel: the log, so nothing is lost when no chat is configured."""

    def __init__(self) -> None:
        import logging

        self._log = logging.getLogger("dripbot.alerts")
        self.sent: list[tuple[str, str]] = []

    async def alert(self, text: str, *, kind: str, contact_id: int | None = None) -> None:
        self.sent.append((kind, text))
        self._log.warning("[%s] %s", kind, text)


def callback_data(message_id: int) -> str:
    return f"dripbot:{message_id}"


def message_id_from_callback(data: str | None) -> int | None:
    if not data or not data.startswith("dripbot:"):
        return None
    tail = data.removeprefix("dripbot:")
    return int(tail) if tail.isdigit() else None
