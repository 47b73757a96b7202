"""Placeholders: every rule as a table, and a property that no ``{...}`` ever reaches a lead."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.personalize import (
    ContactFields,
    check_text,
    field_key,
    render,
    sample_contact,
    tokens_in,
)

PLACEHOLDER = re.compile(r"\{[^{}]*\}")
#: how a step text reads: escapes, braced runs, lone braces
GRAMMAR = re.compile(r"\{\{|\}\}|\{[^{}]*\}|[{}]")

MARIA = ContactFields(
    name="Maria Lopez",
    phone="+491701234567",
    company="Acme GmbH",
    email="maria@example.com",
    custom={"Plan Type": "Pro", "city": "Köln", "empty": "  "},
)
NOBODY = ContactFields(phone="+491701234567")

RENDER_CASES = [
    pytest.param("Welcome aboard.", MARIA, "Welcome aboard.", id="no-placeholders"),
    pytest.param("Hi {name}!", MARIA, "Hi Maria Lopez!", id="name"),
    pytest.param("Hi {first_name}!", MARIA, "Hi Maria!", id="first-name-from-name"),
    pytest.param(
        "Hi {first_name}!",
        ContactFields(name="Maria Lopez", first_name="Mia"),
        "Hi Mia!",
        id="first-name-own-value-wins",
    ),
    pytest.param(
        "Hi {name}!", ContactFields(first_name="Mia"), "Hi Mia!", id="name-from-first-name"
    ),
    pytest.param("Call {phone}", MARIA, "Call +491701234567", id="phone"),
    pytest.param("At {company}", MARIA, "At Acme GmbH", id="company"),
    pytest.param("Mail {email}", MARIA, "Mail maria@example.com", id="email"),
    pytest.param("Plan: {plan_type}", MARIA, "Plan: Pro", id="custom-field-normalised-key"),
    pytest.param("Plan: {Plan Type}", MARIA, "Plan: Pro", id="custom-token-normalised-too"),
    pytest.param("From {CITY}", MARIA, "From Köln", id="custom-key-case-insensitive"),
    pytest.param("Hi { first_name }", MARIA, "Hi Maria", id="spaces-inside-braces"),
    pytest.param("Hi {FIRST_NAME|there}", MARIA, "Hi Maria", id="value-beats-fallback"),
    pytest.param("Hi {first_name|friend}!", NOBODY, "Hi friend!", id="fallback"),
    pytest.param("Hi {name|dear reader}!", NOBODY, "Hi dear reader!", id="fallback-with-space"),
    pytest.param("Hi {name | friend }!", NOBODY, "Hi friend!", id="fallback-trimmed"),
    pytest.param("Hi {first_name|}!", NOBODY, "Hi !", id="empty-fallback-for-name"),
    pytest.param("({company|})", NOBODY, "()", id="empty-fallback"),
    pytest.param("Hi {name}!", NOBODY, "Hi there!", id="name-without-value-is-there"),
    pytest.param("Hi {first_name}!", NOBODY, "Hi there!", id="first-name-without-value-is-there"),
    pytest.param(
        "Hi {first_name}!", ContactFields(name="   "), "Hi there!", id="blank-name-is-no-value"
    ),
    pytest.param("At {company}.", NOBODY, "At .", id="other-field-without-value-is-empty"),
    pytest.param("[{empty}]", MARIA, "[]", id="blank-custom-value-is-empty"),
    pytest.param("[{empty|none}]", MARIA, "[none]", id="blank-custom-value-uses-fallback"),
    pytest.param("[{unknown}]", MARIA, "[]", id="unknown-field-is-empty"),
    pytest.param("[{unknown|n/a}]", MARIA, "[n/a]", id="unknown-field-uses-fallback"),
    pytest.param("{a|b|c}", MARIA, "b|c", id="fallback-keeps-later-bars"),
    pytest.param("{{ literal", MARIA, "{ literal", id="double-open-is-a-brace"),
    pytest.param("literal }}", MARIA, "literal }", id="double-close-is-a-brace"),
    pytest.param("{{name}}", MARIA, "name", id="escaped-pair-loses-braces"),
    pytest.param("Hi {name", MARIA, "Hi {name", id="unclosed-brace-kept"),
    pytest.param("a } b", MARIA, "a } b", id="lone-close-kept"),
    pytest.param("x{}y", MARIA, "xy", id="empty-braces-dropped"),
    pytest.param("smile {:-)}", MARIA, "smile :-)", id="not-a-key-loses-braces"),
    pytest.param("{ x {name}", MARIA, "{ x Maria Lopez", id="lone-open-before-token"),
    pytest.param("{{{name}}}", MARIA, "Maria Lopez", id="triple-braces"),
    pytest.param(
        "{company} & {city}",
        ContactFields(company="{Acme", custom={"city": "Paris}"}),
        "Acme & Paris",
        id="braces-from-two-values-dropped",
    ),
    pytest.param(
        "Hi {name}", ContactFields(name="{first_name}"), "Hi first_name", id="value-not-re-rendered"
    ),
]


@pytest.mark.parametrize(("text", "contact", "expected"), RENDER_CASES)
def test_render(text: str, contact: ContactFields, expected: str) -> None:
    assert render(text, contact) == expected


CHECK_CASES = [
    pytest.param("Hi {first_name|there}! {Plan Type}", [], id="clean"),
    pytest.param("{{ and }", ["unmatched '}' at column 8"], id="escape-alone-is-fine"),
    pytest.param("Hi {name", ["unclosed '{' at column 4"], id="unclosed"),
    pytest.param("Hi name}", ["unmatched '}' at column 8"], id="unmatched-close"),
    pytest.param("Hi {}", ["empty placeholder '{}' at column 4"], id="empty"),
    pytest.param("Hi {|x}", ["empty placeholder '{|x}' at column 4"], id="fallback-without-key"),
    pytest.param(
        "Hi {a,b}",
        ["'{a,b}' at column 4 is not a field name (letters, digits, spaces, '_', '-' and '.')"],
        id="bad-key",
    ),
    pytest.param(
        "Hi {{name}}",
        [
            "'{{' at column 4 and '}}' at column 10 would show text in braces, which is never "
            "sent; write {name} for a field"
        ],
        id="mustache-style",
    ),
    pytest.param(
        "{a {b}",
        ["unclosed '{' at column 1"],
        id="unclosed-before-token",
    ),
]


@pytest.mark.parametrize(("text", "problems"), CHECK_CASES)
def test_check_text(text: str, problems: list[str]) -> None:
    assert check_text(text) == problems


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        pytest.param("Hello", [], id="none"),
        pytest.param(
            "{Name} {first_name|x} {name} {Plan Type}",
            ["name", "first_name", "plan_type"],
            id="normalised-unique-in-order",
        ),
        pytest.param("{{name}} {} {a,b} {x", [], id="not-tokens"),
    ],
)
def test_tokens_in(text: str, tokens: list[str]) -> None:
    assert tokens_in(text) == tokens


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        pytest.param("Plan Type", "plan_type", id="space"),
        pytest.param("  EMAIL ", "email", id="trim-and-lower"),
        pytest.param("First   Name", "first_name", id="space-run"),
        pytest.param("lead-source", "lead-source", id="dash-kept"),
    ],
)
def test_field_key(raw: str, key: str) -> None:
    assert field_key(raw) == key


def test_custom_keys_are_normalised_once_on_creation() -> None:
    contact = ContactFields(custom={" Plan Type ": "Pro"})
    assert contact.custom == {"plan_type": "Pro"}


def test_sample_contact_fills_every_standard_token() -> None:
    text = "{name}|{first_name}|{phone}|{company}|{email}"
    rendered = render(text, sample_contact()).split("|")
    assert rendered[:2] == ["Alex Sample", "Alex"]
    assert all(rendered)


BRACEY = st.text(alphabet=st.sampled_from("{}|ab _N\n"), max_size=40)
TOKENISH = st.lists(
    st.sampled_from(["{", "}", "{{", "}}", "{name}", "{first_name|", "|x}", "{}", "a", " "]),
    max_size=15,
).map("".join)
VALUES = st.none() | st.text(max_size=10) | BRACEY


@given(
    text=st.text() | BRACEY | TOKENISH,
    name=VALUES,
    company=VALUES,
    custom=st.dictionaries(st.text(max_size=5) | BRACEY, st.text(max_size=10) | BRACEY),
)
def test_a_lead_never_receives_a_placeholder(
    text: str, name: str | None, company: str | None, custom: dict[str, str]
) -> None:
    contact = ContactFields(name=name, company=company, custom=custom)
    assert PLACEHOLDER.search(render(text, contact)) is None


@given(text=st.text() | BRACEY | TOKENISH)
def test_text_check_text_accepts_keeps_every_escaped_brace(text: str) -> None:
    """Braces are only dropped where check_text complains: the admin is always told."""
    if check_text(text):
        return
    escapes = [piece for piece in GRAMMAR.findall(text) if piece in ("{{", "}}")]
    rendered = render(text, MARIA)
    assert rendered.count("{") == escapes.count("{{")
    assert rendered.count("}") == escapes.count("}}")


def test_custom_values_from_json_are_text_and_nulls_are_absent() -> None:
    raw: dict[str, Any] = {"Seats": 3, "note": None}
    contact = ContactFields(custom=raw)
    assert render("{seats} seats ({note|no note})", contact) == "3 seats (no note)"
