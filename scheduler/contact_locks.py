"""Per-contact mutual exclusion between sending and opting out.

An opt-out must never be followed by a send. The dispatcher holds a contact's lock from the
moment it re-reads the opt-out state until the request has left; the opt-out takes the same
lock before it commits. Either the send finished before the opt-out, or it sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class ContactLocks:
    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    def _get(self, contact_id: int) -> asyncio.Lock:
        lock = self._locks.get(contact_id)
        if lock is None:
            lock = self._locks[contact_id] = asyncio.Lock()
        self._users[contact_id] = self._users.get(contact_id, 0) + 1
        return lock

    def _put(self, contact_id: int) -> None:
        left = self._users[contact_id] - 1
        if left:
            self._users[contact_id] = left
        else:  # nobody waits: forget it, so the table does not grow with every contact
            del self._users[contact_id]
            del self._locks[contact_id]

    async def acquire(self, contact_id: int) -> None:
        lock = self._get(contact_id)
        try:
            await lock.acquire()
        except BaseException:
            self._put(contact_id)
            raise

    def release(self, contact_id: int) -> None:
        self._locks[contact_id].release()
        self._put(contact_id)

    @asynccontextmanager
    async def hold(self, contact_id: int) -> AsyncIterator[None]:
        await self.acquire(contact_id)
        try:
            yield
        finally:
            self.release(contact_id)

    async def acquire_many(self, contact_ids: Iterable[int]) -> list[int]:
        """Lock several contacts in a fixed order (no deadlock); returns what was locked."""
        held: list[int] = []
        try:
            for contact_id in sorted(set(contact_ids)):
                await self.acquire(contact_id)
                held.append(contact_id)
        except BaseException:
            for contact_id in held:
                self.release(contact_id)
            raise
        return held

    def __len__(self) -> int:
        return len(self._locks)
