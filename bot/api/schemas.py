"""The REST API's bodies, as pydantic models: what requests may hold and what answers hold.

These models are the only description of the API's data. Handlers validate with them and
answer with them, and the OpenAPI document is generated from them, so the document cannot
say one thing while the code does another.

Two layers of checking meet here. The models check shape and everything JSON Schema can say
(types, lengths, patterns), so the published schema tells a client most of the rules. The
``to_*`` functions then check what needs the engine's knowledge (a duration's unit, a time
zone, a placeholder) and name the offending field in the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, time
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from handlers.optout import is_opt_in_text, is_opt_out_text
from handlers.stats import SequenceStats, StatsReport
from scheduler.contacts import ContactRecord
from scheduler.enrollment import ContactInput, EnrollReport, ProblemList
from scheduler.options import Window, parse_hhmm
from scheduler.personalize import check_text
from scheduler.phones import InvalidPhone, normalize_phone
from scheduler.sequence_replace import MAX_ID, EnrollmentDetail
from scheduler.sequences import SequenceRecord, StepRecord
from scheduler.steps import StepSpec, TemplateRef, Timing, format_duration
from scheduler.timing import is_valid_zone, local_time_label, parse_duration

#: WhatsApp's limits on a text body and on a media caption
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
MAX_DAYS = 3650
MAX_STEPS = 100
#: contacts per bulk request; every problem row is then reported in full
MAX_BULK = 5000
PAGE_SIZE = 50

# NUL can be neither stored (PostgreSQL text) nor sent, so no string may contain one.
_NO_NUL = r"^[^\x00]*$"

Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=10_000, pattern=_NO_NUL)]
Message = Annotated[str, StringConstraints(max_length=TEXT_LIMIT, pattern=_NO_NUL)]
Short = Annotated[str, StringConstraints(max_length=200, pattern=_NO_NUL)]
Email = Annotated[str, StringConstraints(max_length=320, pattern=_NO_NUL)]
Phone = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL)]
Zone = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL)]
Keyword = Annotated[str, StringConstraints(max_length=100, pattern=_NO_NUL)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=_NO_NUL)]
FieldValue = Annotated[str, StringConstraints(max_length=1000, pattern=_NO_NUL)]
Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s\x00]+$")]
HourMinute = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,2}:[0-9]{2}$")]
Duration = Annotated[str, StringConstraints(pattern=r"^ *[0-9]{1,8} *[smhdSMHD] *$")]
WindowText = Annotated[
    str, StringConstraints(pattern=r"^([0-9]{1,2}:[0-9]{2}-[0-9]{1,2}:[0-9]{2}|always)$")
]
TemplateName = Annotated[
    str, StringConstraints(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
]
Language = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{2,3}([_-]([A-Za-z]{2}|[0-9]{3}))?$")
]
Param = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=_NO_NUL)]

StepType = Literal["text", "media", "template"]
MediaKind = Literal["image", "video", "document", "audio"]
HeaderKind = Literal["image", "video", "document"]
SequenceState = Literal["active", "paused", "archived"]
EnrollmentState = Literal["active", "paused", "completed", "stopped", "opted_out"]

#: requests: strict JSON types, and an unknown field is an error rather than a silent no-op
REQUEST = ConfigDict(strict=True, extra="forbid")
#: query strings are text by nature, so numbers are read from it; unknown names are errors
QUERY = ConfigDict(extra="forbid")
RESPONSE = ConfigDict(extra="forbid")


class FieldProblem(BaseModel):
    """One thing wrong with a request, and where."""

    model_config = RESPONSE
    #: the field, as a path into the body or the query (``steps[2].after``); None: the whole
    field: str | None
    message: str


class InvalidFields(ValueError):
    """Request fields the engine's rules refuse (answered 422)."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = list(problems)


def field_path(loc: Sequence[str | int], prefix: str = "") -> str | None:
    """``("steps", 2, "after")`` → ``"steps[2].after"``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or None


# --- requests ---------------------------------------------------------------------------


class HeaderIn(BaseModel):
    """A template's header media."""

    model_config = REQUEST
    type: HeaderKind
    link: Url


class TemplateIn(BaseModel):
    """An approved WhatsApp template; params fill its body ({{1}}, {{2}}, ...) in order and
    may hold placeholders such as `{first_name|there}`."""

    model_config = REQUEST
    name: TemplateName
    language: Language
    params: list[Param] = Field(default_factory=list, max_length=20)
    header: HeaderIn | None = None


class StepIn(BaseModel):
    """A step: `day` (with an optional local `at`) or `after`, and its message."""

    model_config = REQUEST
    day: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    at: HourMinute | None = None
    after: Duration | None = Field(default=None, description="30s, 30m, 2h or 5d")
    type: StepType = "text"
    message: Message = Field(default="", description="the text, or the media caption")
    media_url: Url | None = None
    media_type: MediaKind | None = None
    template: TemplateIn | None = None
    fallback_template: TemplateIn | None = Field(
        default=None,
        description="sent instead of a text or media step when the contact's 24-hour "
        "window is closed",
    )


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


