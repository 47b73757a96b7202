"""Request limits for the public endpoints: N requests in any sliding minute.

A sliding log (the instants of the last N requests per caller) says "at most N in any 60
seconds" exactly, where a fixed window lets 2N through around a boundary; N is small (60 by
default), so the memory is a few integers per caller. The counters live in this process: with
several ``dripbot serve`` replicas behind a balancer each enforces its own limit, so a caller
may get up to N per replica. That is a deliberate trade for not touching the database on
every public request; the limit exists to blunt floods and runaway scripts, not to meter.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Limited:
    """A refusal, with the whole seconds to wait (what ``Retry-After`` says)."""

    retry_after: int


class SlidingWindowLimiter:
    """At most ``limit`` hits per identity in any ``window`` seconds.

    Time comes in as a number of seconds (from the app's clock), so tests move it by hand.
    """

    def __init__(self, limit: int, window: float = 60.0, *, max_identities: int = 100_000):
        if limit < 1:
            raise ValueError("a rate limit allows at least one request")
        self.limit = limit
        self.window = window
        self._max_identities = max_identities
        self._hits: dict[str, deque[float]] = {}

    def hit(self, identity: str, now: float) -> Limited | None:
        """Count one request for ``identity``; a :class:`Limited` when it is one too many.

        A refused request is not counted: a caller that keeps knocking while limited gets in
        again as soon as its oldest counted request leaves the window.
        """
        hits = self._hits.get(identity)
        if hits is None:
            self._make_room(now)
            hits = self._hits[identity] = deque()
        horizon = now - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= self.limit:
            wait = hits[0] + self.window - now
            return Limited(max(1, math.ceil(wait)))
        hits.append(now)
        return None

    def _make_room(self, now: float) -> None:
        """Keep memory bounded when very many callers show up: forget idle ones first."""
        if len(self._hits) < self._max_identities:
            return
        horizon = now - self.window
        for identity in [k for k, v in self._hits.items() if not v or v[-1] <= horizon]:
            del self._hits[identity]
        while len(self._hits) >= self._max_identities:
            del self._hits[next(iter(self._hits))]

    def __len__(self) -> int:
        return len(self._hits)
