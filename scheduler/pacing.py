"""How fast messages may leave: Meta's per-number throughput, or a human-looking gap.

The pacers work on a monotonic clock and an injected sleep, so their arithmetic is testable
without waiting and the dispatcher stays free of timing code.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from scheduler.clock import Clock
from storage.database import Database
from storage.rate_buckets import reserve

Sleep = Callable[[float], Awaitable[None]]
Monotonic = Callable[[], float]


class Pacer(Protocol):
    async def wait(self) -> None:
        """Return when one more message may go out."""
        ...


class TokenBucket:
    """At most ``rate`` messages a second, with a burst of at most one second's worth."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate)
        # Start nearly empty: a cold start paces from the first message; only a bucket that
        # refilled while idle allows its burst (one second's worth).
        self._tokens = 1.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._last = monotonic()
        self._lock = asyncio.Lock()

    def reserve(self) -> float:
        """Take one token, returning how long the caller must wait before using it."""
        now = self._monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)


class RandomGap:
    """One message at a time with a random gap between (DRIPBOT_PACING), for senders that
    must look human rather than fast."""

    def __init__(
        self,
        low: float,
        high: float,
        *,
        rng: random.Random | None = None,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.low, self.high = low, high
        self._rng = rng or random.Random()
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = monotonic()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            delay = self._next - self._monotonic()
            if delay > 0:
                await self._sleep(delay)
            self._next = self._monotonic() + self._rng.uniform(self.low, self.high)


class Unlimited:
    async def wait(self) -> None:
        return None


def make_pacer(rate_per_second: float, pacing: tuple[float, float] | None) -> Pacer:
    if pacing is not None:
        return RandomGap(*pacing)
    return TokenBucket(rate_per_second)


class SharedTokenBucket:
    """:class:`TokenBucket` semantics for the sum of every process on one database.

    Tokens are reserved from a bucket row in small chunks (a fifth of a second's worth) and
    spent locally, so replicas together stay within ``rate`` per second.
    """

    def __init__(
        self,
        db: Database,
        key: str,
        rate: float,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.db = db
        self.key = key
        self.rate = rate
        self.burst = max(1.0, rate)
        self.chunk = max(1, int(rate / 5))
        self._clock = clock
        self._sleep = sleep
        self._local = 0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            while self._local <= 0:
                granted, wait = await reserve(
                    self.db.engine,
                    self.key,
                    self.chunk,
                    rate=self.rate,
                    burst=self.burst,
                    now=self._clock.now(),
                )
                self._local += granted
                if granted == 0:
                    await self._sleep(max(wait, 0.001))
            self._local -= 1
