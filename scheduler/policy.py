"""What to do after a send: the error policy as a pure function of Meta's error code.

The sender turns each attempt into an outcome value (:class:`Accepted` or :class:`Rejected`);
:func:`decide` maps a rejection to a :class:`Decision` the dispatcher carries out. Keeping it
pure (time and randomness come in as arguments) makes every branch a row in a table test.

Choices beyond the plain table in the spec:

- 131048 (spam rate limit) pauses all sending and alerts: it is a quality problem of the
  number, and every further send makes it worse.
- 131063 and 131064 (marketing templates disabled, messaging limit after classification
  violations) pause all sending and alert too: every following send would fail the same way.
- 131053 (outbound media unreachable or of the wrong MIME type) pauses the step and alerts:
  the step's media is broken for every contact, like a template error.
- In-doubt outcomes wait for a status webhook until the lease ends, then retry; they count
  towards the attempt limit like any retry.
- 131049 deferrals count towards the attempt limit as well, so a recipient Meta never lets
  marketing reach (e.g. +1 numbers since April 2025) fails after a week instead of forever.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Accepted:
    """Meta took the message; its id keys the status webhooks."""

    wamid: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The attempt failed. ``code`` is Meta's error code (None without a Graph answer);
    ``in_doubt`` means the request may have reached Meta (a timeout or a connection lost after
    sending), so it must not be resent blindly."""

    code: int | None
    message: str
    in_doubt: bool = False


Outcome = Accepted | Rejected


