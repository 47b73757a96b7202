"""The admin command grammar: chat text in, a Command value out, nothing else touched.

Telegram, admin WhatsApp numbers and ``dripbot admin`` all go through :func:`parse`, so a
command means the same everywhere. Arguments are split into words (quotes group a name with
spaces); step lines and descriptions are kept as typed, because they are message text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from handlers import help as help_entries
from handlers.commands import (
    AddStep,
    ArchiveSequence,
    CloneSequence,
    Command,
    Describe,
    EditStep,
    Enroll,
    EnrollLine,
    Export,
    Help,
    ListOptOuts,
    ListSequences,
    NewSequence,
    OptOut,
    PauseContact,
    PauseSending,
    PauseSequence,
    Preview,
    RemoveStep,
    ResumeContact,
    ResumeSending,
    ResumeSequence,
    SendTest,
    SetKeyword,
    SetStopOnReply,
    SetWindow,
    ShowContact,
    ShowQueue,
    ShowSequence,
    ShowStats,
    Unenroll,
)
from handlers.step_lines import LineError, Word, parse_step_line, split_words
from scheduler.options import Window
from scheduler.steps import StepSpec

#: the length of a sequence name column
NAME_LIMIT = 200
KEYWORD_LIMIT = 100
#: replies the webhook already gives a meaning to, so no sequence may claim them as keywords
RESERVED_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "START"}
)

_FORCE = frozenset({"--force", "—force", "–force"})
_PHONE_WORD = re.compile(r"[+\d()\-.]*\d[\d()\-.]*")
_LOOKS_LIKE_STEP = re.compile(r"(?i)\s*(?:day\s*\d+|after\s+\d+\s*[a-z]+)\b[^:\n]*:")
_SWITCH = {"on": True, "off": False, "yes": True, "no": False, "true": True, "false": False}


class UsageError(ValueError):
    """A command that cannot be parsed: ``message`` says what is wrong, ``usage`` how to fix it."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass(frozen=True)
class _Args:
    """A command's input after its command word."""

    name: str
    #: everything after the command word, across lines; ``Word`` positions index into it
    raw: str
    #: the non-blank lines after the command's own, with their numbers (the command is line 1)
    lines: tuple[tuple[int, str], ...]

    def words(self, limit: int | None = None) -> tuple[Word, ...]:
        """The words of the command's own line; after ``limit`` words it may be message text."""
        try:
            return tuple(split_words(self.raw.partition("\n")[0], limit))
        except LineError as err:
            raise self.fail(str(err)) from err

    def fail(self, message: str) -> UsageError:
        return UsageError(message, help_entries.usage(self.name))

    def rest_after(self, word: Word) -> str:
        return self.raw[word.end :].strip()


