"""Where a delivery status may move a message: the progress order and, for each target, the
states it may come from. Every status is applied as a guarded UPDATE built on these, so a
repeated or late status matches no row (:mod:`storage.states` holds the moves themselves).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import literal_column
from sqlalchemy.sql.elements import ColumnElement

from handlers.events import DeliveryStatus
from storage.models import OutboundMessage
from storage.states import MessageStatus, can_move

M = OutboundMessage
_S = MessageStatus
#: the statuses that only move a message forward, in the order that makes "latest wins"
PROGRESS: Final = (_S.SENT, _S.DELIVERED, _S.READ)


def sources_of(target: MessageStatus) -> list[str]:
    """Every state a message may move to ``target`` from."""
    return [s.value for s in MessageStatus if can_move(s, target)]


def may_move_to(target: MessageStatus) -> ColumnElement[bool]:
    """``status IN (...)`` written out as constants: an expanding parameter list cannot be
    part of a statement executed for many rows at once."""
    return M.status.in_([literal_column(f"'{source}'") for source in sources_of(target)])


def target_of(status: DeliveryStatus) -> MessageStatus | None:
    try:
        target = MessageStatus(status.status)
    except ValueError:
        return None
    return target if target in PROGRESS or target is _S.FAILED else None
