"""The webhook signature: a fixed vector, the raw-bytes rule, and every way a header is bad."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from bot.whatsapp.signature import sign, verify

SECRET = "test-app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
#: HMAC-SHA256(key=SECRET, msg=BODY); written out so a change of algorithm cannot go unnoticed
VECTOR_HEX = "c84a394cc475525991e78ff16e430b02e47f953877d2af0ade26956ce6f384dc"
WEBHOOKS = Path(__file__).parent.parent / "data" / "webhooks"


def test_sign_matches_the_fixed_vector() -> None:
    computed = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()

    assert computed == VECTOR_HEX
    assert sign(BODY, SECRET) == "sha256=" + VECTOR_HEX


def test_verify_accepts_the_fixed_vector() -> None:
    assert verify(BODY, "sha256=" + VECTOR_HEX, SECRET)


def test_verify_accepts_uppercase_hex() -> None:
    assert verify(BODY, "sha256=" + VECTOR_HEX.upper(), SECRET)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "missing header"),
        ("", "empty header"),
        ("sha256=", "prefix only"),
        (VECTOR_HEX, "no prefix"),
        ("sha1=" + VECTOR_HEX, "wrong algorithm prefix"),
        ("SHA256=" + VECTOR_HEX, "prefix in the wrong case"),
        ("sha256=" + VECTOR_HEX[:-1], "one digit short"),
        ("sha256=" + VECTOR_HEX + "0", "one digit long"),
        ("sha256=" + VECTOR_HEX[:-1] + "g", "not hex"),
        ("sha256=" + VECTOR_HEX + " ", "trailing space"),
        ("sha256= " + VECTOR_HEX[:-1], "space inside"),
        ("sha256=" + "0" * 64, "well formed but wrong"),
        (sign(BODY, "another-secret"), "signed with another secret"),
    ],
)
def test_verify_refuses_bad_headers(header: str | None, why: str) -> None:
    assert not verify(BODY, header, SECRET), why


def test_verify_refuses_a_tampered_body() -> None:
    header = sign(BODY, SECRET)
    tampered = BODY.replace(b"[]", b"[{}]")

    assert verify(BODY, header, SECRET)
    assert not verify(tampered, header, SECRET)


def test_verify_refuses_an_empty_secret() -> None:
    assert not verify(BODY, sign(BODY, ""), "")


def test_only_the_bytes_as_received_verify() -> None:
    """Meta escapes non-ASCII as \\uXXXX; re-encoding the parsed JSON gives other bytes."""
    raw = (
        b'{"profile":{"name":"Jos\\u00e9 \\u00c1lvarez"},'
        b'"text":{"body":"Ol\\u00e1 \\ud83d\\udc4b"}}'
    )
    header = sign(raw, SECRET)
    reserialised = json.dumps(json.loads(raw), ensure_ascii=False, separators=(",", ":")).encode()

    assert json.loads(reserialised) == json.loads(raw)
    assert reserialised != raw
    assert verify(raw, header, SECRET)
    assert not verify(reserialised, header, SECRET)


def test_a_recorded_payload_verifies_only_as_stored() -> None:
    raw = (WEBHOOKS / "reaction.json").read_bytes()
    header = sign(raw, SECRET)

    assert b"\\ud83d\\udc4d" in raw
    assert verify(raw, header, SECRET)
    assert not verify(json.dumps(json.loads(raw), ensure_ascii=False).encode(), header, SECRET)
    assert not verify(json.dumps(json.loads(raw)).encode(), header, SECRET)