class StatsQuery(BaseModel):
    model_config = QUERY
    sequence_id: Id | None = None
    days: int = Field(default=14, ge=1, le=366, description="days of daily trend")


# --- responses --------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    model_config = RESPONSE
    code: str = Field(description="stable, machine-readable: not_found, validation_error, ...")
    message: str
    details: list[FieldProblem]


class ErrorOut(BaseModel):
    model_config = RESPONSE
    error: ErrorInfo


class HeaderOut(BaseModel):
    model_config = RESPONSE
    type: str
    link: str


class TemplateOut(BaseModel):
    model_config = RESPONSE
    name: str
    language: str
    params: list[str]
    header: HeaderOut | None


class StepOut(BaseModel):
    model_config = RESPONSE
    number: int = Field(description="1-based place in send order")
    day: int | None
    at: str | None
    after: str | None
    type: StepType
    message: str
    media_url: str | None
    media_type: str | None
    template: TemplateOut | None
    fallback_template: TemplateOut | None
    paused: bool = Field(description="held after WhatsApp rejected its template")
    pause_reason: str | None


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


class CountsOut(BaseModel):
    model_config = RESPONSE
    sent: int
    delivered: int
    read: int
    replied: int
    failed: int
    skipped: int
    scheduled: int
    cancelled: int


class StepStatsOut(BaseModel):
    model_config = RESPONSE
    number: int | None = Field(description="null gathers the messages of removed steps")
    timing: str
    counts: CountsOut


class SequenceStatsOut(BaseModel):
    model_config = RESPONSE
    id: int
    name: str
    status: str
    enrollments: EnrollmentCountsOut
    totals: CountsOut
    steps: list[StepStatsOut]


class DayStatsOut(BaseModel):
    model_config = RESPONSE
    day: date
    sent: int
    delivered: int
    read: int
    replies: int
    opt_outs: int
    failed: int
    skipped: int


class PeriodOut(BaseModel):
    model_config = RESPONSE
    sent: int
    delivered: int
    read: int
    reached: int
    replies: int
    opt_outs: int
    failed: int
    skipped: int


class StatsOut(BaseModel):
    model_config = RESPONSE
    generated_at: AwareDatetime
    timezone: str
    sequence: str | None = Field(description="the sequence asked for; null for all")
    sequences: list[SequenceStatsOut]
    trend: list[DayStatsOut]
    period: PeriodOut


# --- requests → engine values -----------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(FieldProblem(field=field, message=message))

    def raise_any(self) -> None:
        if self.items:
            raise InvalidFields(self.items)


def _template(
    data: TemplateIn, where: str, problems: _Problems, *, allow_placeholders: bool = True
) -> TemplateRef:
    for number, param in enumerate(data.params):
        if not param.strip():
            problems.add(f"{where}.params[{number}]", "a template parameter cannot be blank")
        elif allow_placeholders:
            for problem in check_text(param):
                problems.add(f"{where}.params[{number}]", problem)
    language, _, region = data.language.replace("-", "_").partition("_")
    normalized = language.lower() + (f"_{region.upper()}" if region else "")
    header = None if data.header is None else (data.header.type, data.header.link)
    return TemplateRef(data.name, normalized, tuple(data.params), header)


def _timing(step: StepIn, where: str, problems: _Problems) -> Timing | None:
    if step.day is not None and step.after is not None:
        problems.add(f"{where}.after", "give either 'day' or 'after', not both")
        return None
    if step.day is None and step.after is None:
        problems.add(f"{where}.day", "a step needs 'day' (Day N) or 'after' (a duration)")
        return None
    if step.after is not None:
        if step.at is not None:
            problems.add(f"{where}.at", "'at' goes with 'day', not with 'after'")
            return None
        try:
            return Timing(after=parse_duration(step.after))
        except ValueError as err:
            problems.add(f"{where}.after", str(err))
            return None
    at: time | None = None
    if step.at is not None:
        try:
            at = parse_hhmm(step.at)
        except ValueError as err:
            problems.add(f"{where}.at", str(err))
            return None
    return Timing(day=step.day, at=at)


