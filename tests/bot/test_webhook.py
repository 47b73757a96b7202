"""The webhook route end to end: signed, recorded payloads over a real socket.

Each test serves ``setup_webhook`` on 127.0.0.1 against a real database and the fake Graph
API, posts bodies signed as Meta signs them, waits for the inbox to process them, and looks
at what changed in the database and what went out to the fake Graph API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, insert, select

from bot.metrics import Metrics
from bot.services import Services
from bot.webhook import PATH
from bot.whatsapp.events import InboundMessage as ParsedMessage
from bot.whatsapp.webhook import parse
from handlers.optout import OPT_OUT_CONFIRMATION
from handlers.replies import Actor, Reply, Upload
from scheduler.clock import ManualClock
from scheduler.enrollment import ContactInput, enroll
from scheduler.phones import mask_phone
from scheduler.ports import LogAlerts
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import (
    Contact,
    Enrollment,
    InboundMessage,
    OutboundMessage,
    WebhookEvent,
)
from tests.bot.test_signature import BODY as VECTOR_BODY
from tests.bot.test_signature import VECTOR_HEX
from tests.bot.webhook_app import (
    ADMIN,
    SECRET,
    VERIFY_TOKEN,
    WEBHOOKS,
    drained,
    make_dispatcher,
    make_services,
    post,
    recorded,
    serve,
    signed,
    status_payload,
    text_message,
)
from tests.fakes.graph import FakeGraph

Client = TestClient[web.Request, web.Application]

JOSE = "+16505550123"
DAY1 = StepSpec(Timing(day=1), "template", template=TemplateRef("welcome", "en_US", ()))
DAY3 = StepSpec(Timing(day=3), "template", template=TemplateRef("tip", "en_US", ()))
DAY7 = StepSpec(Timing(day=7), "template", template=TemplateRef("check_in", "en_US", ()))


@pytest.fixture
def services(
    db: Database,
    clock: ManualClock,
    graph: FakeGraph,
    http: aiohttp.ClientSession,
    alerts: LogAlerts,
) -> Services:
    return make_services(db, clock, graph.base_url, http, alerts)


@pytest.fixture
async def client(services: Services) -> AsyncIterator[Client]:
    async with serve(services) as test_client:
        yield test_client


async def count(db: Database, model: Any, *where: Any) -> int:
    async with db.engine.connect() as conn:
        query = select(func.count()).select_from(model).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def seed_contact(db: Database, clock: ManualClock, phone: str) -> int:
    async with db.engine.begin() as conn:
        return int(
            (
                await conn.execute(
                    insert(Contact)
                    .values(
                        workspace_id=db.workspace_id,
                        phone=phone,
                        custom_fields={},
                        created_at=clock.now(),
                        updated_at=clock.now(),
                    )
                    .returning(Contact.id)
                )
            ).scalar_one()
        )


async def seed_message(
    db: Database, clock: ManualClock, contact_id: int, wamid: str, status: str = "sent"
) -> None:
    """A message already handed to WhatsApp under this id."""
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(OutboundMessage).values(
                workspace_id=db.workspace_id,
                contact_id=contact_id,
                purpose="test",
                status=status,
                due_at=clock.now(),
                attempts=1,
                wamid=wamid,
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )


async def seed_sent(db: Database, clock: ManualClock, phone: str, wamid: str) -> None:
    await seed_message(db, clock, await seed_contact(db, clock, phone), wamid)


async def message_state(db: Database, wamid: str) -> Any:
    async with db.engine.connect() as conn:
        return (
            await conn.execute(
                select(
                    OutboundMessage.status,
                    OutboundMessage.delivered_at,
                    OutboundMessage.read_at,
                    OutboundMessage.error_code,
                    OutboundMessage.error_detail,
                ).where(OutboundMessage.wamid == wamid)
            )
        ).one()


async def stored_events(db: Database) -> list[Any]:
    async with db.engine.connect() as conn:
        return list(
            await conn.execute(
                select(WebhookEvent.processed_at, WebhookEvent.error).order_by(WebhookEvent.id)
            )
        )


# --- handshake ----------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge(client: Client) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    async with client.get(PATH, params=query) as response:
        assert response.status == 200
        assert await response.text() == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ],
)
async def test_a_bad_handshake_is_refused(client: Client, query: dict[str, str]) -> None:
    async with client.get(PATH, params=query) as response:
        assert response.status == 403
        assert "1" not in await response.text()


async def test_without_a_verify_token_every_handshake_is_refused(
    db: Database, clock: ManualClock, graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    services = make_services(db, clock, graph.base_url, http, whatsapp_verify_token=None)
    async with serve(services) as client:
        query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "7"}
        async with client.get(PATH, params=query) as response:
            assert response.status == 403


# --- refusals -----------------------------------------------------------------------------


async def test_unsigned_and_wrongly_signed_posts_change_nothing(
    client: Client, db: Database
) -> None:
    body = json.dumps(text_message(JOSE, "STOP", wamid="wamid.unsigned")).encode()
    headers = [
        {"Content-Type": "application/json"},
        signed(body, "another-secret"),
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        signed(body + b" "),
    ]
    for header in headers:
        async with client.post(PATH, data=body, headers=header) as response:
            assert response.status == 401
    await drained(client)
    assert await count(db, WebhookEvent) == 0
    assert await count(db, Contact) == 0
    assert await count(db, InboundMessage) == 0


async def test_without_an_app_secret_posts_are_refused_and_it_says_why_once(
    db: Database,
    clock: ManualClock,
    graph: FakeGraph,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = make_services(db, clock, graph.base_url, http, whatsapp_app_secret=None)
    async with serve(services) as client:
        body = json.dumps(text_message(JOSE, "hi", wamid="wamid.nosecret")).encode()
        with caplog.at_level(logging.ERROR, logger="bot.inbox"):
            for _ in range(3):
                async with client.post(PATH, data=body, headers=signed(body)) as response:
                    assert response.status == 401
    assert sum("APP_SECRET" in r.getMessage() for r in caplog.records) == 1
    assert await count(db, WebhookEvent) == 0


async def test_malformed_json_is_a_400_and_nothing_is_stored(client: Client, db: Database) -> None:
    for body in (b'{"object": "whatsapp_business_account", "entry": [', b"\xff\xfe{}", b""):
        async with client.post(PATH, data=body, headers=signed(body)) as response:
            assert response.status == 400
    assert await count(db, WebhookEvent) == 0


async def test_a_body_over_the_cap_is_refused(
    db: Database, clock: ManualClock, graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    services = make_services(db, clock, graph.base_url, http, webhook_max_bytes=2000)
    body = json.dumps({"object": "whatsapp_business_account", "pad": "x" * 3000}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    async with serve(services) as client:
        async with client.post(PATH, data=body, headers=signed(body)) as response:
            assert response.status == 413
        # Without a Content-Length the cap holds while reading.
        async with client.post(PATH, data=chunks(), headers=signed(body)) as response:
            assert response.status == 413
        small = json.dumps(recorded("status_sent")).encode()
        assert len(small) < 2000
        assert await post(client, small) == 200
    assert await count(db, WebhookEvent) == 1


async def test_deliveries_are_counted_for_metrics(client: Client, services: Services) -> None:
    metrics = Metrics()
    services.extras["metrics"] = metrics
    good = json.dumps(recorded("status_read")).encode()
    assert await post(client, good) == 200
    async with client.post(PATH, data=good, headers=signed(good, "wrong")) as response:
        assert response.status == 401
    async with client.post(PATH, data=b"{", headers=signed(b"{")) as response:
        assert response.status == 400

    def counted(result: str) -> float | None:
        return metrics.registry.get_sample_value("dripbot_webhooks_total", {"result": result})

    assert (counted("stored"), counted("bad_signature"), counted("malformed")) == (1, 1, 1)


async def test_the_fixed_signature_vector_is_accepted(client: Client, db: Database) -> None:
    assert SECRET == "test-app-secret"  # the key the vector was computed with
    headers = {"X-Hub-Signature-256": "sha256=" + VECTOR_HEX}
    async with client.post(PATH, data=VECTOR_BODY, headers=headers) as response:
        assert response.status == 200
    await drained(client)
    [(processed_at, error)] = await stored_events(db)
    assert processed_at is not None
    assert error is None


# --- every recorded payload ---------------------------------------------------------------

RECORDED = sorted(path.stem for path in WEBHOOKS.glob("*.json"))


@pytest.mark.parametrize("name", RECORDED)
async def test_every_recorded_payload_is_stored_and_processed(
    client: Client, db: Database, name: str
) -> None:
    payload = recorded(name)
    assert await post(client, payload) == 200
    await drained(client)
    [(processed_at, error)] = await stored_events(db)
    assert processed_at is not None
    assert error is None
    wamids = {e.wamid for e in parse(payload) if isinstance(e, ParsedMessage)}
    if wamids:
        async with db.engine.connect() as conn:
            found = set(
                (
                    await conn.execute(
                        select(InboundMessage.wamid).where(InboundMessage.wamid.in_(wamids))
                    )
                ).scalars()
            )
        assert found == wamids


async def test_a_signed_unknown_shape_is_logged_and_acknowledged(
    client: Client, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.inbox_processing"):
        assert await post(client, recorded("unknown_shape")) == 200
        assert await post(client, [1, 2, 3]) == 200
        await drained(client)
    assert sum("unknown shape" in r.getMessage() for r in caplog.records) == 2
    assert [error for _, error in await stored_events(db)] == [None, None]


# --- batches, duplicates, order ------------------------------------------------------------


BATCH = "wamid.HBgMFQIAEhgUQkFUQ0hfUz{}wMDAwMDAwMDAwMDAA"


async def test_a_batched_post_handles_every_entry_change_message_and_status(
    client: Client, db: Database, clock: ManualClock, alerts: LogAlerts
) -> None:
    ana = await seed_contact(db, clock, "+447700900123")
    jose = await seed_contact(db, clock, JOSE)
    await seed_message(db, clock, ana, BATCH.format("E"))
    await seed_message(db, clock, ana, BATCH.format("I"))
    await seed_message(db, clock, jose, BATCH.format("M"), status="sending")
    await seed_message(db, clock, jose, BATCH.format("Q"))

    assert await post(client, recorded("batch")) == 200
    await drained(client)

    assert (await message_state(db, BATCH.format("E"))).status == "delivered"
    assert (await message_state(db, BATCH.format("I"))).status == "read"
    assert (await message_state(db, BATCH.format("M"))).status == "sent"
    failed = await message_state(db, BATCH.format("Q"))
    assert (failed.status, failed.error_code) == ("failed", 131050)
    assert await count(db, InboundMessage) == 3
    async with db.engine.connect() as conn:
        jose = (await conn.execute(select(Contact).where(Contact.phone == JOSE))).one()
    # STOP came first; the 131050 status and the marketing stop found them opted out.
    assert jose.opt_out_source == "keyword"
    assert [kind for kind, _ in alerts.sent].count("opt_out") == 1
    assert await count(db, OutboundMessage, OutboundMessage.purpose == "notice") == 1


async def test_a_thousand_statuses_in_one_post_are_all_applied(
    client: Client, db: Database, clock: ManualClock
) -> None:
    contact = await seed_contact(db, clock, JOSE)
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(OutboundMessage),
            [
                {
                    "workspace_id": db.workspace_id,
                    "contact_id": contact,
                    "purpose": "test",
                    "status": "sent",
                    "due_at": clock.now(),
                    "attempts": 1,
                    "wamid": f"wamid.many{n}",
                    "created_at": clock.now(),
                    "updated_at": clock.now(),
                }
                for n in range(1200)
            ],
        )

    def statuses(numbers: range) -> dict[str, Any]:
        return status_payload(
            *(
                {"id": f"wamid.many{n}", "status": "delivered", "timestamp": "1772443005"}
                for n in numbers
            )
        )

    assert await asyncio.gather(
        post(client, statuses(range(1000))), post(client, statuses(range(1000, 1200)))
    ) == [200, 200]
    await drained(client)
    delivered = OutboundMessage.status == "delivered"
    assert await count(db, OutboundMessage, delivered) == 1200
    assert [error for _, error in await stored_events(db)] == [None, None]


async def test_the_same_post_twice_changes_nothing_the_second_time(
    client: Client, db: Database, clock: ManualClock, alerts: LogAlerts
) -> None:
    await seed_sent(db, clock, "+447700900123", BATCH.format("E"))
    assert await post(client, recorded("batch")) == 200
    await drained(client)
    before = (
        await count(db, InboundMessage),
        await count(db, OutboundMessage),
        await count(db, Contact),
        list(alerts.sent),
    )
    clock.advance(minutes=5)
    assert await post(client, recorded("batch")) == 200
    await drained(client)
    after = (
        await count(db, InboundMessage),
        await count(db, OutboundMessage),
        await count(db, Contact),
        list(alerts.sent),
    )
    assert after == before
    assert [error for _, error in await stored_events(db)] == [None, None]


async def test_statuses_out_of_order_end_at_read(
    client: Client, db: Database, clock: ManualClock
) -> None:
    wamid = "wamid.HBgMFQIAEhgUVFBMX0RBWTUwMDAwMDAwMDAwMDAA"
    await seed_sent(db, clock, "+447700900123", wamid)
    assert await post(client, recorded("statuses_out_of_order")) == 200
    await drained(client)
    state = await message_state(db, wamid)
    assert state.status == "read"
    assert state.read_at is not None and state.delivered_at is not None
    # A late "delivered" after that is a no-op.
    late = status_payload({"id": wamid, "status": "delivered", "timestamp": "1772450400"})
    assert await post(client, late) == 200
    await drained(client)
    assert (await message_state(db, wamid)).status == "read"


# --- opt-out by each of the four signals ---------------------------------------------------


async def _enroll_jose(db: Database, clock: ManualClock, services: Services) -> None:
    await create_sequence(db, "Tips", [DAY1, DAY3, DAY7], now=clock.now())
    await create_sequence(db, "News", [DAY3], now=clock.now())
    for name in ("Tips", "News"):
        report = await enroll(
            db,
            name,
            [ContactInput(JOSE, name="José", timezone="UTC")],
            now=clock.now(),
            options=services.options,
        )
        assert report.enrolled == 1


def _signal(kind: str, graph: FakeGraph) -> dict[str, Any]:
    if kind == "keyword":
        return text_message(JOSE, "  Stop! ", wamid="wamid.stop-keyword", name="José")
    if kind == "button":
        return recorded("button_stop_promotions")
    if kind == "user_preferences":
        return recorded("user_preferences_stop")
    sent = graph.sent[0]
    return status_payload(
        {
            "id": sent.wamid,
            "status": "failed",
            "timestamp": "1772443300",
            "recipient_id": JOSE.lstrip("+"),
            "biz_opaque_callback_data": sent.json["biz_opaque_callback_data"],
            "errors": [{"code": 131050, "title": "Unable to deliver the message."}],
        }
    )


@pytest.mark.parametrize(
    ("signal", "confirms"),
    [("keyword", True), ("button", True), ("user_preferences", False), ("error 131050", False)],
)
async def test_each_opt_out_signal_stops_everything(
    client: Client,
    db: Database,
    clock: ManualClock,
    graph: FakeGraph,
    services: Services,
    alerts: LogAlerts,
    signal: str,
    confirms: bool,
) -> None:
    await _enroll_jose(db, clock, services)
    dispatcher = make_dispatcher(services)
    assert await dispatcher.tick() == 1  # Day 1 of Tips
    clock.advance(minutes=1)

    payload = _signal(signal, graph)
    assert await post(client, payload) == 200
    assert await post(client, payload) == 200  # Meta's retry
    await drained(client)

    async with db.engine.connect() as conn:
        contact = (await conn.execute(select(Contact).where(Contact.phone == JOSE))).one()
        statuses = sorted((await conn.execute(select(Enrollment.status))).scalars())
    assert contact.opted_out_at is not None
    assert contact.opt_out_source == signal
    assert statuses == ["opted_out", "opted_out"]
    pending = OutboundMessage.status.in_(["scheduled", "sending"])
    assert await count(db, OutboundMessage, pending, OutboundMessage.purpose == "drip") == 0

    clock.advance(days=10)  # every step would be due by now
    await dispatcher.tick()
    await dispatcher.tick()
    later = [r.json for r in graph.sent[1:]]
    expected = [OPT_OUT_CONFIRMATION] if confirms else []
    assert [m["text"]["body"] for m in later if m["type"] == "text"] == expected
    assert [m for m in later if m["type"] != "text"] == []
    assert [kind for kind, _ in alerts.sent].count("opt_out") == 1
    assert mask_phone(JOSE) in next(text for kind, text in alerts.sent if kind == "opt_out")


async def test_start_after_stop_re_subscribes_without_restarting_sequences(
    client: Client, db: Database, clock: ManualClock, graph: FakeGraph, services: Services
) -> None:
    await _enroll_jose(db, clock, services)
    assert await post(client, text_message(JOSE, "STOP", wamid="wamid.s1")) == 200
    assert await post(client, text_message(JOSE, "start", wamid="wamid.s2")) == 200
    await drained(client)
    async with db.engine.connect() as conn:
        contact = (await conn.execute(select(Contact).where(Contact.phone == JOSE))).one()
        statuses = sorted((await conn.execute(select(Enrollment.status))).scalars())
    assert contact.opted_out_at is None
    assert statuses == ["opted_out", "opted_out"]
    dispatcher = make_dispatcher(services)
    await dispatcher.tick()
    clock.advance(seconds=6)  # one message per 6 s to one person
    await dispatcher.tick()
    texts = [r.json["text"]["body"] for r in graph.sent]
    assert texts[0] == OPT_OUT_CONFIRMATION
    assert texts[1].startswith("Welcome back")
    assert len(texts) == 2


# --- admins -------------------------------------------------------------------------------


class RecordingRunner:
    """A stand-in for the command interpreter (the port the webhook talks to)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Actor, str, Upload | None]] = []

    async def run(self, actor: Actor, text: str, upload: Upload | None = None) -> Reply:
        self.calls.append((actor, text, upload))
        size = len(upload.data) if upload else 0
        return Reply(f"ran {text} with {size} bytes")


