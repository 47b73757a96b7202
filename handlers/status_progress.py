"""``sent``, ``delivered`` and ``read``: the common statuses, applied for a whole batch in a
handful of statements prepared once, each moving a message only forward.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Update, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from handlers.events import DeliveryStatus
from handlers.status_moves import PROGRESS, may_move_to, target_of
from scheduler.ports import message_id_from_callback
from storage.models import OutboundMessage
from storage.outbox import complete_enrollments
from storage.states import MessageStatus

M = OutboundMessage
_S = MessageStatus
#: the instants each progress status fills in (read implies delivered implies sent)
_STAMPS: Final = {
    _S.SENT: ("sent_at",),
    _S.DELIVERED: ("sent_at", "delivered_at"),
    _S.READ: ("sent_at", "delivered_at", "read_at"),
}


@dataclass
class StatusSummary:
    progressed: int = 0
    failed: int = 0
    ignored: int = 0


def _progress_statement(target: MessageStatus, *, by_id: bool) -> Update:
    values: dict[str, Any] = {
        "status": target.value,
        "lease_until": None,
        "updated_at": bindparam("now"),
    }
    for column in _STAMPS[target]:
        values[column] = func.coalesce(getattr(M, column), bindparam("at"))
    conditions: list[ColumnElement[bool]] = [may_move_to(target)]
    if by_id:
        # The callback names the record; the WhatsApp id must agree if the record has one.
        conditions += [
            M.id == bindparam("mid"),
            or_(M.wamid.is_(None), M.wamid == bindparam("w")),
        ]
        values["wamid"] = func.coalesce(M.wamid, bindparam("w"))
    else:
        conditions.append(M.wamid == bindparam("w"))
    return update(M).where(*conditions).values(values)


_BY_ID: Final = {target: _progress_statement(target, by_id=True) for target in PROGRESS}
_BY_WAMID: Final = {target: _progress_statement(target, by_id=False) for target in PROGRESS}


async def apply_progress(
    conn: AsyncConnection, statuses: Seq[DeliveryStatus], *, now: datetime
) -> StatusSummary:
    """``sent``, ``delivered`` and ``read`` for many messages, in the caller's transaction, in
    a handful of statements. Anything else is counted as ignored."""
    summary = StatusSummary()
    by_id: dict[MessageStatus, dict[tuple[int, str], dict[str, Any]]] = {t: {} for t in PROGRESS}
    by_wamid: dict[MessageStatus, dict[str, dict[str, Any]]] = {t: {} for t in PROGRESS}
    for status in statuses:
        target = target_of(status)
        if target is None or target is _S.FAILED:
            summary.ignored += 1
            continue
        summary.progressed += 1
        mid = message_id_from_callback(status.callback_data)
        params = {"w": status.wamid, "at": status.at, "now": now}
        if mid is not None:
            by_id[target].setdefault((mid, status.wamid), params | {"mid": mid})
        else:
            by_wamid[target].setdefault(status.wamid, params)
    # Ascending targets: whatever the arrival order, a message ends at the latest.
    for target in PROGRESS:
        if by_id[target]:
            await conn.execute(_BY_ID[target], list(by_id[target].values()))
        if by_wamid[target]:
            await conn.execute(_BY_WAMID[target], list(by_wamid[target].values()))
    settled = sorted({mid for target in PROGRESS for mid, _ in by_id[target]})
    if settled:
        # A send settled here may have been the enrollment's last one in doubt.
        enrollment_ids = (
            await conn.execute(
                select(M.enrollment_id).where(M.id.in_(settled), M.enrollment_id.is_not(None))
            )
        ).scalars()
        await complete_enrollments(conn, sorted({e for e in enrollment_ids if e}), now=now)
    return summary
