"""What a step is, as plain values: its timing and its message.

The command grammar, the REST API and the database all translate to and from these, so the
engine reasons about one shape only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal

StepKind = Literal["text", "media", "template"]
MediaType = Literal["image", "video", "document", "audio"]
MEDIA_TYPES: tuple[MediaType, ...] = ("image", "video", "document", "audio")


@dataclass(frozen=True)
class Timing:
    """``Day N`` (optionally ``at HH:MM`` contact-local) or ``after <duration>``."""

    day: int | None = None
    at: time | None = None
    after: timedelta | None = None

    def __post_init__(self) -> None:
        if (self.day is None) == (self.after is None):
            raise ValueError("a timing is either 'Day N' or 'after <duration>'")
        if self.day is not None and self.day < 1:
            raise ValueError("days start at Day 1 (the enrollment day)")
        if self.after is not None and self.after < timedelta(0):
            raise ValueError("'after' needs a positive duration")
        if self.at is not None and self.day is None:
            raise ValueError("'at HH:MM' goes with 'Day N'")

    def nominal_offset(self) -> timedelta:
        """A rough offset from enrollment, used only to order steps and to warn."""
        if self.after is not None:
            return self.after
        assert self.day is not None
        offset = timedelta(days=self.day - 1)
        if self.at is not None:
            offset += timedelta(hours=self.at.hour, minutes=self.at.minute)
        return offset

    def describe(self) -> str:
        if self.after is not None:
            return f"after {format_duration(self.after)}"
        text = f"Day {self.day}"
        if self.at is not None:
            text += f" at {self.at.strftime('%H:%M')}"
        return text


@dataclass(frozen=True)
class TemplateRef:
    """An approved WhatsApp template with its (personalizable) body parameters."""

    name: str
    language: str
    params: tuple[str, ...] = ()
    #: optional header media: (media type, link)
    header: tuple[MediaType, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "params": list(self.params),
            "header": None
            if self.header is None
            else {"type": self.header[0], "link": self.header[1]},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TemplateRef | None:
        if not data:
            return None
        header = data.get("header")
        return cls(
            name=str(data["name"]),
            language=str(data["language"]),
            params=tuple(str(p) for p in data.get("params") or ()),
            header=None if not header else (header["type"], header["link"]),
        )


@dataclass(frozen=True)
class StepSpec:
    timing: Timing
    kind: StepKind
    body: str = ""  # the text, or the media caption
    media_url: str | None = None
    media_type: MediaType | None = None
    template: TemplateRef | None = None
    fallback: TemplateRef | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind == "media" and (self.media_url is None or self.media_type is None):
            raise ValueError("a media step needs a media type and a URL")
        if self.kind == "template" and self.template is None:
            raise ValueError("a template step needs a template")
        if self.kind == "text" and not self.body.strip():
            raise ValueError("a text step needs a message")

    @property
    def needs_open_window(self) -> bool:
        """Free-form (text/media) messages need the lead's 24-hour window, templates don't."""
        return self.kind != "template"


def format_duration(delta: timedelta) -> str:
    """The shortest ``30s``/``30m``/``2h``/``5d`` spelling of a whole duration."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
