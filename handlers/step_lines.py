"""Step lines: a whole step written on one chat line, ``<timing>: <message>``.

Admins write steps on a phone keyboard, so the spelling is forgiving where that costs nothing
(``Day 3`` or ``day 3``, ``en-us`` for ``en_US``, curly quotes) and strict where a mistake
would reach leads (a bad time, a media step whose URL WhatsApp cannot fetch, a caption on
audio). The words of a line are split here too, so command arguments and template
parameters follow the same quoting rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from scheduler.options import parse_hhmm
from scheduler.steps import MEDIA_TYPES, MediaType, StepSpec, TemplateRef, Timing
from scheduler.timing import parse_duration

#: WhatsApp's limits on a text body and on a media caption
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
#: far enough for any drip, near enough that date arithmetic never overflows
MAX_DAYS = 3650

EXPECTED_TIMING = "expected 'Day N', 'Day N at HH:MM' or 'after <duration>' before ':'"

# Straight quotes, and the curly ones phone keyboards substitute for them.
_CLOSERS: dict[str, str] = {'"': '"', "'": "'", "“": "”“", "”": "”", "‘": "’", "«": "»"}
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]+")
_LANGUAGE = re.compile(r"(?P<lang>[a-z]{2,3})(?:[_-](?P<region>[a-z]{2}|\d{3}))?", re.IGNORECASE)
#: "Day N at HH:MM:" has a colon inside its timing, so it is recognised before splitting
_DAY_AT_PREFIX = re.compile(r"(?is)\s*(day[^:]*?\bat\s+\d{1,2}:\d{2})\s*:(.*)")
_DAY = re.compile(r"(?i)day\s*(?P<n>\S+?)(?:\s+at\s+(?P<at>\S+))?")
_AFTER = re.compile(r"(?i)after\s+(?P<duration>.+)")
_TIMING_START = re.compile(r"(?i)\s*(?:day|after)(?:\b|\d)")
_FALLBACK = re.compile(r"\|\|\s*template\b", re.IGNORECASE)
_HEADER_TYPES: tuple[MediaType, ...] = ("image", "video", "document")


class LineError(ValueError):
    """One line of chat input is malformed; the message names what is wrong in it."""


@dataclass(frozen=True)
class Word:
    """A word of a line; ``start``/``end`` index the line, so the raw rest can be kept."""

    text: str
    quoted: bool
    start: int
    end: int


def split_words(line: str, limit: int | None = None) -> list[Word]:
    """Split on whitespace; a word opened by a quote runs to its closing quote.

    A quote only closes when whitespace or the end follows it, and only opens a word, so
    apostrophes inside words (``Don't``, ``O'Brien``) need no escaping. With ``limit``, the
    line after that many words is left alone: it may be message text, quotes and all.
    """
    words: list[Word] = []
    i, size = 0, len(line)
    while i < size and (limit is None or len(words) < limit):
        if line[i].isspace():
            i += 1
            continue
        closers = _CLOSERS.get(line[i])
        if closers is None:
            end = i
            while end < size and not line[end].isspace():
                end += 1
            words.append(Word(line[i:end], False, i, end))
            i = end
            continue
        close = _closing_quote(line, i, closers)
        words.append(Word(line[i + 1 : close], True, i, close + 1))
        i = close + 1
    return words


def _closing_quote(line: str, opened: int, closers: str) -> int:
    index = opened + 1
    while index < len(line):
        if line[index] in closers and (index + 1 == len(line) or line[index + 1].isspace()):
            return index
        index += 1
    raise LineError(f"unbalanced quotes: {line[opened : opened + 40]!r} is never closed")


def parse_step_line(line: str) -> StepSpec:
    """``Day 3 at 10:00: image https://x/tip.jpg | A tip`` → the StepSpec it stands for."""
    timing_text, message = _split_timing(line.strip())
    timing = _parse_timing(timing_text)
    message = message.strip()
    if not message:
        raise LineError("the message after ':' is empty")
    fallback: TemplateRef | None = None
    found = _FALLBACK.search(message)
    if found is not None:
        fallback_text = message[found.end() :]
        message = message[: found.start()].strip()
        if not message:
            raise LineError("the message before '|| template' is empty")
        if "||" in fallback_text:
            raise LineError("a step has at most one fallback template ('|| template ...')")
        fallback = _parse_template(fallback_text, what="fallback template")
    return _parse_message(timing, message, fallback)


def _split_timing(line: str) -> tuple[str, str]:
    day_at = _DAY_AT_PREFIX.fullmatch(line)
    if day_at is not None:
        return day_at[1], day_at[2]
    timing, colon, message = line.partition(":")
    if not _TIMING_START.match(timing):
        raise LineError(EXPECTED_TIMING)
    if not colon:
        raise LineError("missing ':' between the timing and the message, as in 'Day 3: Hello'")
    return timing.strip(), message


