"""What every REST API body shares: field types and limits, field problems, the error body.

The API's bodies are pydantic models, and they are its only description: handlers validate
with them and answer with them, and the OpenAPI document is generated from them, so the
document cannot say one thing while the code does another. Two layers of checking meet in
them. The models check shape and everything JSON Schema can say (types, lengths, patterns),
so the published schema tells a client most of the rules. The ``to_*`` functions then check
what needs the engine's knowledge (a duration's unit, a time zone, a placeholder) and name
the offending field in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from scheduler.sequence_replace import MAX_ID

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


class ErrorInfo(BaseModel):
    model_config = RESPONSE
    code: str = Field(description="stable, machine-readable: not_found, validation_error, ...")
    message: str
    details: list[FieldProblem]


class ErrorOut(BaseModel):
    model_config = RESPONSE
    error: ErrorInfo


class Problems:
    """What is wrong with a request, gathered so that every problem is answered at once."""

    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, field: str, message: str) -> None:
        self.items.append(FieldProblem(field=field, message=message))

    def raise_any(self) -> None:
        if self.items:
            raise InvalidFields(self.items)


def error_body(code: str, message: str, details: Sequence[FieldProblem] = ()) -> bytes:
    body = ErrorOut(error=ErrorInfo(code=code, message=message, details=list(details)))
    return body.model_dump_json().encode()


def dump(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()
