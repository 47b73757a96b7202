"""Phone numbers: every spelling of one number is one E.164 string, and refusals say why."""

from __future__ import annotations

import pytest

from scheduler.phones import InvalidPhone, mask_phone, normalize_phone, region_of

VALID_CASES = [
    pytest.param("+491701234567", None, "+491701234567", id="e164"),
    pytest.param("+49 170 1234567", None, "+491701234567", id="spaces"),
    pytest.param("+49-170-123-4567", None, "+491701234567", id="dashes"),
    pytest.param("+49.170.123.4567", None, "+491701234567", id="dots"),
    pytest.param("+49 (170) 1234567", None, "+491701234567", id="parentheses"),
    pytest.param("+49 (0)170 1234567", None, "+491701234567", id="bracketed-trunk-zero"),
    pytest.param("0049 170 1234567", None, "+491701234567", id="leading-00"),
    pytest.param("  +49 170 1234567\t", None, "+491701234567", id="surrounding-whitespace"),
    pytest.param("0170 1234567", "DE", "+491701234567", id="national-with-default-region"),
    pytest.param("0170 1234567", "de", "+491701234567", id="region-lower-case"),
    pytest.param("030/1234567", "DE", "+49301234567", id="slash"),
    pytest.param("(212) 456-7890", "US", "+12124567890", id="us-national"),
    pytest.param("011 49 170 1234567", "US", "+491701234567", id="us-international-prefix"),
    pytest.param("+1 204 234 5678", "US", "+12042345678", id="canada-with-us-region"),
    pytest.param("+49 170 1234567", "US", "+491701234567", id="country-code-beats-region"),
    pytest.param("+81 90-1234-5678", None, "+819012345678", id="japan"),
    pytest.param("+39 06 1234 5678", None, "+390612345678", id="italy-leading-zero-kept"),
    pytest.param("٠١٧٠ ١٢٣٤٥٦٧", "DE", "+491701234567", id="arabic-indic-digits"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), VALID_CASES)
def test_normalize_phone(raw: str, region: str | None, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


INVALID_CASES = [
    pytest.param("", "DE", "empty phone number", id="empty"),
    pytest.param("   ", "DE", "empty phone number", id="blank"),
    pytest.param("0170 1234567", None, "no country code and no default region set", id="no-cc"),
    pytest.param("+49 170", None, "too short for +49", id="too-short"),
    pytest.param("+49 1701234567890123", None, "too long for +49", id="too-long"),
    pytest.param("+49 1", None, "too short", id="one-digit"),
    pytest.param("+1 555 123 4567", None, "not a valid +1 number", id="invalid-nanp"),
    pytest.param("+49 110 1234567", None, "not a valid number for region DE", id="invalid-de"),
    pytest.param("+999 1234567", None, "unknown country code", id="unknown-cc"),
    pytest.param("call me maybe", "DE", "contains letters", id="words"),
    pytest.param("+1-800-FLOWERS", None, "contains letters", id="vanity"),
    pytest.param("+49 170 1234567 ext 12", None, "contains letters", id="extension"),
    pytest.param("+49 170#1234567", None, "contains '#'", id="hash"),
    pytest.param("49+1701234567", None, "'+' may only start the number", id="inner-plus"),
    pytest.param("+", None, "not a phone number", id="bare-plus"),
    pytest.param(
        "0170 1234567",
        "XX",
        "no country code, and the default region XX is not a known region",
        id="bad-region",
    ),
]


@pytest.mark.parametrize(("raw", "region", "reason"), INVALID_CASES)
def test_normalize_phone_rejects_with_reason(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(raw, region)
    assert str(caught.value) == reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        pytest.param("+491701234567", "DE", id="germany"),
        pytest.param("+12124567890", "US", id="us"),
        pytest.param("+12042345678", "CA", id="canada-shares-plus-1"),
        pytest.param("+819012345678", "JP", id="japan"),
        pytest.param("+80012345678", None, id="non-geographic"),
        pytest.param("+9991234567", None, id="unknown-cc"),
        pytest.param("garbage", None, id="not-a-number"),
    ],
)
def test_region_of(e164: str, region: str | None) -> None:
    assert region_of(e164) == region


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        pytest.param("+491701234567", "+49******4567", id="germany"),
        pytest.param("+12124567890", "+1******7890", id="us"),
        pytest.param("+35312345", "+353***45", id="short-national-keeps-two"),
        pytest.param("+4912", "+49**", id="tiny-keeps-nothing"),
        pytest.param("0170 1234567", "**********67", id="raw-input"),
        pytest.param("ab", "**", id="two-chars"),
        pytest.param("", "", id="empty"),
    ],
)
def test_mask_phone(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


def test_normalized_numbers_are_stable() -> None:
    for case in VALID_CASES:
        expected = case.values[2]
        assert isinstance(expected, str)
        assert normalize_phone(expected, None) == expected
