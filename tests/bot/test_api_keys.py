"""API keys: stored only as a hash, verified, listed, revoked; and ``dripbot apikey``."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from bot.apikey_cli import apikey_main
from bot.config import load_settings
from scheduler.clock import ManualClock
from storage.api_keys import (
    KEY_MARK,
    PREFIX_LENGTH,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from storage.database import Database
from storage.errors import Conflict, NotFound
from storage.models import ApiKey


async def test_the_key_itself_is_nowhere_in_the_database(db: Database, clock: ManualClock) -> None:
    made = await create_api_key(db, scope="admin", name="crm", now=clock.now())
    key = made.plaintext
    assert key.startswith(KEY_MARK) and len(key) >= len(KEY_MARK) + 43
    secret = key[PREFIX_LENGTH:]
    async with db.engine.connect() as conn:
        rows = [tuple(row) for row in await conn.execute(select(ApiKey))]
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert key not in stored and secret not in stored and secret[:16] not in stored
    row = rows[0]
    assert hashlib.sha256(key.encode()).hexdigest() in row
    assert made.record.prefix == key[:PREFIX_LENGTH]
    assert (made.record.scope, made.record.name, made.record.revoked) == ("admin", "crm", False)
    assert secret not in repr(made) and secret not in str(made)


async def test_keys_are_random(db: Database, clock: ManualClock) -> None:
    keys = {
        (await create_api_key(db, scope="public", name="", now=clock.now())).plaintext
        for _ in range(20)
    }
    assert len(keys) == 20
    assert len({key[:PREFIX_LENGTH] for key in keys}) == 20


async def test_verify(db: Database, clock: ManualClock) -> None:
    admin = await create_api_key(db, scope="admin", name="a", now=clock.now())
    public = await create_api_key(db, scope="public", name="p", now=clock.now())
    found = await verify_api_key(db, admin.plaintext)
    assert found is not None and (found.id, found.scope) == (admin.record.id, "admin")
    found = await verify_api_key(db, public.plaintext)
    assert found is not None and found.scope == "public"
    for wrong in (
        admin.plaintext[:-1],
        admin.plaintext + "x",
        admin.plaintext.upper(),
        admin.plaintext[len(KEY_MARK) :],
        "",
        KEY_MARK,
        KEY_MARK + "x" * 500,
        hashlib.sha256(admin.plaintext.encode()).hexdigest(),
    ):
        assert await verify_api_key(db, wrong) is None, wrong


async def test_revoke_by_prefix_id_or_whole_key(db: Database, clock: ManualClock) -> None:
    keys = [await create_api_key(db, scope="admin", name=n, now=clock.now()) for n in "abc"]
    later = clock.advance(timedelta(minutes=5))
    by_prefix = await revoke_api_key(db, keys[0].record.prefix, now=later)
    by_id = await revoke_api_key(db, str(keys[1].record.id), now=later)
    by_key = await revoke_api_key(db, keys[2].plaintext, now=later)
    assert [r.id for r in (by_prefix, by_id, by_key)] == [k.record.id for k in keys]
    assert all(r.revoked_at == later for r in (by_prefix, by_id, by_key))
    for key in keys:
        assert await verify_api_key(db, key.plaintext) is None
    again = await revoke_api_key(db, keys[0].record.prefix, now=later + timedelta(hours=1))
    assert again.revoked_at == later  # the first revocation stands
    listed = await list_api_keys(db)
    assert [(k.name, k.revoked) for k in listed] == [("a", True), ("b", True), ("c", True)]


async def test_revoke_refuses_what_it_cannot_pin_down(db: Database, clock: ManualClock) -> None:
    made = await create_api_key(db, scope="public", name="", now=clock.now())
    with pytest.raises(NotFound):
        await revoke_api_key(db, "drip_nothing", now=clock.now())
    with pytest.raises(NotFound):
        await revoke_api_key(db, "999", now=clock.now())
    with pytest.raises(NotFound):
        await revoke_api_key(db, made.record.prefix[:6], now=clock.now())  # too short to trust
    with pytest.raises(NotFound):
        await revoke_api_key(db, made.plaintext + "x", now=clock.now())
    async with db.engine.begin() as conn:  # another key that happens to share the prefix
        await conn.execute(
            insert(ApiKey).values(
                workspace_id=db.workspace_id,
                name="twin",
                scope="admin",
                prefix=made.record.prefix,
                key_hash="0" * 64,
                created_at=clock.now(),
            )
        )
    with pytest.raises(Conflict):
        await revoke_api_key(db, made.record.prefix, now=clock.now())
    assert await verify_api_key(db, made.plaintext) is not None


async def test_keys_belong_to_their_workspace(
    db: Database, db_url: str, clock: ManualClock
) -> None:
    other = await Database.open(db_url, workspace="other", now=clock.now(), apply_migrations=False)
    try:
        made = await create_api_key(other, scope="admin", name="", now=clock.now())
        assert await verify_api_key(db, made.plaintext) is None
        assert await list_api_keys(db) == []
        with pytest.raises(NotFound):
            await revoke_api_key(db, made.record.prefix, now=clock.now())
        assert await verify_api_key(other, made.plaintext) is not None
    finally:
        await other.close()


# --- dripbot apikey ---------------------------------------------------------------------


def run(args: list[str], sqlite_url: str, clock: ManualClock) -> tuple[int, str, str]:
    settings = load_settings(_env_file=None, database_url=sqlite_url)
    out, err = io.StringIO(), io.StringIO()
    code = apikey_main(args, settings, clock=clock, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_create_list_revoke(sqlite_url: str, clock: ManualClock, clean_env: None) -> None:
    code, out, err = run(
        ["create", "--scope", "public", "--name", "signup form"], sqlite_url, clock
    )
    assert code == 0
    key = out.strip()
    assert key.startswith(KEY_MARK) and "\n" not in key
    assert "public" in err and key[:PREFIX_LENGTH] in err and key not in err

    code, out, _ = run(["list"], sqlite_url, clock)
    assert code == 0
    assert key[:PREFIX_LENGTH] in out and "signup form" in out and "active" in out
    assert key not in out

    code, out, _ = run(["revoke", key[:PREFIX_LENGTH]], sqlite_url, clock)
    assert code == 0 and "revoked" in out.lower()
    code, out, _ = run(["list"], sqlite_url, clock)
    assert "revoked 2026-03-02 09:00 UTC" in out


def test_cli_failures(sqlite_url: str, clock: ManualClock, clean_env: None) -> None:
    code, out, _ = run(["list"], sqlite_url, clock)
    assert code == 0 and "No API keys" in out
    code, _, err = run(["revoke", "drip_missing"], sqlite_url, clock)
    assert code == 1 and "no API key" in err
    code, _, _ = run(["create", "--scope", "root"], sqlite_url, clock)
    assert code == 2
    code, _, _ = run(["create"], sqlite_url, clock)
    assert code == 2
    code, _, _ = run([], sqlite_url, clock)
    assert code == 2
    code, out, _ = run(["list"], sqlite_url, clock)
    assert "No API keys" in out