def parse(text: str) -> Command:
    """Chat text → the command it spells. Raises UsageError naming what is wrong."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    command_word = text.split(maxsplit=1)[0] if text else ""
    name = command_word.removeprefix("/").split("@", 1)[0].lower()
    if not name:
        raise UsageError("empty command; send /help for the list", help_entries.usage("help"))
    parser = _PARSERS.get(name)
    if parser is None:
        raise _unknown(name)
    raw = text[len(command_word) :]
    lines = tuple(
        (number, line.strip())
        for number, line in enumerate(raw.split("\n")[1:], start=2)
        if line.strip()
    )
    args = _Args(name, raw, lines)
    if lines and name not in _MULTI_LINE:
        number, line = lines[0]
        raise args.fail(f"/{name} takes one line; line {number} ({_excerpt(line)}) is extra")
    return parser(args)


def _unknown(name: str) -> UsageError:
    close = difflib.get_close_matches(name, list(_PARSERS), n=1, cutoff=0.6)
    if close:
        return UsageError(
            f"unknown command /{name}; did you mean /{close[0]}? Send /help for the list",
            help_entries.usage(close[0]),
        )
    return UsageError(
        f"unknown command /{name}; send /help for the list", help_entries.usage("help")
    )


def _excerpt(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- arguments --------------------------------------------------------------------------


def _name(args: _Args, words: tuple[Word, ...], what: str = "sequence name") -> str:
    """Words joined into one name; quotes are only needed where more arguments follow."""
    name = " ".join(" ".join(word.text for word in words).split())
    if not name:
        raise args.fail(f"/{args.name} needs a {what}")
    if len(name) > NAME_LIMIT:
        raise args.fail(f"the {what} is {len(name)} characters; at most {NAME_LIMIT}")
    return name


def _sequence_then(args: _Args, what: str, limit: int | None = None) -> tuple[str, list[Word]]:
    """The first word is the sequence (quoted if it has spaces); the rest is ``what``."""
    words = args.words(None if limit is None else limit + 1)
    if len(words) < 2:
        raise args.fail(f"/{args.name} needs a sequence name, then {what}")
    return _name(args, words[:1]), list(words[1:])


def _sequence_and_last(args: _Args, what: str) -> tuple[str, str]:
    """``<seq> <value>`` with a one-word value, so the name needs no quotes."""
    words = args.words()
    if len(words) < 2:
        raise args.fail(f"/{args.name} needs a sequence name, then {what}")
    return _name(args, words[:-1]), words[-1].text


def _phone(args: _Args, words: Iterable[Word]) -> str:
    phone = " ".join(word.text for word in words).strip()
    if not phone:
        raise args.fail(f"/{args.name} needs a phone number")
    return phone


def _no_arguments(kind: Callable[[], Command]) -> Callable[[_Args], Command]:
    def parse_it(args: _Args) -> Command:
        if args.raw.strip():
            raise args.fail(f"/{args.name} takes no arguments; got {_excerpt(args.raw)}")
        return kind()

    return parse_it


def _one_sequence(kind: Callable[[str], Command]) -> Callable[[_Args], Command]:
    """The whole line is the name, so a one-argument command needs no quotes."""
    return lambda args: kind(_name(args, args.words()))


def _one_phone(kind: Callable[[str], Command]) -> Callable[[_Args], Command]:
    return lambda args: kind(_phone(args, args.words()))


def _step(args: _Args, text: str) -> StepSpec:
    if not text:
        raise args.fail(f"/{args.name} needs a step line after the sequence name")
    extra = next((line for line in text.split("\n")[1:] if _LOOKS_LIKE_STEP.match(line)), None)
    if extra is not None:
        raise args.fail(
            f"one step per /{args.name}; {_excerpt(extra)} looks like another step "
            "(send it with its own /addstep)"
        )
    try:
        return parse_step_line(text)
    except LineError as err:
        raise args.fail(f"step {_excerpt(text)}: {err}") from err


def _step_number(args: _Args, text: str) -> int:
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise args.fail(f"{text!r} is not a step number (steps count from 1, see /sequence)")
    return int(text)


# --- one parser per command -------------------------------------------------------------


def _help(args: _Args) -> Help:
    words = args.words()
    if args.name == "start" or not words:  # /start may carry a Telegram deep-link payload
        return Help()
    topic = " ".join(word.text for word in words).lower().lstrip("/").split("@")[0]
    entry = help_entries.find(topic)
    if entry is None:
        close = difflib.get_close_matches(topic, [e.name for e in help_entries.ENTRIES], n=1)
        hint = f"; did you mean /help {close[0]}?" if close else "; send /help for the list"
        raise args.fail(f"there is no command /{topic}{hint}")
    return Help(entry.name)


def _new_sequence(args: _Args) -> NewSequence:
    name = _name(args, args.words())
    if _LOOKS_LIKE_STEP.match(name):
        raise args.fail(
            f"{_excerpt(name)} looks like a step; put the name on the first line "
            "and each step on a line of its own"
        )
    steps: list[StepSpec] = []
    problems: list[str] = []
    for number, line in args.lines:
        try:
            steps.append(parse_step_line(line))
        except LineError as err:
            problems.append(f"line {number}: {_excerpt(line)} — {err}")
    if problems:
        raise args.fail("\n".join(problems))
    return NewSequence(name, tuple(steps))


def _add_step(args: _Args) -> AddStep:
    words = args.words(1)
    if not words:
        raise args.fail("/addstep needs a sequence name, then a step line")
    return AddStep(_name(args, words), _step(args, args.rest_after(words[0])))


def _edit_step(args: _Args) -> EditStep:
    sequence, rest = _sequence_then(args, "a step number and a step line", limit=1)
    number = _step_number(args, rest[0].text)
    return EditStep(sequence, number, _step(args, args.rest_after(rest[0])))


def _remove_step(args: _Args) -> RemoveStep:
    sequence, number = _sequence_and_last(args, "a step number")
    return RemoveStep(sequence, _step_number(args, number))


def _is_sending(words: tuple[Word, ...]) -> bool:
    """``/pause sending`` means all sending; ``/pause "sending"`` a sequence of that name."""
    return len(words) == 1 and not words[0].quoted and words[0].text.lower() == "sending"


def _pause(args: _Args) -> PauseSequence | PauseSending:
    words = args.words()
    return PauseSending() if _is_sending(words) else PauseSequence(_name(args, words))


def _resume(args: _Args) -> ResumeSequence | ResumeSending:
    words = args.words()
    return ResumeSending() if _is_sending(words) else ResumeSequence(_name(args, words))


def _clone(args: _Args) -> CloneSequence:
    sequence, rest = _sequence_then(args, "a new name")
    return CloneSequence(sequence, _name(args, tuple(rest), "new name"))


def _enroll(args: _Args) -> Enroll:
    words = args.words()
    force = any(word.text.lower() in _FORCE for word in words)
    words = tuple(word for word in words if word.text.lower() not in _FORCE)
    sequence = _name(args, words[:1])
    entries: list[EnrollLine] = []
    csv_path: str | None = None
    if len(words) > 1:
        given = " ".join(word.text for word in words[1:])
        if given.lower().endswith(".csv"):
            csv_path = given
        else:
            entries.append(_enroll_line(args, 1, given))
    if csv_path is not None and args.lines:
        raise args.fail("give either a CSV file or numbers, not both")
    entries += (_enroll_line(args, number, line) for number, line in args.lines)
    return Enroll(sequence, tuple(entries), csv_path, force)


def _enroll_line(args: _Args, number: int, text: str) -> EnrollLine:
    """``+44 7700 900123 Ana Lima`` or ``+447700900123, Ana``: the number may contain spaces.

    The first word is always the number (a bad one is the engine's to report, with its line);
    further words join it while they look like digits, and a ',' or ';' ends it.
    """
    words = text.split()
    phone: list[str] = []
    name: list[str] = []
    for index, word in enumerate(words):
        core, separator, tail = _cut_at_separator(word)
        if index > 0 and not _PHONE_WORD.fullmatch(core):
            name = words[index:]
            break
        phone.append(core)
        if separator:
            name = [tail, *words[index + 1 :]]
            break
    phone_text = " ".join(part for part in phone if part)
    if not phone_text:
        raise args.fail(f"line {number}: {_excerpt(text)} has no phone number")
    name_text = " ".join(" ".join(name).split())
    return EnrollLine(number, phone_text, name_text or None)


def _cut_at_separator(word: str) -> tuple[str, str, str]:
    found = re.search(r"[,;]", word)
    if found is None:
        return word, "", ""
    return word[: found.start()], found[0], word[found.end() :]


def _unenroll(args: _Args) -> Unenroll:
    sequence, rest = _sequence_then(args, "a phone number")
    return Unenroll(sequence, _phone(args, rest))


def _preview(args: _Args) -> Preview:
    """A name with spaces needs no quotes when no number follows: a phone has digits."""
    words = args.words()
    if not any(char.isdigit() for word in words[1:] for char in word.text):
        return Preview(_name(args, words))
    return Preview(_name(args, words[:1]), _phone(args, words[1:]))


def _send_test(args: _Args) -> SendTest:
    sequence, rest = _sequence_then(args, "a phone number to send to")
    return SendTest(sequence, _phone(args, rest))


def _stats(args: _Args) -> ShowStats:
    words = args.words()
    return ShowStats(_name(args, words) if words else None)


def _set_keyword(args: _Args) -> SetKeyword:
    sequence, rest = _sequence_then(args, "a keyword (or off)")
    keyword = " ".join(" ".join(word.text for word in rest).split()).upper()
    if keyword == "OFF" and not rest[0].quoted:
        return SetKeyword(sequence, None)
    if not keyword:
        raise args.fail("the keyword is empty")
    if keyword.replace(" ", "") in RESERVED_KEYWORDS:
        raise args.fail(f"{keyword!r} is reserved for opting out and back in; pick another")
    if keyword.startswith("/"):
        raise args.fail(f"{keyword!r} would read as a command; a keyword cannot start with '/'")
    if len(keyword) > KEYWORD_LIMIT:
        raise args.fail(f"the keyword is {len(keyword)} characters; at most {KEYWORD_LIMIT}")
    return SetKeyword(sequence, keyword)


def _set_window(args: _Args) -> SetWindow:
    sequence, value = _sequence_and_last(args, "a window (HH:MM-HH:MM, always or default)")
    if value.lower() == "default":
        return SetWindow(sequence, None)
    try:
        window = Window.parse(value)
    except ValueError as err:
        raise args.fail(f"{value!r} is not a send window: {err}") from err
    return SetWindow(sequence, "always" if window is None else str(window))


def _stop_on_reply(args: _Args) -> SetStopOnReply:
    sequence, value = _sequence_and_last(args, "on or off")
    enabled = _SWITCH.get(value.lower())
    if enabled is None:
        raise args.fail(f"expected on or off after the sequence name, got {value!r}")
    return SetStopOnReply(sequence, enabled)


def _describe(args: _Args) -> Describe:
    words = args.words(1)
    text = args.rest_after(words[0]) if words else ""
    if not text:
        raise args.fail("/describe needs a sequence name, then the description")
    return Describe(_name(args, words), text)


_PARSERS: dict[str, Callable[[_Args], Command]] = {
    "help": _help,
    "start": _help,
    "newsequence": _new_sequence,
    "addstep": _add_step,
    "editstep": _edit_step,
    "removestep": _remove_step,
    "sequences": _no_arguments(ListSequences),
    "sequence": _one_sequence(ShowSequence),
    "pause": _pause,
    "resume": _resume,
    "archive": _one_sequence(ArchiveSequence),
    "clone": _clone,
    "enroll": _enroll,
    "unenroll": _unenroll,
    "pausecontact": _one_phone(PauseContact),
    "resumecontact": _one_phone(ResumeContact),
    "contact": _one_phone(ShowContact),
    "optout": _one_phone(OptOut),
    "optouts": _no_arguments(ListOptOuts),
    "preview": _preview,
    "test": _send_test,
    "queue": _no_arguments(ShowQueue),
    "stats": _stats,
    "export": _one_sequence(Export),
    "setkeyword": _set_keyword,
    "setwindow": _set_window,
    "stoponreply": _stop_on_reply,
    "describe": _describe,
}
#: commands whose later lines carry steps, numbers or text
_MULTI_LINE = frozenset({"newsequence", "enroll", "addstep", "editstep", "describe"})

#: every command word :func:`parse` knows
COMMAND_NAMES: tuple[str, ...] = tuple(_PARSERS)
