"""A sequence step's bodies: its timing, its message or template, and their engine checks.

A step is the largest body the API takes, and most of its rules need the engine: which of
``day`` and ``after`` it has, what a duration or a clock time says, what each message kind
must and must not carry. :func:`to_spec` checks all of them at once and names every field
at fault, so a client fixes a step in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import time

from pydantic import BaseModel, Field

from bot.api.common_schemas import (
    CAPTION_LIMIT,
    MAX_DAYS,
    REQUEST,
    RESPONSE,
    Duration,
    FieldProblem,
    HeaderKind,
    HourMinute,
    InvalidFields,
    Language,
    MediaKind,
    Message,
    Param,
    Problems,
    StepType,
    TemplateName,
    Url,
)
from scheduler.options import parse_hhmm
from scheduler.personalize import check_text
from scheduler.sequence_records import StepRecord
from scheduler.steps import StepSpec, TemplateRef, Timing, format_duration
from scheduler.timing import parse_duration

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


# --- responses --------------------------------------------------------------------------


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


# --- requests → engine values -----------------------------------------------------------


def _template(
    data: TemplateIn, where: str, problems: Problems, *, allow_placeholders: bool = True
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


def _timing(step: StepIn, where: str, problems: Problems) -> Timing | None:
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
    problems = Problems()
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
