"""Contacts and their enrollments: who to enroll or opt out, and what became of them.

A contact arrives in the same shape whether one is enrolled, many are, or a form enrolls one
through the public routes; :func:`check_contact` refuses a number or time zone the engine
cannot use, naming the field, and a bulk report gives each refused contact its index.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from bot.api.common_schemas import (
    MAX_BULK,
    QUERY,
    REQUEST,
    RESPONSE,
    Email,
    EnrollmentState,
    FieldName,
    FieldValue,
    Id,
    Name,
    Phone,
    Problems,
    Short,
    Zone,
)
from scheduler.contacts import ContactRecord
from scheduler.enrollment import ContactInput, EnrollReport, ProblemList
from scheduler.phones import InvalidPhone, normalize_phone
from scheduler.sequence_replace import EnrollmentDetail
from scheduler.timing import is_valid_zone, local_time_label

# --- requests ---------------------------------------------------------------------------


class ContactIn(BaseModel):
    """A contact; `phone` in any common spelling (E.164 preferred)."""

    model_config = REQUEST
    phone: Phone
    name: Short | None = None
    first_name: Short | None = None
    email: Email | None = None
    company: Short | None = None
    timezone: Zone | None = Field(default=None, description="an IANA zone, e.g. Europe/Berlin")
    custom_fields: dict[FieldName, FieldValue] = Field(default_factory=dict, max_length=50)


class EnrollIn(ContactIn):
    force: bool = Field(
        default=False, description="enroll again a contact who completed the sequence"
    )


class BulkEnrollIn(BaseModel):
    """Many contacts at once; each problem is reported with its index in `contacts`."""

    model_config = REQUEST
    contacts: list[ContactIn] = Field(min_length=1, max_length=MAX_BULK)
    force: bool = False


class PublicEnrollIn(ContactIn):
    sequence: Id | Name = Field(description="the sequence's id, or its name")


class OptOutIn(BaseModel):
    model_config = REQUEST
    phone: Phone


class EnrollmentUpdateIn(BaseModel):
    model_config = REQUEST
    status: Literal["active", "paused", "stopped"]


class EnrollmentsQuery(BaseModel):
    model_config = QUERY
    status: EnrollmentState | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)


# --- responses --------------------------------------------------------------------------


class ContactOut(BaseModel):
    model_config = RESPONSE
    id: int
    phone: str | None
    user_id: str | None
    name: str | None
    first_name: str | None
    email: str | None
    company: str | None
    timezone: str | None
    custom_fields: dict[str, str]
    opted_out: bool
    opted_out_at: AwareDatetime | None


class NextSendOut(BaseModel):
    model_config = RESPONSE
    step: int
    due_at: AwareDatetime
    local_time: str = Field(description="the due time on the contact's clock")


class EnrollmentOut(BaseModel):
    model_config = RESPONSE
    id: int
    sequence_id: int
    sequence: str
    status: EnrollmentState
    source: str
    timezone: str
    enrolled_at: AwareDatetime
    paused_at: AwareDatetime | None
    replied_at: AwareDatetime | None
    completed_at: AwareDatetime | None
    ended_at: AwareDatetime | None
    end_reason: str | None
    contact: ContactOut
    next_send: NextSendOut | None


class EnrollmentPageOut(BaseModel):
    model_config = RESPONSE
    enrollments: list[EnrollmentOut]
    page: int
    page_size: int
    total: int


class ProblemOut(BaseModel):
    model_config = RESPONSE
    index: int | None = Field(description="0-based position in the request's contacts")
    phone: str
    reason: str


class EnrollReportOut(BaseModel):
    model_config = RESPONSE
    sequence: str
    total: int
    enrolled: int
    already_enrolled: list[ProblemOut]
    duplicates: list[ProblemOut]
    opted_out: list[ProblemOut]
    invalid: list[ProblemOut]


class SequenceRefOut(BaseModel):
    model_config = RESPONSE
    id: int
    name: str


class PublicEnrollOut(BaseModel):
    model_config = RESPONSE
    status: Literal["enrolled"]
    phone: str
    sequence: SequenceRefOut


class OptOutOut(BaseModel):
    model_config = RESPONSE
    phone: str
    opted_out: Literal[True]
    already_opted_out: bool


# --- requests → engine values -----------------------------------------------------------


def to_contact(contact: ContactIn, *, index: int | None = None) -> ContactInput:
    return ContactInput(
        phone=contact.phone,
        name=_blank_to_none(contact.name),
        first_name=_blank_to_none(contact.first_name),
        email=_blank_to_none(contact.email),
        company=_blank_to_none(contact.company),
        timezone=_blank_to_none(contact.timezone),
        custom=dict(contact.custom_fields),
        line=index,
    )


def check_contact(contact: ContactIn, default_region: str | None) -> str:
    """The contact's E.164 number; InvalidFields names the phone or zone that cannot be used."""
    problems = Problems()
    phone = ""
    try:
        phone = normalize_phone(contact.phone, default_region)
    except InvalidPhone as err:
        problems.add("phone", f"{contact.phone!r} is not a valid phone number: {err}")
    zone = _blank_to_none(contact.timezone)
    if zone is not None and not is_valid_zone(zone):
        problems.add("timezone", f"unknown time zone {zone!r} (use an IANA name)")
    problems.raise_any()
    return phone


def _blank_to_none(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


# --- engine values → responses ----------------------------------------------------------


def contact_out(contact: ContactRecord) -> ContactOut:
    return ContactOut(
        id=contact.id,
        phone=contact.phone,
        user_id=contact.user_id,
        name=contact.name,
        first_name=contact.first_name,
        email=contact.email,
        company=contact.company,
        timezone=contact.timezone,
        custom_fields={str(k): str(v) for k, v in contact.custom_fields.items()},
        opted_out=contact.opted_out_at is not None,
        opted_out_at=contact.opted_out_at,
    )


def enrollment_out(detail: EnrollmentDetail) -> EnrollmentOut:
    next_send = None
    if detail.next_due is not None and detail.next_step is not None:
        next_send = NextSendOut(
            step=detail.next_step,
            due_at=detail.next_due,
            local_time=local_time_label(detail.next_due, detail.timezone),
        )
    return EnrollmentOut.model_validate(
        {
            "id": detail.id,
            "sequence_id": detail.sequence_id,
            "sequence": detail.sequence,
            "status": detail.status,
            "source": detail.source,
            "timezone": detail.timezone,
            "enrolled_at": detail.enrolled_at,
            "paused_at": detail.paused_at,
            "replied_at": detail.replied_at,
            "completed_at": detail.completed_at,
            "ended_at": detail.ended_at,
            "end_reason": detail.end_reason,
            "contact": contact_out(detail.contact),
            "next_send": next_send,
        }
    )


def _problems_out(problems: ProblemList) -> list[ProblemOut]:
    return [ProblemOut(index=p.line, phone=p.phone, reason=p.reason) for p in problems.lines]


def report_out(report: EnrollReport) -> EnrollReportOut:
    return EnrollReportOut(
        sequence=report.sequence,
        total=report.total,
        enrolled=report.enrolled,
        already_enrolled=_problems_out(report.already_enrolled),
        duplicates=_problems_out(report.duplicates),
        opted_out=_problems_out(report.opted_out),
        invalid=_problems_out(report.invalid),
    )