def _parse_timing(text: str) -> Timing:
    day = _DAY.fullmatch(text)
    if day is not None:
        number = _day_number(day["n"])
        at = day["at"]
        if at is None:
            return Timing(day=number)
        try:
            return Timing(day=number, at=parse_hhmm(at))
        except ValueError:
            raise LineError(f"{at!r} is not a time of day; expected HH:MM (00:00-23:59)") from None
    after = _AFTER.fullmatch(text)
    if after is not None:
        try:
            return Timing(after=parse_duration(after["duration"]))
        except ValueError as err:
            raise LineError(f"'after {after['duration'].strip()}': {err}") from err
    raise LineError(f"{EXPECTED_TIMING}, got {text!r}")


def _day_number(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise LineError(f"{text!r} is not a day number; days are Day 1, Day 2, ...")
    number = int(text)
    if number < 1:
        raise LineError(f"there is no Day {number}; Day 1 is the enrollment day")
    if number > MAX_DAYS:
        raise LineError(f"'Day {number}' is too far away; the last day is Day {MAX_DAYS}")
    return number


def _parse_message(timing: Timing, message: str, fallback: TemplateRef | None) -> StepSpec:
    keyword, *others = message.split(maxsplit=1)
    rest = others[0] if others else ""
    media_type = _media_type(keyword)
    if media_type is not None and _means_media(keyword, rest):
        url, caption = _parse_media(media_type, rest)
        return StepSpec(
            timing,
            "media",
            body=caption,
            media_url=url,
            media_type=media_type,
            fallback=fallback,
        )
    if keyword == "template":
        if fallback is not None:
            raise LineError("a template step needs no fallback; drop the '|| template ...' part")
        return StepSpec(timing, "template", template=_parse_template(rest, what="template"))
    if len(message) > TEXT_LIMIT:
        raise LineError(f"the text is {len(message)} characters; WhatsApp allows {TEXT_LIMIT}")
    return StepSpec(timing, "text", body=message, fallback=fallback)


def _media_type(word: str) -> MediaType | None:
    return next((kind for kind in MEDIA_TYPES if kind == word.lower()), None)


def _means_media(keyword: str, rest: str) -> bool:
    """Lowercase ``image`` always starts a media step; ``Image`` only when a URL follows.

    A text that merely begins with the word ("Video calls are open today!") stays a text.
    """
    if keyword.islower():
        return True
    first = rest.split(maxsplit=1)[0] if rest.strip() else ""
    return "://" in first or first.lower().startswith("www.")


def _parse_media(media_type: MediaType, rest: str) -> tuple[str, str]:
    url_part, _, caption = rest.partition("|")
    url, caption = url_part.strip(), caption.strip()
    if not url:
        raise LineError(
            f"the {media_type} step has no URL; write '{media_type} https://... | caption'"
        )
    if len(url.split()) > 1:
        raise LineError(
            f"expected one URL after '{media_type}', got {url!r}; put '|' before the caption"
        )
    _check_url(url, what=f"{media_type} URL")
    if media_type == "audio" and caption:
        raise LineError("WhatsApp audio messages have no caption; drop the '| ...' part")
    if len(caption) > CAPTION_LIMIT:
        raise LineError(
            f"the caption is {len(caption)} characters; WhatsApp allows {CAPTION_LIMIT}"
        )
    return url, caption


def _check_url(url: str, *, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise LineError(f"the {what} {url!r} is not an http:// or https:// link")


def _parse_template(text: str, *, what: str) -> TemplateRef:
    words = split_words(text)
    example = "'template welcome_week en {first_name|there}'"
    if not words:
        raise LineError(f"the {what} needs a name and a language, as in {example}")
    name = words[0].text
    if not _TEMPLATE_NAME.fullmatch(name):
        raise LineError(
            f"{name!r} is not a template name (lowercase letters, digits and '_'), as in {example}"
        )
    if len(words) < 2:
        raise LineError(f"the {what} {name!r} needs a language code after its name, e.g. 'en'")
    language = _parse_language(words[1].text)
    header: tuple[MediaType, str] | None = None
    params = words[2:]
    if params and _is_header(params[0]):
        header = _parse_header(params[0].text)
        params = params[1:]
    for word in params:
        if _is_header(word):
            raise LineError("'header=...' goes right after the template's language")
    for number, word in enumerate(params, start=1):
        if not word.text.strip():
            raise LineError(f"parameter {number} of the {what} {name!r} is empty")
    return TemplateRef(name, language, tuple(word.text for word in params), header)


def _parse_language(text: str) -> str:
    found = _LANGUAGE.fullmatch(text)
    if found is None:
        raise LineError(f"{text!r} is not a template language code (like en, en_US or pt_BR)")
    language = found["lang"].lower()
    return language if found["region"] is None else f"{language}_{found['region'].upper()}"


def _is_header(word: Word) -> bool:
    return not word.quoted and word.text.lower().startswith("header=")


def _parse_header(text: str) -> tuple[MediaType, str]:
    kind, colon, url = text[len("header=") :].partition(":")
    kind = kind.lower()
    if not colon or kind not in _HEADER_TYPES:
        raise LineError(f"expected 'header=image:<url>' (or video or document), got {text!r}")
    _check_url(url, what="header URL")
    return next(known for known in _HEADER_TYPES if known == kind), url
