"""Shared switches every process must see, such as "sending is paused"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.models import Setting

SENDING_PAUSED = "sending_paused"


async def get_flag(conn: AsyncConnection, workspace_id: int, key: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(Setting.value).where(Setting.workspace_id == workspace_id, Setting.key == key)
        )
    ).first()
    return dict(row.value) if row else None


async def set_flag(
    conn: AsyncConnection, workspace_id: int, key: str, value: dict[str, Any], now: datetime
) -> bool:
    """Set a flag; True if it was not set before (so the caller alerts only once)."""
    changed = await conn.execute(
        update(Setting)
        .where(Setting.workspace_id == workspace_id, Setting.key == key)
        .values(value=value, updated_at=now)
    )
    if changed.rowcount:
        return False
    await conn.execute(
        insert(Setting).values(workspace_id=workspace_id, key=key, value=value, updated_at=now)
    )
    return True


async def clear_flag(conn: AsyncConnection, workspace_id: int, key: str) -> bool:
    removed = await conn.execute(
        delete(Setting).where(Setting.workspace_id == workspace_id, Setting.key == key)
    )
    return bool(removed.rowcount)
