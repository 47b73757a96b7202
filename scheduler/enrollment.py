"""Enrolling contacts into sequences, one or a million at a time.

An enrollment writes the contact (created or updated), the enrollment and one outbox row per
step with its due time, so the schedule lives in the database. A bulk import runs in one
transaction fed batch by batch: memory stays flat, one bad row is reported and skipped, and
an error half-way leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from scheduler.errors import Invalid
from scheduler.options import EngineOptions, Window
from scheduler.phones import InvalidPhone, normalize_phone
from scheduler.sequence_records import SequenceRecord, StepRecord, find_sequence, load_steps
from scheduler.step_edits import planned_due
from scheduler.timing import is_valid_zone, next_window_opening, zone_for
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage
from storage.states import LIVE_ENROLLMENT, EnrollmentStatus, MessageStatus, SequenceStatus
from storage.statistics import refresh_statistics

#: rows per statement; well under SQLite's bound-parameter limit
CHUNK = 2000
#: problem lines kept in full in a report; beyond that only counted
DETAIL_CAP = 5000


@dataclass(frozen=True, slots=True)
class ContactInput:
    phone: str  # as written; the engine validates and normalises it
    name: str | None = None
    first_name: str | None = None
    email: str | None = None
    company: str | None = None
    timezone: str | None = None
    custom: Mapping[str, str] = field(default_factory=dict)
    line: int | None = None  # source line (CSV: header = 1), for reports


@dataclass(frozen=True, slots=True)
class ReportLine:
    line: int | None
    phone: str
    reason: str


@dataclass
class ProblemList:
    """Problem lines, kept in full up to a cap and counted beyond it."""

    count: int = 0
    lines: list[ReportLine] = field(default_factory=list)

    def add(self, line: int | None, phone: str, reason: str) -> None:
        self.count += 1
        if len(self.lines) < DETAIL_CAP:
            self.lines.append(ReportLine(line, phone, reason))


@dataclass
class EnrollReport:
    sequence: str = ""
    enrolled: int = 0
    already_enrolled: ProblemList = field(default_factory=ProblemList)
    duplicates: ProblemList = field(default_factory=ProblemList)
    opted_out: ProblemList = field(default_factory=ProblemList)
    invalid: ProblemList = field(default_factory=ProblemList)
    #: (contact id, enrollment id) of the rows enrolled, kept only for small imports
    enrolled_ids: list[tuple[int, int]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return (
            self.enrolled
            + self.already_enrolled.count
            + self.duplicates.count
            + self.opted_out.count
            + self.invalid.count
        )


@dataclass(frozen=True, slots=True)
class _Prepared:
    source: ContactInput
    phone: str
    zone: str


_CONTACT_FIELDS = ("name", "first_name", "email", "company", "timezone")
_BLOCKING = frozenset([s.value for s in LIVE_ENROLLMENT] + [EnrollmentStatus.COMPLETED.value])


class Enroller:
    """One atomic enrollment run; use as ``async with`` and feed it batches with :meth:`add`."""

    def __init__(
        self,
        db: Database,
        sequence: str | int,
        *,
        now: datetime,
        options: EngineOptions,
        force: bool = False,
        source: str = "command",
        keep_ids: int = 100,
    ) -> None:
        self._db = db
        self._ref = sequence
        self._now = now
        self._options = options
        self._force = force
        self._source = source
        self._keep_ids = keep_ids
        self._seen: set[int] = set()
        self._due_cache: dict[str, list[Any]] = {}
        self._chunks = 0
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self.report = EnrollReport()
        self.sequence: SequenceRecord | None = None
        self._steps: list[StepRecord] = []
        self._window: Window | None = None

    async def __aenter__(self) -> Enroller:
        self._conn = await self._db.engine.connect()
        try:
            self._tx = await self._conn.begin()
            self.sequence = await find_sequence(self._conn, self._db.workspace_id, self._ref)
            if self.sequence.status == SequenceStatus.ARCHIVED:
                raise Invalid(f"sequence {self.sequence.name!r} is archived; nobody can join it")
            self._steps = await load_steps(self._conn, self.sequence.id)
            if not self._steps:
                raise Invalid(
                    f"sequence {self.sequence.name!r} has no steps yet; add one with /addstep"
                )
            self._window = self.sequence.window(self._options)
            self.report.sequence = self.sequence.name
        except BaseException:
            await self._conn.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None and self._tx is not None
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        finally:
            await self._conn.close()

    def add_invalid(self, line: int | None, phone: str, reason: str) -> None:
        """Record a row the caller could not even read (e.g. a malformed CSV line)."""
        self.report.invalid.add(line, phone, reason)

    async def add(self, contacts: Iterable[ContactInput]) -> None:
        batch = list(contacts)
        # Validation is CPU work (~20 µs a number): keep it off the event loop.
        prepared = (
            await asyncio.to_thread(self._prepare, batch)
            if len(batch) > 50
            else (self._prepare(batch))
        )
        for start in range(0, len(prepared), CHUNK):
            await self._write(prepared[start : start + CHUNK])
            await self._refresh_statistics()

    async def _refresh_statistics(self) -> None:
        """Refresh the planner's statistics after chunk 1, 2, 4, 8...: well under a second in
        all, and it keeps a big import (and the first dispatches after it) linear."""
        assert self._conn is not None
        self._chunks += 1
        if not self._chunks & (self._chunks - 1):
            await refresh_statistics(self._conn)

    def _prepare(self, batch: list[ContactInput]) -> list[_Prepared]:
        region = self._options.default_region
        default_zone = self._options.default_timezone
        report = self.report
        prepared = []
        for item in batch:
            try:
                phone = normalize_phone(item.phone, region)
            except InvalidPhone as err:
                report.invalid.add(item.line, item.phone, str(err))
                continue
            if item.timezone and item.timezone != item.timezone.strip():
                item = replace(item, timezone=item.timezone.strip() or None)
            if item.timezone and not is_valid_zone(item.timezone):
                report.invalid.add(item.line, item.phone, f"unknown time zone {item.timezone!r}")
                continue
            key = int(phone[1:])
            if key in self._seen:
                report.duplicates.add(item.line, phone, "appears earlier in this import")
                continue
            self._seen.add(key)
            prepared.append(_Prepared(item, phone, zone_for(item.timezone, phone, default_zone)))
        return prepared

    async def _write(self, batch: list[_Prepared]) -> None:
        conn = self._conn
        assert conn is not None and self.sequence is not None
        if not batch:
            return
        workspace_id, now = self._db.workspace_id, self._now
        phones = [p.phone for p in batch]
        existing = {
            row.phone: row
            for row in await conn.execute(
                select(Contact.id, Contact.phone, Contact.opted_out_at).where(
                    Contact.workspace_id == workspace_id, Contact.phone.in_(phones)
                )
            )
        }
        new = [p for p in batch if p.phone not in existing]
        ids: dict[str, int] = {phone: row.id for phone, row in existing.items()}
        if new:
            # Plain multi-row inserts, then one look-up: RETURNING in parameter order makes
            # SQLite insert row by row, several times slower.
            await conn.execute(
                insert(Contact), [_contact_values(p, workspace_id, now) for p in new]
            )
            created = await conn.execute(
                select(Contact.id, Contact.phone).where(
                    Contact.workspace_id == workspace_id,
                    Contact.phone.in_([p.phone for p in new]),
                )
            )
            ids.update({phone: contact_id for contact_id, phone in created if phone})
        updates = [
            _contact_update(p, existing[p.phone].id, now)
            for p in batch
            if p.phone in existing and _has_details(p.source)
        ]
        if updates:
            await _update_contacts(conn, updates)

        candidates = []
        for prepared in batch:
            row = existing.get(prepared.phone)
            if row is not None and row.opted_out_at is not None:
                self.report.opted_out.add(
                    prepared.source.line, prepared.phone, "opted out; never enrolled or messaged"
                )
                continue
            candidates.append(prepared)
        if not candidates:
            return
        blocked = await self._blocked(conn, [ids[p.phone] for p in candidates])
        enroll = []
        for prepared in candidates:
            reason = blocked.get(ids[prepared.phone])
            if reason:
                self.report.already_enrolled.add(prepared.source.line, prepared.phone, reason)
            else:
                enroll.append(prepared)
        if not enroll:
            return
        await conn.execute(
            insert(Enrollment),
            [
                {
                    "workspace_id": workspace_id,
                    "sequence_id": self.sequence.id,
                    "contact_id": ids[p.phone],
                    "status": EnrollmentStatus.ACTIVE.value,
                    "enrolled_at": now,
                    "timezone": p.zone,
                    "source": self._source,
                    "shift_seconds": 0,
                }
                for p in enroll
            ],
        )
        # The live-enrollment unique index makes (sequence, contact) name exactly this row.
        # Select by contact alone (its own index) and filter here: a condition on the
        # sequence lets SQLite pick the sequence index and walk every enrollment in it.
        sequence_id = self.sequence.id
        live = {
            contact_id: enrollment_id
            for contact_id, enrollment_id, seq, status in await conn.execute(
                select(
                    Enrollment.contact_id,
                    Enrollment.id,
                    Enrollment.sequence_id,
                    Enrollment.status,
                ).where(Enrollment.contact_id.in_([ids[p.phone] for p in enroll]))
            )
            if seq == sequence_id and status == EnrollmentStatus.ACTIVE
        }
        enrollment_ids = [live[ids[p.phone]] for p in enroll]
        outbox = []
        for prepared, enrollment_id in zip(enroll, enrollment_ids, strict=True):
            contact_id = ids[prepared.phone]
            for step, due in zip(self._steps, self._dues(prepared.zone), strict=True):
                outbox.append(
                    {
                        "workspace_id": workspace_id,
                        "contact_id": contact_id,
                        "enrollment_id": enrollment_id,
                        "sequence_id": self.sequence.id,
                        "step_id": step.id,
                        "purpose": "drip",
                        "status": MessageStatus.SCHEDULED.value,
                        "due_at": due,
                        "attempts": 0,
                        "dry_run": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if len(self.report.enrolled_ids) < self._keep_ids:
                self.report.enrolled_ids.append((contact_id, enrollment_id))
        for start in range(0, len(outbox), CHUNK):
            await conn.execute(insert(OutboundMessage), outbox[start : start + CHUNK])
        self.report.enrolled += len(enroll)

    def _dues(self, zone: str) -> list[Any]:
        """Due times per step for one zone: every row of one import shares ``now``."""
        cached = self._due_cache.get(zone)
        if cached is None:
            cached = []
            for step in self._steps:
                due = planned_due(step.spec, self._now, 0, zone, self._window)
                if due < self._now:  # e.g. "Day 1 at 10:00" for someone enrolled at 15:00
                    due = next_window_opening(self._now, zone, self._window)
                cached.append(due)
            self._due_cache[zone] = cached
        return cached

    async def _blocked(self, conn: AsyncConnection, contact_ids: list[int]) -> dict[int, str]:
        """Why some of these contacts cannot join: already live, or completed without force."""
        assert self.sequence is not None
        rows = [
            (contact_id, status)
            for contact_id, seq, status in await conn.execute(
                select(Enrollment.contact_id, Enrollment.sequence_id, Enrollment.status).where(
                    Enrollment.contact_id.in_(contact_ids)
                )
            )
            if seq == self.sequence.id and status in _BLOCKING
        ]
        blocked: dict[int, str] = {}
        for contact_id, status in rows:
            if status in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED):
                blocked[contact_id] = f"already enrolled ({status})"
            elif not self._force:
                blocked.setdefault(
                    contact_id, "completed this sequence before; use force to enroll again"
                )
        return blocked


def _has_details(item: ContactInput) -> bool:
    return bool(item.custom) or any(getattr(item, name) for name in _CONTACT_FIELDS)


def _contact_values(prepared: _Prepared, workspace_id: int, now: datetime) -> dict[str, Any]:
    item = prepared.source
    return {
        "workspace_id": workspace_id,
        "phone": prepared.phone,
        "name": item.name,
        "first_name": item.first_name,
        "email": item.email,
        "company": item.company,
        "timezone": item.timezone,
        "custom_fields": dict(item.custom),
        "created_at": now,
        "updated_at": now,
    }


def _contact_update(prepared: _Prepared, contact_id: int, now: datetime) -> dict[str, Any]:
    item = prepared.source
    values: dict[str, Any] = {"cid": contact_id, "now": now}
    for name in _CONTACT_FIELDS:
        values[f"v_{name}"] = getattr(item, name)
    values["v_custom"] = dict(item.custom) if item.custom else None
    return values


async def _update_contacts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Fill in what an import brings for known contacts, never blanking what they had."""
    values: dict[str, Any] = {
        name: func.coalesce(bindparam(f"v_{name}"), getattr(Contact, name))
        for name in _CONTACT_FIELDS
    }
    values["updated_at"] = bindparam("now")
    await conn.execute(update(Contact).where(Contact.id == bindparam("cid")).values(**values), rows)
    custom = [r for r in rows if r["v_custom"]]
    if custom:
        current = {
            row.id: row.custom_fields or {}
            for row in await conn.execute(
                select(Contact.id, Contact.custom_fields).where(
                    Contact.id.in_([r["cid"] for r in custom])
                )
            )
        }
        await conn.execute(
            update(Contact)
            .where(Contact.id == bindparam("cid"))
            .values(custom_fields=bindparam("cf")),
            [
                {"cid": r["cid"], "cf": {**current.get(r["cid"], {}), **r["v_custom"]}}
                for r in custom
            ],
        )


async def enroll(
    db: Database,
    sequence: str | int,
    contacts: Iterable[ContactInput],
    *,
    now: datetime,
    options: EngineOptions,
    force: bool = False,
    source: str = "command",
) -> EnrollReport:
    """Enroll a handful of contacts in one go (chat commands, the REST API, keywords)."""
    async with Enroller(
        db, sequence, now=now, options=options, force=force, source=source
    ) as enroller:
        await enroller.add(contacts)
    return enroller.report
