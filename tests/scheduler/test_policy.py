"""The sending error policy, one table row per Graph error code."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.policy import (
    DEFAULT_POLICY,
    HOURLY_LIMIT,
    MEANINGS,
    PAIR_RATE,
    TRANSIENT,
    Action,
    Backoff,
    Rejected,
    RetryPolicy,
    decide,
    describe,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

KINDS: list[tuple[int, Action, bool]] = [
    (130429, Action.RETRY, False),
    (131056, Action.RETRY, False),
    (4, Action.RETRY, False),
    (80007, Action.RETRY, False),
    (131000, Action.RETRY, False),
    (131016, Action.RETRY, False),
    (2, Action.RETRY, False),
    (131049, Action.DEFER_DAY, False),
    (131047, Action.USE_FALLBACK_OR_SKIP, False),
    (131050, Action.OPT_OUT, False),
    (131026, Action.UNDELIVERABLE, False),
    (132000, Action.PAUSE_STEP, True),
    (132001, Action.PAUSE_STEP, True),
    (132012, Action.PAUSE_STEP, True),
    (132015, Action.PAUSE_STEP, True),
    (132016, Action.PAUSE_STEP, True),
    (131053, Action.PAUSE_STEP, True),
    (190, Action.PAUSE_ALL, True),
    (368, Action.PAUSE_ALL, True),
    (131048, Action.PAUSE_ALL, True),
    (131063, Action.PAUSE_ALL, True),
    (131064, Action.PAUSE_ALL, True),
    (100, Action.FAIL, False),
    (130472, Action.FAIL, False),
    (131051, Action.FAIL, False),
    (131052, Action.FAIL, False),
    (131062, Action.FAIL, False),
    (999999, Action.FAIL, False),
]


@pytest.mark.parametrize(("code", "action", "alert"), KINDS, ids=[str(k[0]) for k in KINDS])
def test_each_code_maps_to_its_decision(code: int, action: Action, alert: bool) -> None:
    decision = decide(Rejected(code, "from Meta"), 1, NOW, random.Random(1))

    assert decision.action is action
    assert decision.alert is alert
    assert decision.reason.startswith(f"{code} ")
    assert decision.reason == f"{code} {MEANINGS.get(code, 'from Meta')}"
    if action is Action.RETRY:
        assert decision.at is not None and decision.at > NOW
    elif action is Action.DEFER_DAY:
        assert decision.at == NOW + timedelta(days=1)
    else:
        assert decision.at is None


def test_every_code_in_the_catalogue_is_in_the_table() -> None:
    assert set(MEANINGS) == {code for code, _, _ in KINDS} - {999999}


RETRYABLE: list[tuple[int | None, Backoff]] = [
    (130429, TRANSIENT),
    (131056, PAIR_RATE),
    (4, HOURLY_LIMIT),
    (80007, HOURLY_LIMIT),
    (131000, TRANSIENT),
    (131016, TRANSIENT),
    (2, TRANSIENT),
    (None, TRANSIENT),  # nothing sent: connection refused
]


@pytest.mark.parametrize(("code", "backoff"), RETRYABLE, ids=[str(c) for c, _ in RETRYABLE])
def test_retry_delays_grow_stay_in_their_jitter_band_and_are_capped(
    code: int | None, backoff: Backoff
) -> None:
    rng = random.Random(42)
    delays: list[float] = []
    ceilings: list[float] = []
    for attempt in range(1, DEFAULT_POLICY.max_attempts):
        decision = decide(Rejected(code, "busy"), attempt, NOW, rng)
        assert decision.action is Action.RETRY
        assert decision.at is not None
        delay = (decision.at - NOW).total_seconds()
        ceiling = min(backoff.cap, backoff.base * backoff.factor ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
        delays.append(delay)
        ceilings.append(ceiling)

    # below the cap each band starts where the previous one ends, so waits never shrink
    uncapped = [d for d, c in zip(delays, ceilings, strict=True) if c < backoff.cap]
    assert uncapped == sorted(uncapped)
    assert delays[0] < delays[-1]
    assert max(delays) <= backoff.cap


@pytest.mark.parametrize(
    ("backoff", "ceilings"),
    [
        (TRANSIENT, [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]),
        (PAIR_RATE, [6, 24, 96, 384, 900, 900]),
        (HOURLY_LIMIT, [60, 120, 240, 480, 960, 1920, 3600, 3600]),
    ],
)
def test_backoff_ceilings(backoff: Backoff, ceilings: list[float]) -> None:
    assert [backoff.ceiling(n) for n in range(1, len(ceilings) + 1)] == ceilings
    assert backoff.ceiling(10_000) == backoff.cap


def test_jitter_is_seeded_and_spreads_retries() -> None:
    def run(seed: int) -> list[datetime | None]:
        rng = random.Random(seed)
        return [decide(Rejected(130429, ""), 4, NOW, rng).at for _ in range(50)]

    assert run(3) == run(3)
    assert len(set(run(3))) == 50
    assert run(3) != run(4)


@pytest.mark.parametrize("code", [130429, 131056, 4, 131000, None, 131049])
def test_gives_up_after_the_max_attempts(code: int | None) -> None:
    policy = RetryPolicy(max_attempts=3)

    before = decide(Rejected(code, "busy"), 2, NOW, random.Random(0), policy)
    last = decide(Rejected(code, "busy"), 3, NOW, random.Random(0), policy)

    assert before.action in {Action.RETRY, Action.DEFER_DAY}
    assert last.action is Action.FAIL
    assert last.at is None
    assert last.reason.startswith("gave up after 3 attempts: ")


def test_an_in_doubt_send_awaits_its_status_until_the_lease_ends() -> None:
    policy = RetryPolicy(lease=timedelta(seconds=90))

    decision = decide(Rejected(None, "timed out", in_doubt=True), 1, NOW, random.Random(0), policy)

    assert decision.action is Action.AWAIT_STATUS
    assert decision.at == NOW + timedelta(seconds=90)
    assert "outcome unknown (timed out)" in decision.reason


def test_an_in_doubt_send_also_gives_up_eventually() -> None:
    decision = decide(Rejected(None, "timed out", in_doubt=True), 8, NOW, random.Random(0))

    assert decision.action is Action.FAIL
    assert decision.reason.startswith("gave up after 8 attempts: outcome unknown")


def test_non_retryable_codes_ignore_the_attempt_count() -> None:
    decision = decide(Rejected(131026, ""), 50, NOW, random.Random(0))

    assert decision.action is Action.UNDELIVERABLE


@pytest.mark.parametrize(
    ("now", "attempts", "message"),
    [
        (datetime(2026, 3, 2, 9, 0), 1, "aware"),  # noqa: DTZ001 - the naive value is the point
        (NOW, 0, "starts at 1"),
    ],
)
def test_bad_arguments_are_refused(now: datetime, attempts: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decide(Rejected(130429, ""), attempts, now, random.Random(0))


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (131026, "ignored", "131026 message undeliverable"),
        (424242, "odd", "424242 odd"),
        (424242, "", "424242"),
        (None, "refused", "refused"),
        (None, "", "no answer from WhatsApp"),
    ],
)
def test_describe(code: int | None, message: str, expected: str) -> None:
    assert describe(code, message) == expected
