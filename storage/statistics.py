"""Keeping the query planner's statistics current while tables grow inside a transaction."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_GROWING = "contacts, enrollments, outbound_messages"


async def refresh_statistics(conn: AsyncConnection) -> None:
    """ANALYZE the tables a bulk enrollment grows (PostgreSQL; nothing to do on SQLite).

    asyncpg's prepared statements switch to a generic plan after a few runs, planned on the
    statistics of nearly empty tables; ANALYZE inside the transaction counts its own rows.
    """
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"ANALYZE {_GROWING}"))
