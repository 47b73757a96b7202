"""Filling ``{first_name|there}``-style placeholders in a step's text for one contact.

The promise to leads is that nobody ever receives a message with a raw ``{...}`` in it,
whatever an admin typed and whatever a CSV held. The rules:

- ``{key}`` is a placeholder when ``key`` is a field name: ``name``, ``first_name``,
  ``phone``, ``company``, ``email`` or a custom field. Keys are compared normalised (outer
  spaces stripped, lower case, inner spaces as ``_``), so ``{First Name}`` is
  ``{first_name}`` and a CSV column "Plan Type" is ``{plan_type}``.
- ``{key|fallback}`` renders the fallback (outer spaces stripped; it may be empty) when the
  contact has no value for ``key``.
- ``{first_name}`` without its own value is the first word of the name; ``{name}`` without
  its own value is the first name. With no value and no fallback these two render as
  ``there`` ("Hi there!"); any other field renders as nothing.
- ``{{`` and ``}}`` are a literal ``{`` and ``}``.
- Braces that would still enclose text after all this (``{{code}}``, ``{:-)}``, a ``{``
  typed in one field and a ``}`` in another) are dropped pairwise and the text between them
  kept, so a brace that survives never opens a ``{...}``. :func:`check_text` tells an admin
  about every such case when the step is defined.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "ContactFields",
    "check_text",
    "field_key",
    "render",
    "sample_contact",
    "tokens_in",
]

NAME_PLACEHOLDER_DEFAULT = "there"
STANDARD_FIELDS = ("name", "first_name", "phone", "company", "email")

#: ``{{``, ``}}``, a braced run without braces inside, or a lone brace
_PIECE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
#: what a normalised key may be made of
_KEY = re.compile(r"[\w.\-]+")
_NAME_LIKE = frozenset({"name", "first_name"})


def field_key(text: str) -> str:
    """``" Plan Type "`` → ``"plan_type"``: the one spelling placeholders and columns share."""
    return "_".join(text.lower().split())


@dataclass(frozen=True)
class ContactFields:
    """What a message can say about its recipient; custom keys are normalised on creation."""

    name: str | None = None
    first_name: str | None = None
    phone: str | None = None
    company: str | None = None
    email: str | None = None
    custom: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        custom = {
            field_key(str(key)): str(value)
            for key, value in self.custom.items()
            if value is not None
        }
        object.__setattr__(self, "custom", custom)


def render(text: str, contact: ContactFields) -> str:
    """``text`` with every placeholder filled for ``contact``, by the module's rules."""
    if "{" not in text and "}" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        piece = match.group(0)
        if piece == "{{":
            return "{"
        if piece == "}}":
            return "}"
        body = match.group(1)
        if body is None:  # a lone brace
            return piece
        raw_key, bar, fallback = body.partition("|")
        key = field_key(raw_key)
        if not _KEY.fullmatch(key):
            return piece  # not a placeholder: its braces go in _drop_brace_pairs
        value = _value(key, contact)
        if value:
            return value
        if bar:
            return fallback.strip()
        return NAME_PLACEHOLDER_DEFAULT if key in _NAME_LIKE else ""

    return _drop_brace_pairs(_PIECE.sub(substitute, text))


def tokens_in(text: str) -> list[str]:
    """The normalised field keys ``text`` uses, each once, in order of first use."""
    keys: dict[str, None] = {}
    for match in _PIECE.finditer(text):
        body = match.group(1)
        if body is not None:
            key = field_key(body.partition("|")[0])
            if _KEY.fullmatch(key):
                keys.setdefault(key)
    return list(keys)


def check_text(text: str) -> list[str]:
    """What is wrong with a step's text, one line per problem; empty when all is well.

    Each problem names its 1-based column, so a bad step line can be refused with a pointer
    to the mistake instead of sending a message that lost part of its text.
    """
    problems: list[str] = []
    open_escapes: list[int] = []
    for match in _PIECE.finditer(text):
        piece, column = match.group(0), match.start() + 1
        body = match.group(1)
        if piece == "{{":
            open_escapes.append(column)
        elif piece == "}}":
            if open_escapes:
                problems.append(
                    f"'{{{{' at column {open_escapes.pop()} and '}}}}' at column {column} "
                    "would show text in braces, which is never sent; write {name} for a field"
                )
        elif piece == "{":
            problems.append(f"unclosed '{{' at column {column}")
        elif piece == "}":
            problems.append(f"unmatched '}}' at column {column}")
        elif body is not None:
            key = field_key(body.partition("|")[0])
            if not key:
                problems.append(f"empty placeholder {piece!r} at column {column}")
            elif not _KEY.fullmatch(key):
                problems.append(
                    f"{piece!r} at column {column} is not a field name "
                    "(letters, digits, spaces, '_', '-' and '.')"
                )
    return problems


def sample_contact() -> ContactFields:
    """A made-up contact for previews, with every standard field set."""
    return ContactFields(
        name="Alex Sample",
        first_name="Alex",
        phone="+15550100123",
        company="Example Ltd",
        email="alex@example.com",
    )


def _value(key: str, contact: ContactFields) -> str:
    getter = _STANDARD_GETTERS.get(key)
    value = getter(contact) if getter is not None else ""
    if value:
        return value
    return _clean(contact.custom.get(key))


def _clean(value: str | None) -> str:
    return value.strip() if value else ""


def _first_name(contact: ContactFields) -> str:
    own = _clean(contact.first_name)
    if own:
        return own
    words = _clean(contact.name).split(maxsplit=1)
    return words[0] if words else ""


def _name(contact: ContactFields) -> str:
    return _clean(contact.name) or _clean(contact.first_name)


_STANDARD_GETTERS: dict[str, Callable[[ContactFields], str]] = {
    "name": _name,
    "first_name": _first_name,
    "phone": lambda contact: _clean(contact.phone),
    "company": lambda contact: _clean(contact.company),
    "email": lambda contact: _clean(contact.email),
}


def _drop_brace_pairs(text: str) -> str:
    """Remove each ``{`` with the first ``}`` that closes it, keeping what lies between.

    A ``}`` is only kept when no ``{`` before it is still open, so every brace left over
    stands alone: no ``{`` is followed, anywhere later, by a ``}``.
    """
    first_open = text.find("{")
    if first_open < 0 or text.rfind("}") < first_open:
        return text
    chars = list(text)
    opened: list[int] = []
    for index in range(first_open, len(chars)):
        char = chars[index]
        if char == "{":
            opened.append(index)
        elif char == "}" and opened:
            chars[opened.pop()] = ""
            chars[index] = ""
    return "".join(chars)
