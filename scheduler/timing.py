"""When a step is due: contact time zones, calendar days, send windows and DST.

This is the only place where local time exists. Everything comes in and goes out as aware
UTC instants; inside, a contact's wall clock is an IANA zone plus a local date and time.

Rules, in the words of a user:

- ``Day N`` is a calendar day in the contact's zone: the local date of enrollment plus N-1
  days, so "Day 3 at 10:00" is 10:00 local two dates later, whatever DST did in between
  (not +48 h). Without ``at`` it keeps the enrollment's local time of day; Day 1 without
  ``at`` is the enrollment instant itself.
- ``after <duration>`` is elapsed time: enrollment + duration, DST or not.
- A local time that does not exist (the spring-forward gap) moves forward by the length of
  the gap (02:30 → 03:30). A local time that happens twice (fall-back) is the first one.
- A send window ``start-end`` includes ``start`` and excludes ``end`` (06:00-21:00 sends at
  06:00:00 but not at 21:00:00); ``start > end`` wraps midnight (22:00-06:00). A due time
  outside it moves to the next opening.
- A due time before the enrollment (enrolled 15:00, "Day 1 at 10:00") is not moved to the
  enrollment: it is returned as it is, and the engine sends past-due steps at once. The
  window is then judged at the enrollment, the first moment the step can go out: if the
  enrollment itself is outside the window, the step waits for the next opening after it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from scheduler.options import Window
from scheduler.steps import Timing

__all__ = [
    "due_at",
    "in_window",
    "is_valid_zone",
    "local_time_label",
    "next_window_opening",
    "parse_duration",
    "zone_for",
]

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DURATION = re.compile(r"\s*([0-9]+)\s*([smhd])\s*", re.IGNORECASE | re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: a bound that keeps every date computation far from ``datetime``'s year 9999
_MAX_DURATION = timedelta(days=3650)


@lru_cache(maxsize=1024)
def is_valid_zone(name: str) -> bool:
    """True for an IANA zone name zoneinfo knows (``"Europe/Berlin"``, ``"UTC"``)."""
    if not name or name != name.strip() or name.startswith(("/", ".")):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def zone_for(explicit: str | None, phone: str | None, default: str) -> str:
    """The contact's zone: a valid explicit zone, else the number's zone, else ``default``.

    The number's zone comes from libphonenumber's prefix-to-zone table, read on the E.164
    digits with the longest matching prefix: ``+49…`` → Europe/Berlin, ``+1 212…`` →
    America/New_York, ``+81…`` → Asia/Tokyo. The table also names one zone for many mobile
    ranges that are not tied to a place (``+7 9…`` → Europe/Moscow, ``+61 4…`` →
    Australia/Sydney): the most likely zone is a better guess than the server's. Where the
    longest prefix still names several zones (``+1 907…``: Adak or Anchorage; a Russian
    landline with an unknown code), ``default`` is used; guessing one of several zones would
    be wrong by hours for some leads without anyone noticing.
    """
    if explicit is not None:
        name = explicit.strip()
        if is_valid_zone(name):
            return name
    if phone is not None:
        zone = _phone_zone(phone)
        if zone is not None:
            return zone
    return default


def due_at(timing: Timing, enrolled_at: datetime, zone: str, window: Window | None) -> datetime:
    """The aware UTC instant a step is due for a contact enrolled at ``enrolled_at``.

    See the module docstring for the rules; a result before ``enrolled_at`` means "due at
    once" and is left unmoved so that steps keep their order.
    """
    enrolled = _as_utc(enrolled_at, "enrolled_at")
    try:
        due = _unwindowed_due(timing, enrolled, ZoneInfo(zone))
        if due < enrolled:
            opening = next_window_opening(enrolled, zone, window)
            return due if opening == enrolled else opening
        return next_window_opening(due, zone, window)
    except OverflowError:
        raise ValueError(f"{timing.describe()} is too far in the future") from None


def in_window(instant: datetime, zone: str, window: Window | None) -> bool:
    """Whether the contact's wall clock at ``instant`` is inside the window (``end`` excluded)."""
    if window is None:
        return True
    wall = _as_utc(instant, "instant").astimezone(ZoneInfo(zone)).time()
    return _wall_in_window(wall, window)