def to_spec(step: StepIn, where: str) -> StepSpec:
    """The engine's StepSpec for one step of a request; InvalidFields names what is wrong."""
    problems = _Problems()
    prefix = where
    timing = _timing(step, prefix, problems)
    fallback = (
        None
        if step.fallback_template is None
        else _template(step.fallback_template, f"{prefix}.fallback_template", problems)
    )
    for problem in check_text(step.message):
        problems.add(f"{prefix}.message", problem)
    spec: StepSpec | None = None
    if step.type == "text":
        if not step.message.strip():
            problems.add(f"{prefix}.message", "a text step needs a message")
        for name in ("media_url", "media_type", "template"):
            if getattr(step, name) is not None:
                problems.add(f"{prefix}.{name}", f"a text step has no {name}")
        if timing is not None and not problems.items:
            spec = StepSpec(timing, "text", body=step.message, fallback=fallback)
    elif step.type == "media":
        if step.media_url is None:
            problems.add(f"{prefix}.media_url", "a media step needs a media_url")
        if step.media_type is None:
            problems.add(f"{prefix}.media_type", "a media step needs a media_type")
        if step.template is not None:
            problems.add(f"{prefix}.template", "a media step has no template")
        if len(step.message) > CAPTION_LIMIT:
            problems.add(
                f"{prefix}.message",
                f"the caption is {len(step.message)} characters; WhatsApp allows {CAPTION_LIMIT}",
            )
        if step.media_type == "audio" and step.message.strip():
            problems.add(f"{prefix}.message", "WhatsApp audio messages have no caption")
        if (
            timing is not None
            and step.media_url is not None
            and step.media_type is not None
            and not problems.items
        ):
            spec = StepSpec(
                timing,
                "media",
                body=step.message,
                media_url=step.media_url,
                media_type=step.media_type,
                fallback=fallback,
            )
    else:
        if step.template is None:
            problems.add(f"{prefix}.template", "a template step needs a template")
        if step.fallback_template is not None:
            problems.add(f"{prefix}.fallback_template", "a template step needs no fallback")
        for name in ("media_url", "media_type"):
            if getattr(step, name) is not None:
                problems.add(f"{prefix}.{name}", f"a template step has no {name}")
        if step.message.strip():
            problems.add(f"{prefix}.message", "a template step's text is the template's")
        template = (
            None
            if step.template is None
            else _template(step.template, f"{prefix}.template", problems)
        )
        if timing is not None and template is not None and not problems.items:
            spec = StepSpec(timing, "template", template=template)
    problems.raise_any()
    assert spec is not None
    return spec


def to_specs(steps: Sequence[StepIn]) -> list[StepSpec]:
    problems: list[FieldProblem] = []
    specs = []
    for number, step in enumerate(steps):
        try:
            specs.append(to_spec(step, f"steps[{number}]"))
        except InvalidFields as err:
            problems.extend(err.problems)
    if problems:
        raise InvalidFields(problems)
    return specs


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
    problems = _Problems()
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


def template_out(ref: TemplateRef | None) -> TemplateOut | None:
    if ref is None:
        return None
    header = None if ref.header is None else HeaderOut(type=ref.header[0], link=ref.header[1])
    return TemplateOut(name=ref.name, language=ref.language, params=list(ref.params), header=header)


def step_out(step: StepRecord) -> StepOut:
    spec, timing = step.spec, step.spec.timing
    return StepOut(
        number=step.position,
        day=timing.day,
        at=timing.at.strftime("%H:%M") if timing.at is not None else None,
        after=format_duration(timing.after) if timing.after is not None else None,
        type=spec.kind,
        message=spec.body,
        media_url=spec.media_url,
        media_type=spec.media_type,
        template=template_out(spec.template),
        fallback_template=template_out(spec.fallback),
        paused=step.paused,
        pause_reason=step.pause_reason,
    )


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


def _sequence_stats_out(stats: SequenceStats) -> SequenceStatsOut:
    enrollments = stats.enrollments
    return SequenceStatsOut(
        id=stats.id,
        name=stats.name,
        status=stats.status,
        enrollments=EnrollmentCountsOut(
            active=enrollments.active,
            paused=enrollments.paused,
            completed=enrollments.completed,
            stopped=enrollments.stopped,
            opted_out=enrollments.opted_out,
            total=enrollments.total,
        ),
        totals=CountsOut.model_validate(stats.totals, from_attributes=True),
        steps=[
            StepStatsOut(
                number=step.number,
                timing=step.timing,
                counts=CountsOut.model_validate(step.counts, from_attributes=True),
            )
            for step in stats.steps
        ],
    )


def stats_out(report: StatsReport) -> StatsOut:
    return StatsOut(
        generated_at=report.generated_at,
        timezone=report.timezone,
        sequence=report.sequence,
        sequences=[_sequence_stats_out(s) for s in report.sequences],
        trend=[DayStatsOut.model_validate(day, from_attributes=True) for day in report.trend],
        period=PeriodOut.model_validate(report.period, from_attributes=True),
    )


def error_body(code: str, message: str, details: Sequence[FieldProblem] = ()) -> bytes:
    body = ErrorOut(error=ErrorInfo(code=code, message=message, details=list(details)))
    return body.model_dump_json().encode()


def dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()
