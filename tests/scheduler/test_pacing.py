"""Pacing: the token bucket's arithmetic, the human-looking gap, and a rate shared by
several processes through the database."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from scheduler.clock import SystemClock
from scheduler.pacing import RandomGap, SharedTokenBucket, TokenBucket
from storage.database import Database


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_token_bucket_paces_a_cold_start_and_allows_a_burst_after_idling() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10, monotonic=fake.monotonic, sleep=fake.sleep)
    for _ in range(11):
        await bucket.wait()
    assert fake.now == pytest.approx(101.0)  # no burst from cold: 10 a second
    fake.now += 5  # idle: the bucket refills to one second's worth, not more
    slept = len(fake.slept)
    for _ in range(10):
        await bucket.wait()
    assert len(fake.slept) == slept
    await bucket.wait()
    assert fake.slept[-1] == pytest.approx(0.1)


async def test_random_gap_spaces_messages_within_the_bounds() -> None:
    fake = FakeTime()
    gap = RandomGap(40, 100, rng=random.Random(3), monotonic=fake.monotonic, sleep=fake.sleep)
    for _ in range(5):
        await gap.wait()
    assert len(fake.slept) == 4
    assert all(40 <= s <= 100 for s in fake.slept)


@pytest.mark.postgres
async def test_a_shared_bucket_holds_the_rate_for_all_processes_together(pg_url: str) -> None:
    clock = SystemClock()
    handles = [
        await Database.open(pg_url, workspace="default", now=clock.now(), apply_migrations=False)
        for _ in range(3)
    ]
    try:
        key = f"test:{time.monotonic_ns()}"
        rate = 40.0
        buckets = [SharedTokenBucket(db, key, rate, clock=clock) for db in handles]
        stamps: list[float] = []
        duration = 1.5

        async def spend(bucket: SharedTokenBucket) -> None:
            end = time.monotonic() + duration
            while time.monotonic() < end:
                await bucket.wait()
                stamps.append(time.monotonic())

        await asyncio.gather(*(spend(b) for b in buckets))
        # burst (one second's worth) plus the rate over the run, shared by all three
        assert len(stamps) <= rate * duration + rate + 3
        assert len(stamps) >= rate * duration * 0.8
    finally:
        for db in handles:
            await db.close()
