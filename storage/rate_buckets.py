"""Reserving send capacity from a token bucket every process shares.

Each process asks for a handful of tokens at a time (a fifth of a second's worth) inside one
short transaction that locks the bucket row, so the configured rate holds for all replicas
together while the database sees only a few statements per second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.models import RateBucket


async def reserve(
    engine: AsyncEngine, key: str, want: int, *, rate: float, burst: float, now: datetime
) -> tuple[int, float]:
    """Take up to ``want`` tokens; returns (granted, seconds until the next token).

    The bucket refills at ``rate`` tokens a second up to ``burst``. A new bucket starts with
    one token, so a cold start is paced from its first message.
    """
    for _ in range(2):
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    select(RateBucket.tokens, RateBucket.updated_at)
                    .where(RateBucket.key == key)
                    .with_for_update()
                )
            ).first()
            if row is not None:
                elapsed = max(0.0, (now - row.updated_at).total_seconds())
                tokens = min(burst, row.tokens + elapsed * rate)
                granted = max(0, min(want, int(tokens)))
                tokens -= granted
                await conn.execute(
                    update(RateBucket)
                    .where(RateBucket.key == key)
                    .values(tokens=tokens, updated_at=max(now, row.updated_at))
                )
                # Wait until a whole request's worth is there: asking again for one token at
                # a time would turn pacing into a stream of row-locking transactions.
                return granted, 0.0 if tokens >= want else (want - tokens) / rate
        await _ensure(engine, key, burst, now)
    raise RuntimeError(f"rate bucket {key!r} could not be created")


async def _ensure(engine: AsyncEngine, key: str, burst: float, now: datetime) -> None:
    """Create the bucket full on first use; a concurrent creator simply wins."""
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(RateBucket).values(key=key, tokens=1.0, updated_at=now))
    except IntegrityError:
        pass
