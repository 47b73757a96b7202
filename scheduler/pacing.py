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
        self._tokens = self.capacity
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
