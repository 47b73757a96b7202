"""REST API keys: made once, shown once, stored only as a hash.

A key is ``drip_`` plus 32 random bytes (URL-safe base64). The database keeps its SHA-256 and
a short prefix, so a leaked database gives nobody a usable key and an admin can still tell
keys apart when listing or revoking them. The random part is far too long to guess, which
is why a plain (unsalted, fast) hash is enough here, unlike for passwords.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Row, insert, select, update

from storage.database import Database
from storage.errors import Conflict, NotFound
from storage.models import ApiKey

Scope = Literal["admin", "public"]
SCOPES: tuple[Scope, ...] = ("admin", "public")

KEY_MARK = "drip_"
#: characters of the key kept in clear: the mark plus seven random ones
PREFIX_LENGTH = 12
#: a presented key longer than this is not one of ours (and is not worth hashing)
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class ApiKeyRecord:
    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class NewApiKey:
    record: ApiKeyRecord
    #: the key itself; it exists only in this value, is never stored and stays out of repr
    plaintext: str = field(repr=False)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _record(row: Row[Any]) -> ApiKeyRecord:
    scope: Scope = "admin" if row.scope == "admin" else "public"
    return ApiKeyRecord(row.id, row.name, scope, row.prefix, row.created_at, row.revoked_at)


async def create_api_key(db: Database, *, scope: Scope, name: str, now: datetime) -> NewApiKey:
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r} (admin or public)")
    plaintext = KEY_MARK + secrets.token_urlsafe(32)
    async with db.engine.begin() as conn:
        key_id = (
            await conn.execute(
                insert(ApiKey)
                .values(
                    workspace_id=db.workspace_id,
                    name=name.strip()[:200],
                    scope=scope,
                    prefix=plaintext[:PREFIX_LENGTH],
                    key_hash=hash_key(plaintext),
                    created_at=now,
                )
                .returning(ApiKey.id)
            )
        ).scalar_one()
        row = (await conn.execute(select(ApiKey).where(ApiKey.id == key_id))).one()
    return NewApiKey(_record(row), plaintext)


async def verify_api_key(db: Database, presented: str) -> ApiKeyRecord | None:
    """The live key ``presented`` stands for, or None (unknown, malformed or revoked).

    The look-up goes by the hash, so the time it takes says nothing about how close a
    guess came; the final comparison is constant-time all the same.
    """
    if not presented.startswith(KEY_MARK) or len(presented) > MAX_KEY_LENGTH:
        return None
    digest = hash_key(presented)
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(ApiKey).where(
                    ApiKey.workspace_id == db.workspace_id,
                    ApiKey.key_hash == digest,
                    ApiKey.revoked_at.is_(None),
                )
            )
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return _record(row)


async def list_api_keys(db: Database) -> list[ApiKeyRecord]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(ApiKey).where(ApiKey.workspace_id == db.workspace_id).order_by(ApiKey.id)
        )
        return [_record(row) for row in rows]


async def revoke_api_key(db: Database, ref: str, *, now: datetime) -> ApiKeyRecord:
    """Revoke a key named by its id, its listed prefix, or the whole key.

    Revoking twice is harmless; a prefix that fits several keys is refused rather than
    guessed.
    """
    ref = ref.strip()
    async with db.engine.begin() as conn:
        query = select(ApiKey).where(ApiKey.workspace_id == db.workspace_id)
        rows = list(await conn.execute(query))
        if ref.isdigit():
            matches = [row for row in rows if row.id == int(ref)]
        elif len(ref) > PREFIX_LENGTH:
            digest = hash_key(ref)
            matches = [row for row in rows if hmac.compare_digest(row.key_hash, digest)]
        else:
            matches = [row for row in rows if row.prefix == ref]
        if not matches:
            raise NotFound(f"no API key {ref!r} (see `dripbot apikey list`)")
        if len(matches) > 1:
            raise Conflict(f"{ref!r} fits {len(matches)} keys; give more of the key or its id")
        row = matches[0]
        if row.revoked_at is None:
            await conn.execute(update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=now))
        revoked = (await conn.execute(select(ApiKey).where(ApiKey.id == row.id))).one()
    return _record(revoked)
