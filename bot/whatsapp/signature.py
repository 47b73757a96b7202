"""The `X-Hub-Signature-256` check on webhook POSTs.

Meta signs the raw request body, byte for byte, with the app secret. The body must be checked
exactly as received: parsing and re-serialising the JSON changes the bytes (Meta escapes
non-ASCII characters as `\\uXXXX`), so a re-encoded body never matches.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_HEX_LENGTH = hashlib.sha256().digest_size * 2


def sign(body: bytes, app_secret: str) -> str:
    """The header value Meta would send for `body`; tests and fake servers sign with it."""
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def verify(body: bytes, header: str | None, app_secret: str) -> bool:
    """True only for a well-formed header whose digest matches, compared in constant time.

    A malformed header is refused before any comparison so that a short or non-hex value can
    never be mistaken for a match; the length and alphabet checks reveal nothing secret.
    """
    if not header or not app_secret or not header.startswith(PREFIX):
        return False
    received = header[len(PREFIX) :]
    if len(received) != _HEX_LENGTH or not _HEX_DIGITS.issuperset(received):
        return False
    expected = sign(body, app_secret)[len(PREFIX) :]
    return hmac.compare_digest(expected, received.lower())
