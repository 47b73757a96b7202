"""Phone numbers as the engine stores them: validated E.164 with the ``+``.

Every way in (chat, CSV, REST, webhook) goes through :func:`normalize_phone`, so one number
written five ways is one contact. A CSV import calls it once per row, up to a million times,
so the common case does only what ``phonenumbers`` itself must do: one ``parse`` and one
validity check, with our own cheap character screening in front of it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, ValidationResult

__all__ = ["InvalidPhone", "mask_phone", "normalize_phone", "region_of"]

#: what people put between digits: spaces (also no-break), dashes, dots, parentheses, slashes
_SEPARATORS = str.maketrans("", "", " \t\u00a0\u202f-\u2010\u2011\u2012\u2013.()/")
#: each region's country code (``DE`` → 49), to skip the region search when it matches
_COUNTRY_CODE_OF_REGION: dict[str, int] = {
    region: code
    for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
    for region in regions
}
_NON_GEOGRAPHIC = "001"

_PARSE_REASONS = {
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
}


class InvalidPhone(ValueError):
    """A number that cannot be messaged; the message is the reason, fit to show a user."""


def normalize_phone(raw: str, default_region: str | None) -> str:
    """``"0170 1234567"`` with region ``DE`` → ``"+491701234567"``; raises :class:`InvalidPhone`.

    Letters are refused rather than read as a keypad word: in a lead list they are a typo or
    an extension, and a wrong number is worse than a rejected one.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhone("empty phone number")
    compact = text.translate(_SEPARATORS)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    has_plus = compact.startswith("+")
    digits = compact[1:] if has_plus else compact
    if not digits.isdecimal():
        raise InvalidPhone(_character_problem(text))
    if not digits.isascii():
        digits = "".join(str(unicodedata.decimal(char)) for char in digits)
    if has_plus:
        number = _parse("+" + digits, None)
    elif default_region is None:
        raise InvalidPhone("no country code and no default region set")
    else:
        number = _parse(digits, default_region.upper())
    if not _is_valid(number, default_region):
        raise InvalidPhone(_invalid_reason(number))
    return f"+{number.country_code}{phonenumbers.national_significant_number(number)}"


@lru_cache(maxsize=4096)
def region_of(e164: str) -> str | None:
    """The ISO region of a stored number (``"+491701234567"`` → ``"DE"``), None if it has none.

    Non-geographic numbers (``+800``, ``+882`` …) have no region.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    if region in (None, "ZZ", _NON_GEOGRAPHIC):
        return None
    return region


def mask_phone(e164: str) -> str:
    """``"+491701234567"`` → ``"+49******4567"``: enough to tell numbers apart in a log.

    Whatever is passed (raw user input too) comes out masked; only the country code and the
    last few digits survive.
    """
    digits = e164[1:]
    if not e164.startswith("+") or not digits.isdecimal() or len(digits) < 4:
        if len(e164) <= 2:
            return "*" * len(e164)
        return "*" * (len(e164) - 2) + e164[-2:]
    code_length = _country_code_length(digits)
    national = digits[code_length:]
    keep = 4 if len(national) >= 8 else 2 if len(national) >= 5 else 0
    shown = national[len(national) - keep :]
    return f"+{digits[:code_length]}{'*' * (len(national) - keep)}{shown}"


def _parse(text: str, region: str | None) -> PhoneNumber:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException as err:
        if err.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if region is None:
                raise InvalidPhone("unknown country code") from None
            raise InvalidPhone(
                f"no country code, and the default region {region} is not a known region"
            ) from None
        raise InvalidPhone(_PARSE_REASONS.get(err.error_type, "not a phone number")) from None


def _is_valid(number: PhoneNumber, default_region: str | None) -> bool:
    """Check against the default region first: it is one pattern set instead of every
    region sharing the country code (+1 has two dozen)."""
    if default_region is not None:
        region = default_region.upper()
        if _COUNTRY_CODE_OF_REGION.get(region) == number.country_code and (
            phonenumbers.is_valid_number_for_region(number, region)
        ):
            return True
    return bool(phonenumbers.is_valid_number(number))


def _invalid_reason(number: PhoneNumber) -> str:
    code = number.country_code or 0
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if not regions:
        return f"unknown country code +{code}"
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        return f"too short for +{code}"
    if reason == ValidationResult.TOO_LONG:
        return f"too long for +{code}"
    if reason == ValidationResult.INVALID_LENGTH:
        return f"wrong number of digits for +{code}"
    if len(regions) == 1 and regions[0] != _NON_GEOGRAPHIC:
        return f"not a valid number for region {regions[0]}"
    return f"not a valid +{code} number"


def _character_problem(text: str) -> str:
    if any(char.isalpha() for char in text):
        return "contains letters"
    body = text.lstrip()
    if body.count("+") > 1 or "+" in body[1:]:
        return "'+' may only start the number"
    for char in text.translate(_SEPARATORS):
        if not char.isdecimal() and char != "+":
            return f"contains {char!r}"
    return "not a phone number"


def _country_code_length(digits: str) -> int:
    for length in (1, 2, 3):
        if int(digits[:length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return length
    return min(3, len(digits) - 1)
