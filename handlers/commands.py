"""The admin commands as values: what the grammar produces and the interpreter runs.

Each class names its command word in ``command`` so a reply can point at the right usage
line. Sequence names are kept as typed; the engine matches them case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, TypeAlias

from scheduler.steps import StepSpec


@dataclass(frozen=True)
class Help:
    """``/help`` (everything) or ``/help <command>`` (that command in detail)."""

    command: ClassVar[str] = "help"
    topic: str | None = None


@dataclass(frozen=True)
class NewSequence:
    command: ClassVar[str] = "newsequence"
    name: str
    steps: tuple[StepSpec, ...] = ()


@dataclass(frozen=True)
class AddStep:
    command: ClassVar[str] = "addstep"
    sequence: str
    step: StepSpec


@dataclass(frozen=True)
class RemoveStep:
    command: ClassVar[str] = "removestep"
    sequence: str
    #: 1-based, as ``/sequence`` numbers the steps
    number: int


@dataclass(frozen=True)
class EditStep:
    command: ClassVar[str] = "editstep"
    sequence: str
    number: int
    step: StepSpec


@dataclass(frozen=True)
class ListSequences:
    command: ClassVar[str] = "sequences"


@dataclass(frozen=True)
class ShowSequence:
    command: ClassVar[str] = "sequence"
    sequence: str


@dataclass(frozen=True)
class PauseSequence:
    command: ClassVar[str] = "pause"
    sequence: str


@dataclass(frozen=True)
class ResumeSequence:
    command: ClassVar[str] = "resume"
    sequence: str


@dataclass(frozen=True)
class ArchiveSequence:
    command: ClassVar[str] = "archive"
    sequence: str


@dataclass(frozen=True)
class CloneSequence:
    command: ClassVar[str] = "clone"
    sequence: str
    new_name: str


@dataclass(frozen=True)
class PauseSending:
    """Stop all sending, e.g. while a rejected token is replaced."""

    command: ClassVar[str] = "pause sending"


@dataclass(frozen=True)
class ResumeSending:
    command: ClassVar[str] = "resume sending"


class EnrollLine(NamedTuple):
    """One ``<phone> [name]`` as typed; the line number lets the report point back at it."""

    line: int
    phone: str
    name: str | None


@dataclass(frozen=True)
class Enroll:
    """Numbers typed in the command, or a CSV file path (``dripbot admin`` only).

    Both may be absent: a CSV document sent with the caption ``/enroll <seq>`` arrives beside
    the command, so only the interpreter knows whether anything was given.
    """

    command: ClassVar[str] = "enroll"
    sequence: str
    entries: tuple[EnrollLine, ...] = ()
    csv_path: str | None = None
    #: re-enroll contacts who already completed the sequence
    force: bool = False


@dataclass(frozen=True)
class Unenroll:
    command: ClassVar[str] = "unenroll"
    sequence: str
    phone: str


@dataclass(frozen=True)
class PauseContact:
    command: ClassVar[str] = "pausecontact"
    phone: str


@dataclass(frozen=True)
class ResumeContact:
    command: ClassVar[str] = "resumecontact"
    phone: str


@dataclass(frozen=True)
class ShowContact:
    command: ClassVar[str] = "contact"
    phone: str


@dataclass(frozen=True)
class OptOut:
    command: ClassVar[str] = "optout"
    phone: str


@dataclass(frozen=True)
class ListOptOuts:
    command: ClassVar[str] = "optouts"


@dataclass(frozen=True)
class Preview:
    """Every step rendered for a contact, or for a sample contact when ``phone`` is None."""

    command: ClassVar[str] = "preview"
    sequence: str
    phone: str | None = None


@dataclass(frozen=True)
class SendTest:
    """``/test``: every step sent now to one number, outside any enrollment."""

    command: ClassVar[str] = "test"
    sequence: str
    phone: str


@dataclass(frozen=True)
class ShowQueue:
    command: ClassVar[str] = "queue"


@dataclass(frozen=True)
class ShowStats:
    command: ClassVar[str] = "stats"
    sequence: str | None = None


@dataclass(frozen=True)
class Export:
    command: ClassVar[str] = "export"
    sequence: str


@dataclass(frozen=True)
class SetKeyword:
    command: ClassVar[str] = "setkeyword"
    sequence: str
    #: upper case with single spaces, as stored; None removes the keyword
    keyword: str | None


@dataclass(frozen=True)
class SetWindow:
    command: ClassVar[str] = "setwindow"
    sequence: str
    #: ``"HH:MM-HH:MM"`` or ``"always"`` as stored; None goes back to the configured default
    window: str | None


@dataclass(frozen=True)
class SetStopOnReply:
    command: ClassVar[str] = "stoponreply"
    sequence: str
    enabled: bool


@dataclass(frozen=True)
class Describe:
    command: ClassVar[str] = "describe"
    sequence: str
    description: str


Command: TypeAlias = (
    Help
    | NewSequence
    | AddStep
    | RemoveStep
    | EditStep
    | ListSequences
    | ShowSequence
    | PauseSequence
    | ResumeSequence
    | ArchiveSequence
    | CloneSequence
    | PauseSending
    | ResumeSending
    | Enroll
    | Unenroll
    | PauseContact
    | ResumeContact
    | ShowContact
    | OptOut
    | ListOptOuts
    | Preview
    | SendTest
    | ShowQueue
    | ShowStats
    | Export
    | SetKeyword
    | SetWindow
    | SetStopOnReply
    | Describe
)