class Action(StrEnum):
    RETRY = "retry"
    DEFER_DAY = "defer_day"
    USE_FALLBACK_OR_SKIP = "use_fallback_or_skip"
    OPT_OUT = "opt_out"
    UNDELIVERABLE = "undeliverable"
    PAUSE_STEP = "pause_step"
    PAUSE_ALL = "pause_all"
    AWAIT_STATUS = "await_status"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: names the code and its meaning, for the message record and admin alerts
    reason: str
    #: when to try again (RETRY, DEFER_DAY) or stop waiting for a status (AWAIT_STATUS)
    at: datetime | None = None
    #: whether admins should hear about it now
    alert: bool = False


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delays: ``base * factor**(attempt-1)`` seconds, capped."""

    base: float
    factor: float
    cap: float

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the ``attempt``-th failure (1-based)."""
        # Capping the exponent first keeps huge attempt counts from overflowing a float.
        exponent = min(attempt - 1, 64)
        return min(self.cap, self.base * self.factor**exponent)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Half the ceiling plus a random share of the other half ("equal jitter").

        Full jitter could retry a rate limit after a few milliseconds; keeping half the ceiling
        guarantees a real pause while still spreading a burst of retries apart.
        """
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    #: attempts (the first send included) after which a retryable failure becomes FAIL
    max_attempts: int = 8
    #: how long an in-doubt send waits for a status webhook (DRIPBOT_SEND_LEASE_SECONDS)
    lease: timedelta = timedelta(seconds=120)
    #: how long a per-user marketing cap (131049) defers a step
    defer: timedelta = timedelta(days=1)


#: server trouble and throttling: seconds, growing to a quarter of an hour
TRANSIENT = Backoff(base=2.0, factor=2.0, cap=15 * 60.0)
#: Meta's pair rate limit: at least the 6 s pair gap, then Meta's 4^X growth
PAIR_RATE = Backoff(base=6.0, factor=4.0, cap=15 * 60.0)
#: app and account request limits count over a rolling hour: minutes
HOURLY_LIMIT = Backoff(base=60.0, factor=2.0, cap=60 * 60.0)

DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class _Rule:
    action: Action
    meaning: str
    backoff: Backoff | None = None
    alert: bool = False


_RULES: dict[int, _Rule] = {
    130429: _Rule(Action.RETRY, "throughput rate limit hit", TRANSIENT),
    131056: _Rule(Action.RETRY, "too many messages to this recipient in a short time", PAIR_RATE),
    4: _Rule(Action.RETRY, "application request limit reached", HOURLY_LIMIT),
    80007: _Rule(Action.RETRY, "WhatsApp Business Account rate limit reached", HOURLY_LIMIT),
    131000: _Rule(Action.RETRY, "unknown error at Meta", TRANSIENT),
    131016: _Rule(Action.RETRY, "service temporarily unavailable", TRANSIENT),
    2: _Rule(Action.RETRY, "API service temporarily down", TRANSIENT),
    131049: _Rule(Action.DEFER_DAY, "not delivered: per-user marketing limit"),
    131047: _Rule(Action.USE_FALLBACK_OR_SKIP, "24-hour window closed: a template is needed"),
    131050: _Rule(Action.OPT_OUT, "recipient stopped marketing messages"),
    131026: _Rule(Action.UNDELIVERABLE, "message undeliverable"),
    132000: _Rule(Action.PAUSE_STEP, "template parameter count mismatch", alert=True),
    132001: _Rule(
        Action.PAUSE_STEP,
        "template does not exist in that language or is not approved",
        alert=True,
    ),
    132012: _Rule(Action.PAUSE_STEP, "template parameter format mismatch", alert=True),
    132015: _Rule(Action.PAUSE_STEP, "template paused for low quality", alert=True),
    132016: _Rule(Action.PAUSE_STEP, "template permanently disabled", alert=True),
    131053: _Rule(
        Action.PAUSE_STEP, "media upload error: link unreachable or wrong MIME type", alert=True
    ),
    190: _Rule(Action.PAUSE_ALL, "access token expired or invalid", alert=True),
    368: _Rule(Action.PAUSE_ALL, "temporarily blocked for policy violations", alert=True),
    131048: _Rule(
        Action.PAUSE_ALL, "spam rate limit: too many messages blocked or flagged", alert=True
    ),
    131063: _Rule(Action.PAUSE_ALL, "marketing templates disabled on the Cloud API", alert=True),
    131064: _Rule(
        Action.PAUSE_ALL,
        "messaging limit reached after template-classification violations",
        alert=True,
    ),
    100: _Rule(Action.FAIL, "invalid parameter"),
    130472: _Rule(Action.FAIL, "recipient is in a Meta marketing experiment"),
    131051: _Rule(Action.FAIL, "unsupported message type"),
    131052: _Rule(Action.FAIL, "media download error"),
    131062: _Rule(Action.FAIL, "recipient user id not supported"),
}

#: Meaning of every code the policy knows, for status webhooks and admin messages.
MEANINGS: dict[int, str] = {code: rule.meaning for code, rule in _RULES.items()}


def describe(code: int | None, message: str = "") -> str:
    """``131026`` → ``"131026 message undeliverable"``; unknown codes fall back to ``message``."""
    if code is None:
        return message or "no answer from WhatsApp"
    meaning = MEANINGS.get(code) or message
    return f"{code} {meaning}" if meaning else str(code)


def decide(
    rejected: Rejected,
    attempts: int,
    now: datetime,
    rng: random.Random,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Decision:
    """The next move after the ``attempts``-th attempt (1-based) ended in ``rejected``."""
    if now.tzinfo is None:
        raise ValueError("decide needs an aware 'now'")
    if attempts < 1:
        raise ValueError("attempts counts the failed attempt too, so it starts at 1")
    if rejected.in_doubt:
        reason = f"outcome unknown ({rejected.message or 'no answer'})"
        if attempts >= policy.max_attempts:
            return _give_up(reason, attempts)
        return Decision(
            Action.AWAIT_STATUS, f"{reason}; waiting for a status webhook", now + policy.lease
        )
    rule = _RULES.get(rejected.code) if rejected.code is not None else None
    reason = describe(rejected.code, rejected.message)
    if rule is None:
        if rejected.code is not None:
            return Decision(Action.FAIL, reason)
        # No Graph answer and nothing went out (connection refused, say): safe to retry.
        rule = _Rule(Action.RETRY, reason, TRANSIENT)
    if rule.action is Action.RETRY:
        assert rule.backoff is not None
        if attempts >= policy.max_attempts:
            return _give_up(reason, attempts)
        delay = timedelta(seconds=rule.backoff.delay(attempts, rng))
        return Decision(Action.RETRY, reason, now + delay)
    if rule.action is Action.DEFER_DAY:
        if attempts >= policy.max_attempts:
            return _give_up(reason, attempts)
        return Decision(Action.DEFER_DAY, reason, now + policy.defer)
    return Decision(rule.action, reason, alert=rule.alert)


def _give_up(reason: str, attempts: int) -> Decision:
    return Decision(Action.FAIL, f"gave up after {attempts} attempts: {reason}")


def pauses_all(rejected: Rejected) -> bool:
    """Whether this answer stops all sending (a refused token or account), so a batch in
    hand should send nothing more."""
    if rejected.in_doubt or rejected.code is None:
        return False
    rule = _RULES.get(rejected.code)
    return rule is not None and rule.action is Action.PAUSE_ALL
