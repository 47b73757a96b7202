"""One handle on the database: engine, session factory and the workspace in use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import migrate
from storage.engine import create_engine, is_sqlite, session_factory
from storage.models import Workspace

#: what a database that is away for a while raises (a restart, the network): worth a warning
#: line and a retry, not a traceback, as opposed to an error in our own code
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, OSError)


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    workspace_id: int

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @classmethod
    async def open(
        cls, url: str, *, workspace: str, now: datetime, apply_migrations: bool = True
    ) -> Database:
        """Connect, bring the schema up to date, and make sure the workspace exists."""
        engine = create_engine(url, pool_size=5 if is_sqlite(url) else 10)
        try:
            if apply_migrations:
                await migrate.upgrade(engine)
            workspace_id = await ensure_workspace(engine, workspace, now)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, session_factory(engine), workspace_id)

    async def close(self) -> None:
        await self.engine.dispose()


async def ensure_workspace(engine: AsyncEngine, name: str, now: datetime) -> int:
    """The id of workspace ``name``, created on first use (safe with concurrent starters)."""
    query = select(Workspace.id).where(Workspace.name == name)
    async with engine.begin() as conn:
        found = (await conn.execute(query)).scalar_one_or_none()
        if found is not None:
            return int(found)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Workspace).values(name=name, created_at=now))
    except IntegrityError:
        pass  # another process created it first
    async with engine.begin() as conn:
        return int((await conn.execute(query)).scalar_one())