def next_window_opening(instant: datetime, zone: str, window: Window | None) -> datetime:
    """``instant`` (in UTC) if it is inside the window, else the next instant the window opens.

    The opening is ``window.start`` on the contact's wall clock: the same local date when the
    instant is before it, the next date when the day's window has closed.
    """
    moment = _as_utc(instant, "instant")
    if window is None:
        return moment
    tz = ZoneInfo(zone)
    local = moment.astimezone(tz)
    if _wall_in_window(local.time(), window):
        return moment
    day = local.date()
    if local.time() >= window.start:  # past today's start: only a non-wrapping window closes
        day += timedelta(days=1)
    opening = _resolve(day, window.start, tz)
    if opening < moment:
        # the fall-back hour repeats: the start was passed in its first occurrence and the
        # wall clock reaches it again in the second one
        opening = datetime.combine(day, window.start, tzinfo=tz).replace(fold=1).astimezone(UTC)
    if opening < moment:
        opening = _resolve(day + timedelta(days=1), window.start, tz)
    return opening


def local_time_label(instant: datetime, zone: str) -> str:
    """``"Tue 3 Mar 2026 10:00 Europe/Berlin"``: a contact's time as an admin reads it.

    Names are spelled out here rather than with ``strftime`` so the label does not change
    with the server's locale.
    """
    local = _as_utc(instant, "instant").astimezone(ZoneInfo(zone))
    return (
        f"{_DAY_NAMES[local.weekday()]} {local.day} {_MONTH_NAMES[local.month - 1]} "
        f"{local.year} {local:%H:%M} {zone}"
    )


def parse_duration(text: str) -> timedelta:
    """``"30s"``, ``"30m"``, ``"2h"``, ``"5d"`` (``"2 H"`` too) → a timedelta."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"expected a duration like 30s, 30m, 2h or 5d (seconds, minutes, hours, days), "
            f"got {text!r}"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    seconds = amount * _UNIT_SECONDS[unit]
    if seconds > _MAX_DURATION.total_seconds():
        raise ValueError(f"a duration of at most {_MAX_DURATION.days} days, got {text!r}")
    return timedelta(seconds=seconds)


def _unwindowed_due(timing: Timing, enrolled: datetime, tz: ZoneInfo) -> datetime:
    if timing.after is not None:
        return enrolled + timing.after
    assert timing.day is not None
    if timing.day == 1 and timing.at is None:
        return enrolled
    local = enrolled.astimezone(tz)
    day = local.date() + timedelta(days=timing.day - 1)
    wall = timing.at if timing.at is not None else local.time()
    return _resolve(day, wall, tz)


def _resolve(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """A local date and wall-clock time → UTC, with the DST rules of the module docstring.

    ``fold=0`` does both: in a gap it applies the offset from before the change, which lands
    the length of the gap later on the wall clock; in a repeated hour it is the first pass.
    """
    return datetime.combine(day, wall.replace(tzinfo=None, fold=0), tzinfo=tz).astimezone(UTC)


def _wall_in_window(wall: time, window: Window) -> bool:
    wall = wall.replace(tzinfo=None, fold=0)
    if window.start < window.end:
        return window.start <= wall < window.end
    return wall >= window.start or wall < window.end


def _as_utc(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got {instant!r}")
    return instant.astimezone(UTC)


def _phone_zone(phone: str) -> str | None:
    digits = phone.strip().removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        return None
    for length in range(min(TIMEZONE_LONGEST_PREFIX, len(digits)), 0, -1):
        prefix = digits[:length]
        if prefix in TIMEZONE_DATA:
            return _single_zone(prefix)
    return None


@lru_cache(maxsize=4096)
def _single_zone(prefix: str) -> str | None:
    """The one valid zone the table gives for ``prefix``, None when it gives several."""
    zones = TIMEZONE_DATA[prefix]
    if len(zones) == 1 and is_valid_zone(zones[0]):
        return zones[0]
    return None