CSV = b"phone,name\n+4915123456789,Ana\n+4915123456788,Ben\n"
CSV_MEDIA_ID = "2298145563712093"


async def test_an_admin_csv_with_enroll_caption_is_fetched_and_run(
    client: Client, services: Services, graph: FakeGraph
) -> None:
    runner = RecordingRunner()
    services.extras["interpreter"] = runner
    graph.add_media(CSV_MEDIA_ID, CSV, "text/csv")
    assert await post(client, recorded("document_csv")) == 200
    await drained(client)
    [(actor, text, upload)] = runner.calls
    assert (actor.channel, actor.identifier, actor.chat_id) == ("whatsapp", ADMIN, ADMIN)
    assert text == "/enroll tips"
    assert upload == Upload("leads-march.csv", CSV)
    [answer] = graph.sent
    assert answer.to == ADMIN
    assert answer.json["text"]["body"] == f"ran /enroll tips with {len(CSV)} bytes"


async def test_an_admin_csv_over_the_size_cap_gets_a_clear_answer(
    db: Database, clock: ManualClock, graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    services = make_services(db, clock, graph.base_url, http, whatsapp_media_max_bytes=10)
    runner = RecordingRunner()
    services.extras["interpreter"] = runner
    graph.add_media(CSV_MEDIA_ID, CSV, "text/csv")
    async with serve(services) as client:
        assert await post(client, recorded("document_csv")) == 200
        await drained(client)
    assert runner.calls == []
    [answer] = graph.sent
    assert "larger than" in answer.json["text"]["body"]


async def test_an_admin_command_without_an_interpreter_is_answered(
    client: Client, graph: FakeGraph
) -> None:
    assert await post(client, text_message(ADMIN, "/stats", wamid="wamid.admin1")) == 200
    await drained(client)
    [answer] = graph.sent
    assert answer.to == ADMIN
    assert answer.json["text"]["body"] == "Commands are not available yet."


async def test_a_slash_message_from_anyone_else_is_a_reply(
    client: Client, services: Services, graph: FakeGraph, alerts: LogAlerts
) -> None:
    runner = RecordingRunner()
    services.extras["interpreter"] = runner
    assert await post(client, text_message(JOSE, "/stats", wamid="wamid.notadmin")) == 200
    await drained(client)
    assert runner.calls == []
    assert graph.sent == []
    [(kind, text)] = alerts.sent
    assert kind == "reply"
    assert "/stats" in text


# --- durability ---------------------------------------------------------------------------


async def test_bodies_stored_but_not_processed_are_processed_on_start(
    db: Database, clock: ManualClock, services: Services
) -> None:
    async with db.engine.begin() as conn:
        for body in (
            json.dumps(text_message(JOSE, "STOP", wamid="wamid.before-crash")),
            "this body was damaged on disk",
        ):
            await conn.execute(
                insert(WebhookEvent).values(source="whatsapp", body=body, received_at=clock.now())
            )
    async with serve(services) as client:
        await drained(client)
        async with db.engine.connect() as conn:
            opted_out = (
                await conn.execute(select(Contact.opted_out_at).where(Contact.phone == JOSE))
            ).scalar_one()
        assert opted_out is not None
        events = await stored_events(db)
        assert all(processed_at is not None for processed_at, _ in events)
        assert events[0].error is None
        assert "unreadable" in events[1].error
        # The worker goes on after a poisoned body.
        assert await post(client, text_message(JOSE, "hello?", wamid="wamid.after")) == 200
        await drained(client)
    assert await count(db, InboundMessage) == 2


async def test_window_opens_at_the_message_time_and_never_moves_back(
    client: Client, db: Database, clock: ManualClock
) -> None:
    clock.advance(hours=1)
    newer = text_message(JOSE, "later", wamid="wamid.w2", timestamp=1772442060 + 600)
    older = text_message(JOSE, "earlier", wamid="wamid.w1", timestamp=1772442060)
    assert await post(client, newer) == 200
    assert await post(client, older) == 200
    await drained(client)
    async with db.engine.connect() as conn:
        seen = (
            await conn.execute(select(Contact.last_inbound_at).where(Contact.phone == JOSE))
        ).scalar_one()
    assert seen == clock.now() - timedelta(hours=1) + timedelta(minutes=11)
