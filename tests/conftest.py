"""Shared fixtures: real databases (a SQLite file per test, a PostgreSQL database per run),
a clock that only moves when a test says so, the fake Graph API on a real socket, an HTTP
session, and alerts that go to the log."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import text

from scheduler.clock import ManualClock
from scheduler.ports import LogAlerts
from storage.database import Database
from storage.engine import create_engine
from storage.migrate import upgrade
from storage.models import Base
from tests.fakes.graph import FakeGraph

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

PG_ADMIN_DSN = os.environ.get("DRIPBOT_TEST_PG_DSN", "postgresql://127.0.0.1:5432/test")
#: a Monday, 09:00 UTC, far from any DST change
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run async set-up from a sync fixture, even when a test's event loop is running."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(coro_fn())).result()


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time is slower)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    _run(lambda: _migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped at the end."""
    name = f"dripbot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    _run(create)
    host = PG_ADMIN_DSN.split("//", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql+asyncpg://{host}/{name}"
    try:
        _run(lambda: _migrate(url))
        yield url
    finally:
        _run(drop)


async def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    try:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "dripbot.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def db_url(backend: str, request: pytest.FixtureRequest) -> str:
    """A clean, migrated database on each backend in turn."""
    if backend == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    url = str(request.getfixturevalue("pg_url"))
    await _truncate_all(url)
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def db(db_url: str, clock: ManualClock) -> AsyncIterator[Database]:
    database = await Database.open(
        db_url, workspace="default", now=clock.now(), apply_migrations=False
    )
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def sqlite_db(sqlite_url: str, clock: ManualClock) -> AsyncIterator[Database]:
    """For tests of logic that does not depend on the backend."""
    database = await Database.open(
        sqlite_url, workspace="default", now=clock.now(), apply_migrations=False
    )
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def pg_db(pg_url: str, clock: ManualClock) -> AsyncIterator[Database]:
    """A clean PostgreSQL database, for what only PostgreSQL does (replicas, locking)."""
    await _truncate_all(pg_url)
    database = await Database.open(
        pg_url, workspace="default", now=clock.now(), apply_migrations=False
    )
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def alerts() -> LogAlerts:
    return LogAlerts()
