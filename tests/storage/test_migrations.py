"""Migrations are the schema: they must match the models and go both ways."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.engine import create_engine
from storage.migrate import downgrade, upgrade
from storage.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_migrations_match_the_models(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_downgrade_then_upgrade_round_trips(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set(Base.metadata.tables)
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def _partial(connection: Connection) -> dict[str, bool]:
    """Each index of the outbox: whether the database holds only some rows in it."""
    return {
        index["name"]: any(key.endswith("_where") for key in index.get("dialect_options", {}))
        for index in inspect(connection).get_indexes("outbound_messages")
    }


async def test_partial_indexes_are_partial_in_the_migrated_schema(db_url: str) -> None:
    # Alembic's comparison ignores an index's condition, so it cannot catch a migration that
    # builds a partial index whole (and the claim then writes entries it should not).
    expected = {
        str(index.name): bool(index.dialect_options["postgresql"]["where"] is not None)
        for index in Base.metadata.tables["outbound_messages"].indexes
    }
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_partial) == expected
    finally:
        await engine.dispose()
    assert expected["uq_outbound_messages_wamid"] and not expected["ix_outbound_claim"]
