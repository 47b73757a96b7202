"""Due times, send windows, zones and DST, as tables of local expectations."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.options import Window
from scheduler.steps import Timing
from scheduler.timing import (
    due_at,
    in_window,
    is_valid_zone,
    local_time_label,
    next_window_opening,
    parse_duration,
    zone_for,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
TOKYO = "Asia/Tokyo"
DAYTIME = Window(time(6, 0), time(21, 0))
NIGHT = Window(time(20, 0), time(8, 0))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def day(n: int, at: str | None = None) -> Timing:
    if at is None:
        return Timing(day=n)
    hours, minutes = at.split(":")
    return Timing(day=n, at=time(int(hours), int(minutes)))


def after(delta: timedelta) -> Timing:
    return Timing(after=delta)


DUE_CASES = [
    # --- calendar days across DST: local wall clock, not multiples of 24 h
    pytest.param(
        day(3, "10:00"),
        utc(2026, 3, 27, 9),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 29, 8),
        id="berlin-dst-start-day3-at-10-is-10-cest",
    ),
    pytest.param(
        day(2),
        utc(2026, 10, 24, 8),
        BERLIN,
        DAYTIME,
        utc(2026, 10, 25, 9),
        id="berlin-dst-end-day2-keeps-local-10-00",
    ),
    pytest.param(
        day(2, "09:00"),
        utc(2026, 3, 7, 15),
        NEW_YORK,
        DAYTIME,
        utc(2026, 3, 8, 13),
        id="newyork-dst-start-day2-at-09-is-09-edt",
    ),
    pytest.param(
        day(3),
        utc(2026, 10, 31, 14),
        NEW_YORK,
        DAYTIME,
        utc(2026, 11, 2, 15),
        id="newyork-dst-end-day3-keeps-local-10-00",
    ),
    # --- local times that do not exist move forward by the gap
    pytest.param(
        day(2, "02:30"),
        utc(2026, 3, 28, 9),
        BERLIN,
        None,
        utc(2026, 3, 29, 1, 30),
        id="berlin-gap-02-30-becomes-03-30-cest",
    ),
    pytest.param(
        day(2, "02:30"),
        utc(2026, 3, 7, 15),
        NEW_YORK,
        None,
        utc(2026, 3, 8, 7, 30),
        id="newyork-gap-02-30-becomes-03-30-edt",
    ),
    pytest.param(
        day(2),
        utc(2026, 3, 28, 1, 30),
        BERLIN,
        None,
        utc(2026, 3, 29, 1, 30),
        id="berlin-gap-day2-without-at-from-02-30-enrollment",
    ),
    # --- local times that happen twice take the first
    pytest.param(
        day(2, "02:30"),
        utc(2026, 10, 24, 8),
        BERLIN,
        None,
        utc(2026, 10, 25, 0, 30),
        id="berlin-fold-02-30-is-first-cest",
    ),
    pytest.param(
        day(2, "01:30"),
        utc(2026, 10, 31, 14),
        NEW_YORK,
        None,
        utc(2026, 11, 1, 5, 30),
        id="newyork-fold-01-30-is-first-edt",
    ),
    # --- after: elapsed time, whatever the wall clock does
    pytest.param(
        after(timedelta(hours=2)),
        utc(2026, 3, 29, 0, 30),
        BERLIN,
        None,
        utc(2026, 3, 29, 2, 30),
        id="after-2h-across-berlin-dst-start-is-absolute",
    ),
    pytest.param(
        after(timedelta(days=1)),
        utc(2026, 10, 31, 14),
        NEW_YORK,
        DAYTIME,
        utc(2026, 11, 1, 14),
        id="after-1d-across-newyork-dst-end-is-24h",
    ),
    pytest.param(
        after(timedelta(minutes=30)),
        utc(2026, 3, 2, 19, 45),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 3, 5),
        id="after-30m-past-window-end-waits-for-opening",
    ),
    pytest.param(
        after(timedelta(hours=5)),
        utc(2026, 3, 8, 1, 30),
        NEW_YORK,
        DAYTIME,
        utc(2026, 3, 8, 10),
        id="after-lands-in-newyork-dst-night-opens-06-00-edt",
    ),
    # --- window edges: start included, end excluded
    pytest.param(
        day(1),
        utc(2026, 3, 2, 5),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 2, 5),
        id="window-exactly-at-start-sends",
    ),
    pytest.param(
        day(1),
        utc(2026, 3, 2, 19, 59),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 2, 19, 59),
        id="window-a-minute-before-end-sends",
    ),
    pytest.param(
        day(1),
        utc(2026, 3, 2, 20),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 3, 5),
        id="window-exactly-at-end-waits-for-next-day",
    ),
    pytest.param(
        day(2, "05:00"),
        utc(2026, 3, 2, 9),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 3, 5),
        id="window-before-start-moves-to-start-same-day",
    ),
    pytest.param(
        day(2, "23:00"),
        utc(2026, 3, 2, 9),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 4, 5),
        id="window-after-end-moves-to-next-day-start",
    ),
    pytest.param(
        day(2, "03:00"),
        utc(2026, 3, 2, 9),
        BERLIN,
        None,
        utc(2026, 3, 3, 2),
        id="no-window-sends-at-any-hour",
    ),
    # --- wrap-around window 20:00-08:00
    pytest.param(
        day(2, "12:00"),
        utc(2026, 3, 2, 9),
        BERLIN,
        NIGHT,
        utc(2026, 3, 3, 19),
        id="wrap-window-midday-moves-to-evening-start",
    ),
    pytest.param(
        day(2, "23:30"),
        utc(2026, 3, 2, 9),
        BERLIN,
        NIGHT,
        utc(2026, 3, 3, 22, 30),
        id="wrap-window-before-midnight-is-inside",
    ),
    pytest.param(
        day(2, "07:59"),
        utc(2026, 3, 2, 9),
        BERLIN,
        NIGHT,
        utc(2026, 3, 3, 6, 59),
        id="wrap-window-after-midnight-is-inside",
    ),
    pytest.param(
        day(2, "08:00"),
        utc(2026, 3, 2, 9),
        BERLIN,
        NIGHT,
        utc(2026, 3, 3, 19),
        id="wrap-window-exactly-at-end-moves-to-start",
    ),
    # --- enrollment just before local midnight: Day 2 is the next date, minutes away
    pytest.param(
        day(2, "00:05"),
        utc(2026, 3, 2, 22, 58),
        BERLIN,
        None,
        utc(2026, 3, 2, 23, 5),
        id="enrolled-23-58-day2-at-00-05-is-7-minutes-later",
    ),
    pytest.param(
        day(2),
        utc(2026, 3, 2, 22, 58),
        BERLIN,
        None,
        utc(2026, 3, 3, 22, 58),
        id="enrolled-23-58-day2-without-at-is-next-date-23-58",
    ),
    # --- a zone far from UTC
    pytest.param(
        day(2, "10:00"),
        utc(2026, 3, 2, 9),
        TOKYO,
        DAYTIME,
        utc(2026, 3, 3, 1),
        id="tokyo-day2-at-10-is-01-utc",
    ),
    # --- Day 1 instants
    pytest.param(
        day(1),
        utc(2026, 3, 2, 9, 17, 33),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 2, 9, 17, 33),
        id="day1-without-at-is-enrollment",
    ),
    pytest.param(
        day(1, "10:00"),
        utc(2026, 3, 2, 14),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 2, 9),
        id="day1-at-past-time-is-returned-unmoved",
    ),
    pytest.param(
        day(1, "05:00"),
        utc(2026, 3, 2, 14),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 2, 4),
        id="day1-at-past-time-outside-window-unmoved-when-enrolled-in-window",
    ),
    pytest.param(
        day(1, "10:00"),
        utc(2026, 3, 2, 21, 30),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 3, 5),
        id="day1-at-past-time-enrolled-after-window-waits-for-opening",
    ),
    pytest.param(
        day(1),
        utc(2026, 3, 2, 22),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 3, 5),
        id="day1-enrolled-at-night-waits-for-opening",
    ),
]


@pytest.mark.parametrize(("timing", "enrolled_at", "zone", "window", "expected"), DUE_CASES)
def test_due_at(
    timing: Timing, enrolled_at: datetime, zone: str, window: Window | None, expected: datetime
) -> None:
    result = due_at(timing, enrolled_at, zone, window)
    assert result == expected
    assert result.tzinfo is UTC


def test_due_at_for_a_number_zone_differs_from_server_default() -> None:
    zone = zone_for(None, "+81312345678", "UTC")
    due = due_at(day(2, "09:00"), utc(2026, 3, 2, 9), zone, DAYTIME)
    assert zone == TOKYO
    assert local_time_label(due, zone) == "Tue 3 Mar 2026 09:00 Asia/Tokyo"
    assert due == utc(2026, 3, 3, 0)


def test_due_at_accepts_any_aware_enrollment_and_refuses_naive() -> None:
    tokyo_enrollment = datetime(2026, 3, 3, 3, 0, tzinfo=ZoneInfo(TOKYO))
    assert due_at(day(1), tokyo_enrollment, BERLIN, None) == utc(2026, 3, 2, 18)
    assert due_at(day(1), tokyo_enrollment, BERLIN, None).tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        due_at(day(1), datetime(2026, 3, 2, 18), BERLIN, None)  # noqa: DTZ001


def test_due_at_far_future_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too far"):
        due_at(day(10**7), utc(2026, 3, 2, 9), BERLIN, None)


OPENING_CASES = [
    pytest.param(utc(2026, 3, 2, 9), BERLIN, None, utc(2026, 3, 2, 9), id="no-window"),
    pytest.param(utc(2026, 3, 2, 9), BERLIN, DAYTIME, utc(2026, 3, 2, 9), id="inside"),
    pytest.param(utc(2026, 3, 2, 4, 59), BERLIN, DAYTIME, utc(2026, 3, 2, 5), id="before-start"),
    pytest.param(utc(2026, 3, 2, 20), BERLIN, DAYTIME, utc(2026, 3, 3, 5), id="at-end"),
    pytest.param(
        utc(2026, 3, 28, 21),
        BERLIN,
        DAYTIME,
        utc(2026, 3, 29, 4),
        id="berlin-opening-on-dst-start-day-is-06-cest",
    ),
    pytest.param(
        utc(2026, 10, 24, 20),
        BERLIN,
        DAYTIME,
        utc(2026, 10, 25, 5),
        id="berlin-opening-on-dst-end-day-is-06-cet",
    ),
    pytest.param(
        utc(2026, 3, 8, 3),
        NEW_YORK,
        DAYTIME,
        utc(2026, 3, 8, 10),
        id="newyork-opening-on-dst-start-day-is-06-edt",
    ),
    pytest.param(
        utc(2026, 11, 1, 3),
        NEW_YORK,
        DAYTIME,
        utc(2026, 11, 1, 11),
        id="newyork-opening-on-dst-end-day-is-06-est",
    ),
    pytest.param(
        utc(2026, 3, 29, 0, 30),
        BERLIN,
        Window(time(2, 30), time(5, 0)),
        utc(2026, 3, 29, 1, 30),
        id="window-start-in-gap-opens-after-the-gap",
    ),
    pytest.param(
        utc(2026, 11, 1, 6, 10),
        NEW_YORK,
        Window(time(1, 30), time(5, 0)),
        utc(2026, 11, 1, 6, 30),
        id="window-start-in-repeated-hour-opens-on-second-pass",
    ),
    pytest.param(utc(2026, 3, 2, 12), BERLIN, NIGHT, utc(2026, 3, 2, 19), id="wrap-midday"),
    pytest.param(utc(2026, 3, 2, 2), BERLIN, NIGHT, utc(2026, 3, 2, 2), id="wrap-small-hours"),
]


@pytest.mark.parametrize(("instant", "zone", "window", "expected"), OPENING_CASES)
def test_next_window_opening(
    instant: datetime, zone: str, window: Window | None, expected: datetime
) -> None:
    opening = next_window_opening(instant, zone, window)
    assert opening == expected
    assert opening >= instant
    assert in_window(opening, zone, window)


IN_WINDOW_CASES = [
    pytest.param(utc(2026, 3, 2, 5), BERLIN, DAYTIME, True, id="start-included"),
    pytest.param(utc(2026, 3, 2, 19, 59, 59), BERLIN, DAYTIME, True, id="just-before-end"),
    pytest.param(utc(2026, 3, 2, 20), BERLIN, DAYTIME, False, id="end-excluded"),
    pytest.param(utc(2026, 3, 2, 4, 59, 59), BERLIN, DAYTIME, False, id="just-before-start"),
    pytest.param(utc(2026, 3, 2, 20), NEW_YORK, DAYTIME, True, id="same-instant-other-zone"),
    pytest.param(utc(2026, 3, 2, 3), BERLIN, None, True, id="no-window-always"),
    pytest.param(utc(2026, 3, 2, 23), BERLIN, NIGHT, True, id="wrap-after-midnight"),
    pytest.param(utc(2026, 3, 2, 7), BERLIN, NIGHT, False, id="wrap-end-excluded"),
    pytest.param(utc(2026, 3, 2, 19), BERLIN, NIGHT, True, id="wrap-start-included"),
]


@pytest.mark.parametrize(("instant", "zone", "window", "expected"), IN_WINDOW_CASES)
def test_in_window(instant: datetime, zone: str, window: Window | None, expected: bool) -> None:
    assert in_window(instant, zone, window) is expected


ZONE_CASES = [
    pytest.param("Asia/Tokyo", "+491701234567", "UTC", "Asia/Tokyo", id="explicit-wins"),
    pytest.param(" Asia/Tokyo ", None, "UTC", "Asia/Tokyo", id="explicit-trimmed"),
    pytest.param("Mars/Olympus", "+4930123456", "UTC", BERLIN, id="invalid-explicit-uses-phone"),
    pytest.param("", "+4930123456", "UTC", BERLIN, id="empty-explicit-uses-phone"),
    pytest.param(None, "+491701234567", "UTC", BERLIN, id="german-mobile"),
    pytest.param(None, "+81312345678", "UTC", TOKYO, id="japan-differs-from-default"),
    pytest.param(None, "+12125550123", "UTC", NEW_YORK, id="us-area-code-212"),
    pytest.param(None, "+13105550123", "UTC", "America/Los_Angeles", id="us-area-code-310"),
    pytest.param(None, "+19072345678", "UTC", "UTC", id="us-907-two-zones-uses-default"),
    pytest.param(
        None,
        "+19072345678",
        "America/Anchorage",
        "America/Anchorage",
        id="ambiguous-uses-configured-default",
    ),
    pytest.param(None, "+79123456789", "UTC", "Europe/Moscow", id="russian-mobile-table-zone"),
    pytest.param(None, None, "Europe/Paris", "Europe/Paris", id="nothing-uses-default"),
    pytest.param(None, "not a number", "UTC", "UTC", id="garbage-phone-uses-default"),
    pytest.param(None, "+", "UTC", "UTC", id="bare-plus-uses-default"),
    pytest.param(None, "+80012345678", "UTC", "UTC", id="non-geographic-uses-default"),
]


@pytest.mark.parametrize(("explicit", "phone", "default", "expected"), ZONE_CASES)
def test_zone_for(explicit: str | None, phone: str | None, default: str, expected: str) -> None:
    assert zone_for(explicit, phone, default) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("Europe/Berlin", True, id="zone"),
        pytest.param("UTC", True, id="utc"),
        pytest.param("America/Argentina/Buenos_Aires", True, id="three-parts"),
        pytest.param("Mars/Olympus", False, id="unknown"),
        pytest.param("", False, id="empty"),
        pytest.param("Europe", False, id="directory"),
        pytest.param("../../etc/passwd", False, id="path"),
        pytest.param("/usr/share/zoneinfo/UTC", False, id="absolute-path"),
        pytest.param(" UTC", False, id="untrimmed"),
        pytest.param("Etc/Unknown", False, id="phonenumbers-unknown"),
    ],
)
def test_is_valid_zone(name: str, expected: bool) -> None:
    assert is_valid_zone(name) is expected


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        pytest.param(
            utc(2026, 3, 3, 9), BERLIN, "Tue 3 Mar 2026 10:00 Europe/Berlin", id="berlin-cet"
        ),
        pytest.param(
            utc(2026, 7, 1, 9), BERLIN, "Wed 1 Jul 2026 11:00 Europe/Berlin", id="berlin-cest"
        ),
        pytest.param(
            utc(2026, 3, 2, 2),
            NEW_YORK,
            "Sun 1 Mar 2026 21:00 America/New_York",
            id="newyork-previous-date",
        ),
        pytest.param(utc(2026, 12, 31, 23, 5), "UTC", "Thu 31 Dec 2026 23:05 UTC", id="utc"),
    ],
)
def test_local_time_label(instant: datetime, zone: str, expected: str) -> None:
    assert local_time_label(instant, zone) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30s", timedelta(seconds=30), id="seconds"),
        pytest.param("30m", timedelta(minutes=30), id="minutes"),
        pytest.param("2h", timedelta(hours=2), id="hours"),
        pytest.param("5d", timedelta(days=5), id="days"),
        pytest.param(" 2 H ", timedelta(hours=2), id="space-and-upper-case"),
        pytest.param("0m", timedelta(0), id="zero"),
        pytest.param("3650d", timedelta(days=3650), id="longest"),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "expected a duration like 30s", id="empty"),
        pytest.param("90 min", "expected a duration like 30s", id="word-unit"),
        pytest.param("1.5h", "expected a duration like 30s", id="fraction"),
        pytest.param("-5m", "expected a duration like 30s", id="negative"),
        pytest.param("2w", "expected a duration like 30s", id="unknown-unit"),
        pytest.param("h", "expected a duration like 30s", id="no-number"),
        pytest.param("٣h", "expected a duration like 30s", id="non-ascii-digit"),
        pytest.param("3651d", "at most 3650 days", id="too-long"),
        pytest.param("99999999999999999999d", "at most 3650 days", id="huge"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@settings(max_examples=300)
@given(
    enrolled_at=st.datetimes(
        min_value=datetime(2026, 1, 1),  # noqa: DTZ001 (hypothesis bounds are naive)
        max_value=datetime(2027, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    zone=st.sampled_from([BERLIN, NEW_YORK, TOKYO, "Australia/Lord_Howe"]),
    day_number=st.integers(min_value=1, max_value=40),
    at=st.none() | st.times(),
    window=st.sampled_from([None, DAYTIME, NIGHT, Window(time(2, 30), time(3, 0))]),
)
def test_due_at_never_sends_outside_the_window(
    enrolled_at: datetime, zone: str, day_number: int, at: time | None, window: Window | None
) -> None:
    due = due_at(Timing(day=day_number, at=at), enrolled_at, zone, window)
    if due < enrolled_at:
        assert day_number == 1
        assert in_window(enrolled_at, zone, window)
    else:
        assert in_window(due, zone, window)


@given(
    enrolled_at=st.datetimes(
        min_value=datetime(2026, 1, 1),  # noqa: DTZ001 (hypothesis bounds are naive)
        max_value=datetime(2027, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    zone=st.sampled_from([BERLIN, NEW_YORK, "Australia/Lord_Howe"]),
    day_number=st.integers(min_value=2, max_value=40),
    at=st.times(),
)
def test_day_n_is_a_local_calendar_date(
    enrolled_at: datetime, zone: str, day_number: int, at: time
) -> None:
    due = due_at(Timing(day=day_number, at=at), enrolled_at, zone, None)
    tz = ZoneInfo(zone)
    assert due.astimezone(tz).date() == enrolled_at.astimezone(tz).date() + timedelta(
        days=day_number - 1
    )
    # the wall clock shows ``at``, or later by at most a DST gap (one hour; 30 min on Lord Howe)
    shift = seconds_into_day(due.astimezone(tz).time()) - seconds_into_day(at)
    assert 0 <= shift <= 3600


def seconds_into_day(wall: time) -> float:
    return wall.hour * 3600 + wall.minute * 60 + wall.second + wall.microsecond / 1e6
