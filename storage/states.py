"""Record states and the moves allowed between them.

The outbox state machine lives here, as data, because both the dispatcher and the webhook
need the same answer to "may this message move from A to B?".
"""

from __future__ import annotations

from enum import StrEnum


class SequenceStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ARCHIVED = "archived"


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    STOPPED = "stopped"  # unenrolled by an admin, archived sequence, stop-on-reply
    OPTED_OUT = "opted_out"


#: Enrollments in these states block another enrollment of the same contact in the sequence.
LIVE_ENROLLMENT = (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED)


class MessageStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


_S = MessageStatus

#: Allowed moves. Webhook-driven moves (sent -> delivered -> read) only go forward; a late
#: ``delivered`` after ``read`` is simply not in the table and so is a no-op.
TRANSITIONS: dict[MessageStatus, frozenset[MessageStatus]] = {
    _S.SCHEDULED: frozenset({_S.SENDING, _S.SKIPPED, _S.CANCELLED, _S.FAILED}),
    _S.SENDING: frozenset(
        {_S.SCHEDULED, _S.SENT, _S.DELIVERED, _S.READ, _S.FAILED, _S.SKIPPED, _S.CANCELLED}
    ),
    _S.SENT: frozenset({_S.DELIVERED, _S.READ, _S.FAILED}),
    _S.DELIVERED: frozenset({_S.READ}),
    _S.READ: frozenset(),
    # Meta may report delivered/read after a failed status arrived out of order.
    _S.FAILED: frozenset({_S.DELIVERED, _S.READ}),
    _S.SKIPPED: frozenset(),
    _S.CANCELLED: frozenset(),
}

#: Messages that still wait to go out.
PENDING = (MessageStatus.SCHEDULED, MessageStatus.SENDING)
#: Messages that reached the lead's phone (or at least Meta).
ACCEPTED = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


def can_move(current: MessageStatus, target: MessageStatus) -> bool:
    """Whether the outbox may move a message from ``current`` to ``target``."""
    return target in TRANSITIONS[current]
