"""Feeding a CSV into one atomic enrollment run, without blocking the event loop.

Reading and parsing happen in a worker thread batch by batch, so the service keeps
answering webhooks during a million-row import; the enrollment itself is one transaction, so
a file that turns out to be broken half-way leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime

from handlers.csv_import import RowProblem
from scheduler.enrollment import ContactInput, Enroller, EnrollReport
from scheduler.options import EngineOptions
from storage.database import Database

Batches = Iterator[list[ContactInput | RowProblem]]


async def import_contacts(
    db: Database,
    sequence: str | int,
    batches: Batches,
    *,
    now: datetime,
    options: EngineOptions,
    force: bool = False,
    source: str = "csv",
) -> EnrollReport:
    """Enroll every usable row of ``batches``; a CsvError raised mid-file undoes everything."""
    async with Enroller(
        db, sequence, now=now, options=options, force=force, source=source
    ) as enroller:
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            contacts: list[ContactInput] = []
            for row in batch:
                if isinstance(row, RowProblem):
                    enroller.add_invalid(row.line, row.raw_phone or "", row.reason)
                else:
                    contacts.append(row)
            await enroller.add(contacts)
    return enroller.report
