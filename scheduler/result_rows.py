"""What becomes of each claimed message: the plan for it, and the outbox row written back.

Every claimed message ends its batch as one row for :func:`storage.outbox.record_results`,
whether it was sent, refused, never tried or put back in the queue. The rows are built from
one full default so that a field a helper does not mention is reset, not left as claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.ports import OutgoingMessage
from storage.outbox import Claimed
from storage.states import MessageStatus


@dataclass
class Plan:
    """What to do with one claimed message: send ``message``, or write ``result`` as is."""

    claimed: Claimed
    contact_id: int
    message: OutgoingMessage | None = None
    result: dict[str, Any] | None = None
    business_initiated: bool = False
    used_fallback: bool = False
    step_id: int | None = None


def _row(item: Claimed, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": item.id,
        "status": MessageStatus.SCHEDULED.value,
        "due_at": item.due_at,
        "wamid": None,
        "sent_at": None,
        "failed_at": None,
        "error_code": None,
        "error_detail": None,
        "deferred_reason": None,
        "payload": item.payload,
        "dry_run": False,
        "business_initiated": False,
        "lease_until": None,
        "attempts": item.attempts,
    }
    row.update(values)
    return row


def sent(item: Claimed, plan: Plan, wamid: str, now: datetime, dry_run: bool) -> dict[str, Any]:
    assert plan.message is not None
    return _row(
        item,
        status=MessageStatus.SENT.value,
        wamid=wamid,
        sent_at=now,
        payload=plan.message.to_json() | ({"fallback": True} if plan.used_fallback else {}),
        dry_run=dry_run,
        business_initiated=plan.business_initiated,
    )


def retry(item: Claimed, at: datetime, code: int | None, reason: str) -> dict[str, Any]:
    return _row(item, due_at=at, error_code=code, error_detail=reason)


def release(item: Claimed, at: datetime, reason: str | None) -> dict[str, Any]:
    """Back to the queue without counting an attempt (it was never tried)."""
    return _row(item, due_at=at, deferred_reason=reason, attempts=max(0, item.attempts - 1))


def failed(item: Claimed, code: int | None, reason: str, now: datetime) -> dict[str, Any]:
    return _row(
        item, status=MessageStatus.FAILED.value, failed_at=now, error_code=code, error_detail=reason
    )


def skipped(item: Claimed, reason: str, code: int | None = None) -> dict[str, Any]:
    return _row(item, status=MessageStatus.SKIPPED.value, error_code=code, error_detail=reason)


def cancelled(item: Claimed, reason: str) -> dict[str, Any]:
    return _row(item, status=MessageStatus.CANCELLED.value, error_detail=reason)
