"""The webhook parser against recorded payloads, batches, odd shapes and plain garbage."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.whatsapp.events import (
    ErrorInfo,
    Event,
    FieldError,
    InboundMessage,
    Media,
    PreferenceUpdate,
    Sender,
    StatusUpdate,
    TemplateStatusUpdate,
    UnknownEvent,
)
from bot.whatsapp.webhook import is_whatsapp_payload, parse

WEBHOOKS = Path(__file__).parent.parent / "data" / "webhooks"
EVENT_TYPES = (
    InboundMessage,
    StatusUpdate,
    PreferenceUpdate,
    TemplateStatusUpdate,
    FieldError,
    UnknownEvent,
)

PNID = "109876543210987"
ANA = Sender("+447700900123", "GB.27364519283746501928", "Ana Souza", PNID)
JOSE = Sender("+16505550123", "US.13579246801357924680", "José Álvarez", PNID)
ADMIN = Sender("+447700900999", "GB.99887766554433221100", "Dripbot Admin", PNID)
LENA = Sender(None, "GB.55512345678901234567", "Lena", PNID)

W = {
    "text01": "wamid.HBgMFQIAEhgUVEVYVDAxMDAwMDAwMDAwMDAwMDAA",
    "button01": "wamid.HBgMFQIAEhgUQlVUVE9OMDEwMDAwMDAwMDAwMDAA",
    "button02": "wamid.HBgMFQIAEhgUQlVUVE9OMDIwMDAwMDAwMDAwMDAA",
    "interactive01": "wamid.HBgMFQIAEhgUSU5URVJBQ1RJVkUwMTAwMDAwMDAA",
    "interactive02": "wamid.HBgMFQIAEhgUSU5URVJBQ1RJVkUwMjAwMDAwMDAA",
    "menu01": "wamid.HBgMFQIAEhgUTUVOVTAxMDAwMDAwMDAwMDAwMDAA",
    "menu02": "wamid.HBgMFQIAEhgUTUVOVTAyMDAwMDAwMDAwMDAwMDAA",
    "image01": "wamid.HBgMFQIAEhgUSU1BR0UwMTAwMDAwMDAwMDAwMDAA",
    "document01": "wamid.HBgMFQIAEhgURE9DVU1FTlQwMTAwMDAwMDAwMDAA",
    "audio01": "wamid.HBgMFQIAEhgUQVVESU8wMTAwMDAwMDAwMDAwMDAA",
    "sticker01": "wamid.HBgMFQIAEhgUU1RJQ0tFUjAxMDAwMDAwMDAwMDAA",
    "reaction01": "wamid.HBgMFQIAEhgUUkVBQ1RJT04wMTAwMDAwMDAwMDAA",
    "location01": "wamid.HBgMFQIAEhgUTE9DQVRJT04wMTAwMDAwMDAwMDAA",
    "contacts01": "wamid.HBgMFQIAEhgUQ09OVEFDVFMwMTAwMDAwMDAwMDAA",
    "system01": "wamid.HBgMFQIAEhgUU1lTVEVNMDEwMDAwMDAwMDAwMDAA",
    "unsupported01": "wamid.HBgMFQIAEhgUVU5TVVBQT1JURUQwMTAwMDAwMDAA",
    "bsuid01": "wamid.HBgMFQIAEhgUQlNVSUQwMTAwMDAwMDAwMDAwMDAA",
    "tpl_day3": "wamid.HBgMFQIAEhgUVFBMX0RBWTMwMDAwMDAwMDAwMDAA",
    "tpl_day5": "wamid.HBgMFQIAEhgUVFBMX0RBWTUwMDAwMDAwMDAwMDAA",
    "tpl_day7": "wamid.HBgMFQIAEhgUVFBMX0RBWTcwMDAwMDAwMDAwMDAA",
    "fail131050": "wamid.HBgMFQIAEhgURkFJTDEzMTA1MDAwMDAwMDAwMDAA",
    "fail131026": "wamid.HBgMFQIAEhgURkFJTDEzMTAyNjAwMDAwMDAwMDAA",
    "fail131047": "wamid.HBgMFQIAEhgURkFJTDEzMTA0NzAwMDAwMDAwMDAA",
    "fail131049": "wamid.HBgMFQIAEhgURkFJTDEzMTA0OTAwMDAwMDAwMDAA",
    "batch_m1": "wamid.HBgMFQIAEhgUQkFUQ0hfTTEwMDAwMDAwMDAwMDAA",
    "batch_m2": "wamid.HBgMFQIAEhgUQkFUQ0hfTTIwMDAwMDAwMDAwMDAA",
    "batch_m3": "wamid.HBgMFQIAEhgUQkFUQ0hfTTMwMDAwMDAwMDAwMDAA",
    "batch_s1": "wamid.HBgMFQIAEhgUQkFUQ0hfUzEwMDAwMDAwMDAwMDAA",
    "batch_s2": "wamid.HBgMFQIAEhgUQkFUQ0hfUzIwMDAwMDAwMDAwMDAA",
    "batch_s3": "wamid.HBgMFQIAEhgUQkFUQ0hfUzMwMDAwMDAwMDAwMDAA",
    "batch_s4": "wamid.HBgMFQIAEhgUQkFUQ0hfUzQwMDAwMDAwMDAwMDAA",
    "odd_m1": "wamid.HBgMFQIAEhgUT0REX00xMDAwMDAwMDAwMDAwMDAA",
    "odd_m2": "wamid.HBgMFQIAEhgUT0REX00yMDAwMDAwMDAwMDAwMDAA",
    "odd_s1": "wamid.HBgMFQIAEhgUT0REX1MxMDAwMDAwMDAwMDAwMDAA",
    "odd_s2": "wamid.HBgMFQIAEhgUT0REX1MyMDAwMDAwMDAwMDAwMDAA",
}

E131050 = ErrorInfo(
    131050,
    "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business.",
    "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business.",
    "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business.",
)
E131026 = ErrorInfo(
    131026, "Message undeliverable", "Message undeliverable", "Message Undeliverable."
)
E131047 = ErrorInfo(
    131047,
    "Re-engagement message",
    "Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer last "
    "replied to this number.",
)
E131049 = ErrorInfo(
    131049,
    "This message was not delivered to maintain healthy ecosystem engagement.",
    "This message was not delivered to maintain healthy ecosystem engagement.",
    "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))


def message(
    wamid: str,
    sender: Sender,
    timestamp: datetime,
    kind: str,
    *,
    text: str | None = None,
    payload: str | None = None,
    media: Media | None = None,
    context: str | None = None,
    errors: tuple[ErrorInfo, ...] = (),
) -> InboundMessage:
    return InboundMessage(
        wamid, sender, timestamp, kind, text, payload, media, context, errors, raw={}
    )


def status(
    wamid: str,
    state: str,
    timestamp: datetime,
    recipient: Sender,
    callback: str | None,
    errors: tuple[ErrorInfo, ...] = (),
) -> StatusUpdate:
    return StatusUpdate(
        wamid,
        state,
        timestamp,
        recipient.wa_id,
        recipient.user_id,
        callback,
        errors,
        PNID,
        raw={},
    )


RECORDED: list[tuple[str, list[Event]]] = [
    (
        "text",
        [message(W["text01"], ANA, at(9, 1), "text", text="Hi! Is the course still open?")],
    ),
    (
        "button_quick_reply",
        [
            message(
                W["button01"],
                ANA,
                at(9, 2),
                "button",
                text="Tell me more",
                payload="MORE_INFO",
                context=W["tpl_day3"],
            )
        ],
    ),
    (
        "button_stop_promotions",
        [
            message(
                W["button02"],
                JOSE,
                at(9, 3),
                "button",
                text="Stop promotions",
                payload="Stop promotions",
                context=W["tpl_day7"],
            )
        ],
    ),
    (
        "interactive_button_reply",
        [
            message(
                W["interactive01"],
                ANA,
                at(9, 4),
                "interactive",
                text="Yes, move it",
                payload="reschedule-yes",
                context=W["menu01"],
            )
        ],
    ),
    (
        "interactive_list_reply",
        [
            message(
                W["interactive02"],
                ANA,
                at(9, 5),
                "interactive",
                text="Pricing",
                payload="topic-pricing",
                context=W["menu02"],
            )
        ],
    ),
    (
        "image_caption",
        [
            message(
                W["image01"],
                ANA,
                at(9, 6),
                "image",
                text="Here is my receipt",
                media=Media(
                    id="1184467512039874",
                    mime_type="image/jpeg",
                    sha256="Jh+2ij6PzUv/J2y+grrtegr/ZMzRxkEPwc24Oyib4s0=",
                    filename=None,
                    caption="Here is my receipt",
                    url="https://lookaside.fbsbx.com/whatsapp_business/attachments/"
                    "?mid=1184467512039874&ext=1772442360&hash=ATtVq2bWuKqZ",
                ),
            )
        ],
    ),
    (
        "document_csv",
        [
            message(
                W["document01"],
                ADMIN,
                at(9, 7),
                "document",
                text="/enroll tips",
                media=Media(
                    id="2298145563712093",
                    mime_type="text/csv",
                    sha256="grwfwe/ZPx0wAbdfbdeFUNItPZ0RylL8gGUvdt3YFqc=",
                    filename="leads-march.csv",
                    caption="/enroll tips",
                    url="https://lookaside.fbsbx.com/whatsapp_business/attachments/"
                    "?mid=2298145563712093&ext=1772442420&hash=ATuG7mHkQx1c",
                ),
            )
        ],
    ),
    (
        "audio_voice",
        [
            message(
                W["audio01"],
                ANA,
                at(9, 8),
                "audio",
                media=Media(
                    id="3312098754120986",
                    mime_type="audio/ogg; codecs=opus",
                    sha256="m04pFf2ERdaopTyFkGPA0+bX3i+YY2dYgVFwOgDLSDI=",
                    filename=None,
                    caption=None,
                    url=None,
                ),
            )
        ],
    ),
    (
        "sticker",
        [
            message(
                W["sticker01"],
                ANA,
                at(9, 9),
                "sticker",
                media=Media(
                    id="4421987650124578",
                    mime_type="image/webp",
                    sha256="OmT4nhjUhCMIPNmj7eeOZeCYjTXkLxoOv85OMCFwSuc=",
                    filename=None,
                    caption=None,
                    url=None,
                ),
            )
        ],
    ),
    (
        "reaction",
        [message(W["reaction01"], JOSE, at(9, 10), "reaction", text="👍", context=W["tpl_day3"])],
    ),
    ("location", [message(W["location01"], ANA, at(9, 11), "location")]),
    ("contacts", [message(W["contacts01"], ANA, at(9, 12), "contacts")]),
    (
        "system_user_changed_number",
        [
            message(
                W["system01"],
                Sender("+447700900123", None, None, PNID),
                at(9, 13),
                "system",
                text="Ana Souza changed from 447700900123 to 447700900789",
                payload="user_changed_number",
            )
        ],
    ),
    (
        "unsupported",
        [
            message(
                W["unsupported01"],
                ANA,
                at(9, 14),
                "unsupported",
                errors=(
                    ErrorInfo(
                        131051,
                        "Message type unknown",
                        "Message type unknown",
                        "Message type is currently not supported.",
                    ),
                ),
            )
        ],
    ),
    ("bsuid_only_sender", [message(W["bsuid01"], LENA, at(9, 15), "text", text="stop")]),
    (
        "status_sent",
        [status(W["tpl_day3"], "sent", at(9, 16, 40), JOSE, "seq=tips;step=3;enr=1207")],
    ),
    (
        "status_delivered",
        [status(W["tpl_day3"], "delivered", at(9, 16, 45), JOSE, "seq=tips;step=3;enr=1207")],
    ),
    (
        "status_read",
        [status(W["tpl_day3"], "read", at(9, 20), JOSE, "seq=tips;step=3;enr=1207")],
    ),
    (
        "status_failed",
        [
            status(
                W["fail131050"],
                "failed",
                at(9, 21, 40),
                JOSE,
                "seq=tips;step=4;enr=1207",
                (E131050,),
            ),
            status(
                W["fail131026"],
                "failed",
                at(9, 21, 41),
                ANA,
                "seq=tips;step=1;enr=1301",
                (E131026,),
            ),
            status(
                W["fail131047"],
                "failed",
                at(9, 21, 42),
                ANA,
                "seq=tips;step=2;enr=1301",
                (E131047,),
            ),
            status(
                W["fail131049"],
                "failed",
                at(9, 21, 43),
                JOSE,
                "seq=news;step=1;enr=1400",
                (E131049,),
            ),
        ],
    ),
    (
        "statuses_out_of_order",
        [
            status(W["tpl_day5"], "read", at(11, 18, 20), ANA, "seq=tips;step=5;enr=1301"),
            status(W["tpl_day5"], "delivered", at(11, 16, 40), ANA, "seq=tips;step=5;enr=1301"),
            status(W["tpl_day5"], "sent", at(11, 15), ANA, "seq=tips;step=5;enr=1301"),
            status(W["tpl_day5"], "read", at(11, 18, 20), ANA, "seq=tips;step=5;enr=1301"),
        ],
    ),
    (
        "user_preferences_stop",
        [
            PreferenceUpdate(
                JOSE,
                "marketing_messages",
                "stop",
                at(10, 6, 40),
                "User requested to stop marketing messages",
                raw={},
            )
        ],
    ),
    (
        "user_preferences_resume",
        [
            PreferenceUpdate(
                JOSE,
                "marketing_messages",
                "resume",
                at(10, 23, 20),
                "User requested to resume marketing messages",
                raw={},
            )
        ],
    ),
    (
        "template_status_rejected",
        [
            TemplateStatusUpdate(
                template_name="tips_day3",
                template_id="1689556908129832",
                language="en_US",
                event="REJECTED",
                reason="INVALID_FORMAT",
                category="MARKETING",
                detail="The template has a variable parameter at the start of the body. "
                "Move the variable so the body starts with fixed text.",
                raw={},
            )
        ],
    ),
    (
        "field_errors",
        [
            FieldError(
                (
                    ErrorInfo(
                        131000,
                        "Something went wrong",
                        "Something went wrong",
                        "Unsupported webhook payload",
                    ),
                ),
                PNID,
                raw={},
            )
        ],
    ),
    ("unknown_shape", [UnknownEvent("not a whatsapp_business_account payload", None)]),
]


@pytest.mark.parametrize(("name", "expected"), RECORDED, ids=[name for name, _ in RECORDED])
def test_recorded_payload(name: str, expected: list[Event]) -> None:
    assert parse(load(name)) == expected


def test_every_recorded_payload_is_covered() -> None:
    tested = {name for name, _ in RECORDED} | {"batch", "batch_with_oddities"}

    assert {path.stem for path in WEBHOOKS.glob("*.json")} == tested


def test_events_keep_the_raw_item() -> None:
    payload = load("status_failed")
    events = parse(payload)

    raw_status = payload["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert isinstance(events[0], StatusUpdate)
    assert events[0].raw is raw_status
    assert events[0].raw["errors"][0]["href"].startswith("https://developers.facebook.com/")


def test_failed_status_error_codes() -> None:
    codes = [e.error_codes for e in parse(load("status_failed")) if isinstance(e, StatusUpdate)]

    assert codes == [(131050,), (131026,), (131047,), (131049,)]


def test_batched_post_yields_every_item_in_order() -> None:
    events = parse(load("batch"))

    summary = [
        (type(e).__name__, getattr(e, "wamid", None), getattr(e, "status", None)) for e in events
    ]
    assert summary == [
        ("InboundMessage", W["batch_m1"], None),
        ("InboundMessage", W["batch_m2"], None),
        ("StatusUpdate", W["batch_s1"], "delivered"),
        ("StatusUpdate", W["batch_s2"], "read"),
        ("StatusUpdate", W["batch_s3"], "sent"),
        ("InboundMessage", W["batch_m3"], None),
        ("StatusUpdate", W["batch_s4"], "failed"),
        ("PreferenceUpdate", None, None),
    ]


def test_batched_post_attaches_each_contact_to_its_own_message() -> None:
    events = parse(load("batch"))

    assert events[0] == message(W["batch_m1"], ANA, at(9, 33, 20), "text", text="First")
    assert events[1] == message(W["batch_m2"], JOSE, at(9, 33, 21), "text", text="STOP")
    assert events[6] == status(
        W["batch_s4"], "failed", at(9, 33, 26), JOSE, "seq=news;step=2;enr=1400", (E131050,)
    )
    assert events[7] == PreferenceUpdate(
        JOSE,
        "marketing_messages",
        "stop",
        at(9, 33, 27),
        "User requested to stop marketing messages",
        raw={},
    )


def test_odd_items_do_not_cost_the_good_ones() -> None:
    events = parse(load("batch_with_oddities"))

    good = [e for e in events if not isinstance(e, UnknownEvent)]
    unknown = [e.description for e in events if isinstance(e, UnknownEvent)]
    assert good == [
        message(W["odd_m1"], ANA, at(9, 50), "text", text="good one"),
        status(W["odd_s1"], "delivered", at(9, 50, 3), ANA, None),
        status(W["odd_s2"], "deleted", at(9, 50, 4), ANA, None),
        message(
            W["odd_m2"],
            Sender("+447700900123", "GB.27364519283746501928", None, PNID),
            at(9, 50, 5),
            "text",
            text="still here",
        ),
    ]
    assert unknown == [
        "entry[0].changes[0].messages[1]: not an object",
        "entry[0].changes[0].messages[2]: message without id",
        "entry[0].changes[0].statuses[0]: status without id or status",
        "entry[0].changes[1]: field 'account_update' is not handled",
        "entry[0].changes[2]: not an object",
        "entry[1]: no list of changes",
    ]


def test_unknown_shape_keeps_the_payload() -> None:
    payload = load("unknown_shape")
    (event,) = parse(payload)

    assert isinstance(event, UnknownEvent)
    assert event.raw is payload


def _envelope(value: Any, field: Any = "messages") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": field, "value": value}]}],
    }


def _one_message(contacts: Any = None, **fields: Any) -> Any:
    item = {"id": "wamid.X", "timestamp": "1772442060", "type": "text", "text": {"body": "hi"}}
    item.update(fields)
    value: dict[str, Any] = {"metadata": {"phone_number_id": PNID}, "messages": [item]}
    if contacts is not None:
        value["contacts"] = contacts
    (event,) = parse(_envelope(value))
    return event


@pytest.mark.parametrize(
    ("sender_fields", "contacts", "expected"),
    [
        ({"from": "447700900123"}, None, Sender("+447700900123", None, None, PNID)),
        ({"from": "+447700900123"}, None, Sender("+447700900123", None, None, PNID)),
        ({"from": 447700900123}, None, Sender("+447700900123", None, None, PNID)),
        (
            {"from_user_id": "GB.1"},
            [{"profile": {"name": "B"}, "wa_id": "2", "user_id": "GB.2"}, {"user_id": "GB.1"}],
            Sender(None, "GB.1", None, PNID),
        ),
        (
            {"from_user_id": "GB.2"},
            [
                {"profile": {"name": "A"}, "wa_id": "1"},
                {"profile": {"name": "B"}, "user_id": "GB.2"},
            ],
            Sender(None, "GB.2", "B", PNID),
        ),
        (
            {"from": "2"},
            [{"profile": {"name": "A"}, "wa_id": "1"}, {"profile": {"name": "B"}, "wa_id": "2"}],
            Sender("+2", None, "B", PNID),
        ),
        (
            {"from": "1"},
            [{"profile": {"name": "A"}, "wa_id": "+1", "user_id": "US.9"}],
            Sender("+1", "US.9", "A", PNID),
        ),
        (
            {},
            [{"profile": {"name": "Solo"}, "user_id": "GB.7"}],
            Sender(None, "GB.7", "Solo", PNID),
        ),
        (
            {"from": "3"},
            [{"profile": {"name": "Other"}, "wa_id": "4", "user_id": "GB.4"}],
            Sender("+3", None, None, PNID),
        ),
    ],
)
def test_sender_identity(sender_fields: dict[str, Any], contacts: Any, expected: Sender) -> None:
    event = _one_message(contacts, **sender_fields)

    assert isinstance(event, InboundMessage)
    assert event.sender == expected


@pytest.mark.parametrize(
    ("fields", "contacts", "description"),
    [
        ({}, None, "message without a sender"),
        ({"from": "not-a-phone"}, None, "message without a sender"),
        ({}, [{"wa_id": "1"}, {"wa_id": "2"}], "message without a sender"),
        ({"from": "1", "id": ""}, None, "message without id"),
        ({"from": "1", "id": 42}, None, "message without id"),
        ({"from": "1", "timestamp": None}, None, "message without a readable timestamp"),
        ({"from": "1", "timestamp": "soon"}, None, "message without a readable timestamp"),
        ({"from": "1", "timestamp": "-5"}, None, "message without a readable timestamp"),
        ({"from": "1", "timestamp": "9" * 30}, None, "message without a readable timestamp"),
        ({"from": "1", "timestamp": True}, None, "message without a readable timestamp"),
    ],
)
def test_partial_messages_become_unknown(
    fields: dict[str, Any], contacts: Any, description: str
) -> None:
    event = _one_message(contacts, **fields)

    assert event == UnknownEvent(f"entry[0].changes[0].messages[0]: {description}", None)


def test_timestamp_may_be_an_integer() -> None:
    event = _one_message(None, **{"from": "1", "timestamp": 1772442060})

    assert isinstance(event, InboundMessage)
    assert event.timestamp == at(9, 1)
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "text", "text": {"body": "hello"}}, ("text", "hello", None)),
        ({"type": "text", "text": "hello"}, ("text", None, None)),
        ({"type": "text", "text": {"body": 5}}, ("text", None, None)),
        ({"type": "button", "button": {"text": "Yes"}}, ("button", "Yes", None)),
        (
            {
                "type": "interactive",
                "interactive": {
                    "type": "nfm_reply",
                    "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{}"},
                },
            },
            ("interactive", "Sent", "{}"),
        ),
        (
            {"type": "interactive", "interactive": {"type": "button_reply"}},
            ("interactive", None, None),
        ),
        ({"type": "interactive", "interactive": {"type": 3}}, ("interactive", None, None)),
        (
            {"type": "reaction", "reaction": {"message_id": "wamid.Y", "emoji": ""}},
            ("reaction", None, None),
        ),
        ({"type": "order", "order": {"catalog_id": "1"}}, ("order", None, None)),
        ({"type": None}, ("unknown", None, None)),
        ({"type": ""}, ("unknown", None, None)),
    ],
)
def test_message_kinds(
    fields: dict[str, Any], expected: tuple[str, str | None, str | None]
) -> None:
    event = _one_message(None, **{"from": "1", **fields})

    assert isinstance(event, InboundMessage)
    assert (event.kind, event.text, event.payload) == expected


def test_removed_reaction_still_points_at_its_message() -> None:
    event = _one_message(
        None, **{"from": "1", "type": "reaction", "reaction": {"message_id": "wamid.Y"}}
    )

    assert isinstance(event, InboundMessage)
    assert (event.text, event.context_wamid) == (None, "wamid.Y")


def test_media_without_a_body_still_yields_a_message() -> None:
    event = _one_message(None, **{"from": "1", "type": "document", "document": ["x"]})

    assert isinstance(event, InboundMessage)
    assert event.media == Media(None, None, None, None, None, None)


def test_status_takes_the_bsuid_from_its_contact() -> None:
    value = {
        "contacts": [{"wa_id": "447700900123", "user_id": "GB.1"}],
        "statuses": [
            {
                "id": "wamid.S",
                "status": "played",
                "timestamp": "1772442060",
                "recipient_id": "447700900123",
            }
        ],
    }
    (event,) = parse(_envelope(value))

    assert event == StatusUpdate(
        "wamid.S", "played", at(9, 1), "+447700900123", "GB.1", None, (), None, raw={}
    )


def test_status_to_a_bsuid_only_recipient() -> None:
    value = {
        "statuses": [
            {
                "id": "wamid.S",
                "status": "sent",
                "timestamp": "1772442060",
                "recipient_user_id": "GB.1",
            }
        ]
    }
    (event,) = parse(_envelope(value))

    assert isinstance(event, StatusUpdate)
    assert (event.recipient, event.recipient_user_id) == (None, "GB.1")


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([{"code": 131050}], (ErrorInfo(131050, None, None, None),)),
        ([{"code": "131050"}], (ErrorInfo(131050, None, None, None),)),
        ([{"code": True, "title": "t"}], (ErrorInfo(None, "t", None, None),)),
        ([{"code": 1, "error_data": "x"}], (ErrorInfo(1, None, None, None),)),
        ([{"code": 1, "error_data": {"details": "d"}}], (ErrorInfo(1, None, None, "d"),)),
        (["nonsense", 7, {"code": 2}], (ErrorInfo(2, None, None, None),)),
        ("nonsense", ()),
        ({"code": 1}, ()),
    ],
)
def test_error_objects(errors: Any, expected: tuple[ErrorInfo, ...]) -> None:
    value = {
        "statuses": [
            {
                "id": "wamid.S",
                "status": "failed",
                "timestamp": "1772442060",
                "recipient_id": "1",
                "errors": errors,
            }
        ]
    }
    (event,) = parse(_envelope(value))

    assert isinstance(event, StatusUpdate)
    assert event.errors == expected


@pytest.mark.parametrize(
    ("value", "field", "description"),
    [
        ({}, "messages", "entry[0].changes[0]: no messages, statuses or errors"),
        ({"messages": 5}, "messages", "entry[0].changes[0].messages: not a list"),
        ({"statuses": {}}, "messages", "entry[0].changes[0].statuses: not a list"),
        ({"errors": ["x"]}, "messages", "entry[0].changes[0].errors: no readable error"),
        ("text", "messages", "entry[0].changes[0]: value is not an object"),
        ({"a": 1}, None, "entry[0].changes[0]: field None is not handled"),
        ({"a": 1}, ["messages"], "entry[0].changes[0]: field ['messages'] is not handled"),
        (
            {"user_preferences": "stop"},
            "user_preferences",
            "entry[0].changes[0]: user_preferences is not a list",
        ),
        (
            {"user_preferences": [{"wa_id": "1", "category": "marketing_messages"}]},
            "user_preferences",
            "entry[0].changes[0].user_preferences[0]: no category or value",
        ),
        (
            {"user_preferences": [{"category": "marketing_messages", "value": "stop"}]},
            "user_preferences",
            "entry[0].changes[0].user_preferences[0]: no user identity",
        ),
        (
            {"user_preferences": [None]},
            "user_preferences",
            "entry[0].changes[0].user_preferences[0]: not an object",
        ),
        (
            {"message_template_name": "x"},
            "message_template_status_update",
            "entry[0].changes[0]: template status without event",
        ),
    ],
)
def test_odd_changes_become_unknown(value: Any, field: Any, description: str) -> None:
    assert parse(_envelope(value, field)) == [UnknownEvent(description, None)]


def test_preference_by_bsuid_without_timestamp() -> None:
    value = {
        "user_preferences": [
            {"user_id": "GB.5", "category": "marketing_messages", "value": "stop", "timestamp": "x"}
        ]
    }

    assert parse(_envelope(value, "user_preferences")) == [
        PreferenceUpdate(
            Sender(None, "GB.5", None, None), "marketing_messages", "stop", None, None, raw={}
        )
    ]


def test_template_approval_with_null_reason() -> None:
    value = {
        "event": "APPROVED",
        "message_template_id": "77",
        "message_template_name": "tips_day1",
        "message_template_language": "pt_BR",
        "reason": None,
    }

    assert parse(_envelope(value, "message_template_status_update")) == [
        TemplateStatusUpdate("tips_day1", "77", "pt_BR", "APPROVED", None, None, None, raw={})
    ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"object": "whatsapp_business_account"}, True),
        ({"object": "whatsapp_business_account", "entry": 5}, True),
        ({"object": "page"}, False),
        ({"entry": []}, False),
        (["whatsapp_business_account"], False),
        ("whatsapp_business_account", False),
        (None, False),
    ],
)
def test_is_whatsapp_payload(payload: Any, expected: bool) -> None:
    assert is_whatsapp_payload(payload) is expected


@pytest.mark.parametrize(
    ("payload", "descriptions"),
    [
        (None, ["not a whatsapp_business_account payload"]),
        ([], ["not a whatsapp_business_account payload"]),
        ("entry", ["not a whatsapp_business_account payload"]),
        (42, ["not a whatsapp_business_account payload"]),
        ({}, ["not a whatsapp_business_account payload"]),
        ({"object": None, "entry": []}, ["not a whatsapp_business_account payload"]),
        ({"object": "whatsapp_business_account"}, ["entry is not a list"]),
        ({"object": "whatsapp_business_account", "entry": 5}, ["entry is not a list"]),
        (
            {"object": "whatsapp_business_account", "entry": {"changes": []}},
            ["entry is not a list"],
        ),
        ({"object": "whatsapp_business_account", "entry": []}, []),
        ({"object": "whatsapp_business_account", "entry": [5]}, ["entry[0]: no list of changes"]),
        ({"object": "whatsapp_business_account", "entry": [{}]}, ["entry[0]: no list of changes"]),
        (
            {"object": "whatsapp_business_account", "entry": [{"changes": "x"}]},
            ["entry[0]: no list of changes"],
        ),
        (
            {"object": "whatsapp_business_account", "entry": [{"changes": [None, []]}]},
            ["entry[0].changes[0]: not an object", "entry[0].changes[1]: not an object"],
        ),
        (
            {
                "object": "whatsapp_business_account",
                "entry": [{"changes": [{"field": "messages"}]}],
            },
            ["entry[0].changes[0]: value is not an object"],
        ),
    ],
)
def test_garbage_does_not_raise(payload: Any, descriptions: list[str]) -> None:
    events = parse(payload)

    assert all(isinstance(e, UnknownEvent) for e in events)
    assert [e.description for e in events if isinstance(e, UnknownEvent)] == descriptions


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None, database=None)
@given(payload=_json)
def test_arbitrary_json_never_raises(payload: Any) -> None:
    events = parse(payload)

    assert len(events) == 1
    assert isinstance(events[0], UnknownEvent)


_GARBAGE: list[Any] = [None, True, 0, -1, 1e308, "", "x", [], [None], {}, {"x": 1}]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in a JSON tree, as the keys and indexes leading to it."""
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*path, index))
    return found


def _replaced(node: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replaced(node[path[0]], path[1:], new)
    return copy


@pytest.mark.parametrize("name", sorted(path.stem for path in WEBHOOKS.glob("*.json")))
def test_any_node_of_a_recorded_payload_may_be_garbage(name: str) -> None:
    """Replace each node of a real payload in turn: parsing never raises and still yields
    only events, and a broken item never removes more than the change it sits in."""
    payload = load(name)
    for path in _paths(payload):
        for garbage in _GARBAGE:
            events = parse(_replaced(payload, path, garbage))

            assert all(isinstance(e, EVENT_TYPES) for e in events), (path, garbage)


def test_events_are_immutable_and_hashable() -> None:
    events = parse(load("batch"))

    assert len(set(events)) == len(events)
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].wamid = "other"  # type: ignore[misc, union-attr]
