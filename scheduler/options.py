"""The engine's knobs, as one plain value ``bot`` builds from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time


@dataclass(frozen=True)
class Window:
    """A daily send window in contact-local wall-clock time; ``start > end`` wraps midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window | None:
        """``"06:00-21:00"`` → a window; ``"always"`` → None (no window)."""
        value = text.strip().lower()
        if value == "always":
            return None
        try:
            start_text, end_text = value.split("-")
            start, end = parse_hhmm(start_text), parse_hhmm(end_text)
        except ValueError:
            raise ValueError(f"expected HH:MM-HH:MM or 'always', got {text!r}") from None
        if start == end:
            raise ValueError(f"an empty send window {text!r}; use 'always' for none")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start.strftime('%H:%M')}-{self.end.strftime('%H:%M')}"


def parse_hhmm(text: str) -> time:
    """``"9:05"``/``"09:05"`` → ``time(9, 5)``; anything else raises ValueError."""
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"expected HH:MM, got {text!r}")
    hour, minute = int(hours), int(minutes)
    if hour > 23 or minute > 59:
        raise ValueError(f"no such time of day: {text!r}")
    return time(hour, minute)


@dataclass(frozen=True)
class EngineOptions:
    workspace: str = "default"
    #: IANA zone used when neither the contact nor the number's region gives one
    default_timezone: str = "UTC"
    #: ISO region for numbers written without a country code (None: such numbers are invalid)
    default_region: str | None = None
    #: the default send window; None sends at any hour
    send_window: Window | None = Window(time(6, 0), time(21, 0))
    rate_per_second: float = 80.0
    #: random gap in seconds between two sends, instead of the token bucket
    pacing: tuple[float, float] | None = None
    #: distinct contacts reached outside their 24-hour window per rolling day (None: unlimited)
    daily_reach_limit: int | None = 250
    takeover_hours: float = 24.0
    send_lease_seconds: float = 120.0
    #: the minimum gap between two messages to one contact (Meta's pair rate limit)
    contact_gap_seconds: float = 6.0
