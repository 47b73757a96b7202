"""A sequence's bodies: its settings and steps in, the sequence with its counts out.

The settings the engine has rules for (the name, the send window, the keyword) are checked
here one field at a time, so the handlers can gather every problem of a body before they
answer; the steps are checked by :mod:`bot.api.step_schemas`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import AwareDatetime, BaseModel, Field

from bot.api.common_schemas import (
    MAX_STEPS,
    REQUEST,
    RESPONSE,
    Description,
    FieldProblem,
    InvalidFields,
    Keyword,
    Name,
    SequenceState,
    WindowText,
)
from bot.api.step_schemas import StepIn, StepOut, step_out
from handlers.optout import is_opt_in_text, is_opt_out_text
from scheduler.options import Window
from scheduler.sequence_records import SequenceRecord, StepRecord

# --- requests ---------------------------------------------------------------------------


class SequenceIn(BaseModel):
    """A sequence to create."""

    model_config = REQUEST
    name: Name
    description: Description = ""
    status: SequenceState = "active"
    send_window: WindowText | None = Field(
        default=None,
        description="HH:MM-HH:MM in the contact's time zone, 'always', or null for the "
        "configured default",
    )
    stop_on_reply: bool = False
    keyword: Keyword | None = Field(
        default=None, description="a lead who sends exactly this word joins the sequence"
    )
    steps: list[StepIn] = Field(default_factory=list, max_length=MAX_STEPS)


class SequenceReplaceIn(SequenceIn):
    """The whole sequence as it should be; `steps` is required (`[]` removes them all).

    Steps that stay the same keep their history; changed, added and removed steps apply to
    messages not yet sent, and a step whose time has passed for a contact is not sent.
    """

    steps: list[StepIn] = Field(max_length=MAX_STEPS)


# --- responses --------------------------------------------------------------------------


class EnrollmentCountsOut(BaseModel):
    model_config = RESPONSE
    active: int
    paused: int
    completed: int
    stopped: int
    opted_out: int
    total: int


class SequenceOut(BaseModel):
    model_config = RESPONSE
    id: int
    name: str
    description: str
    status: SequenceState
    send_window: str | None
    stop_on_reply: bool
    keyword: str | None
    created_at: AwareDatetime
    paused_at: AwareDatetime | None
    steps: list[StepOut]
    enrollments: EnrollmentCountsOut
    warnings: list[str] = Field(description="steps most contacts would get skipped, and why")


class SequenceListOut(BaseModel):
    model_config = RESPONSE
    sequences: list[SequenceOut]


# --- requests → engine values -----------------------------------------------------------


def normalized_window(text: str | None) -> str | None:
    """The window as stored (``"6:00-21:00"`` → ``"06:00-21:00"``); InvalidFields if bad."""
    if text is None:
        return None
    try:
        window = Window.parse(text)
    except ValueError as err:
        raise InvalidFields([FieldProblem(field="send_window", message=str(err))]) from None
    return "always" if window is None else str(window)


def check_keyword(keyword: str | None) -> str | None:
    """A keyword, or None for none; opt-out and opt-in words are refused."""
    if keyword is None or not keyword.strip():
        return None
    if is_opt_out_text(keyword) or is_opt_in_text(keyword):
        raise InvalidFields(
            [
                FieldProblem(
                    field="keyword",
                    message=f"{keyword.strip()!r} is an opt-out or opt-in word; pick another",
                )
            ]
        )
    return keyword


def check_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidFields([FieldProblem(field="name", message="a sequence needs a name")])
    return cleaned


# --- engine values → responses ----------------------------------------------------------


def counts_out(by_status: Mapping[str, int]) -> EnrollmentCountsOut:
    values = {name: by_status.get(name, 0) for name in EnrollmentCountsOut.model_fields}
    values["total"] = sum(v for k, v in values.items() if k != "total")
    return EnrollmentCountsOut(**values)


def sequence_out(
    record: SequenceRecord,
    steps: Sequence[StepRecord],
    counts: Mapping[str, int],
    warnings: Sequence[str],
) -> SequenceOut:
    return SequenceOut(
        id=record.id,
        name=record.name,
        description=record.description,
        status=_sequence_state(record.status),
        send_window=record.send_window,
        stop_on_reply=record.stop_on_reply,
        keyword=record.keyword,
        created_at=record.created_at,
        paused_at=record.paused_at,
        steps=[step_out(step) for step in steps],
        enrollments=counts_out(counts),
        warnings=list(warnings),
    )


def _sequence_state(value: str) -> SequenceState:
    if value == "paused":
        return "paused"
    return "archived" if value == "archived" else "active"
