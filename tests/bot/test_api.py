"""The REST API served on 127.0.0.1: every route's success and failure, scopes, errors and
rate limits, on both database backends."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from bot.api import setup_api
from bot.api.ratelimit import Limited, SlidingWindowLimiter
from bot.config import load_settings
from bot.sending import ConsoleSender
from bot.services import SERVICES, Services
from scheduler.clock import ManualClock
from scheduler.ports import LogAlerts
from storage.api_keys import create_api_key, revoke_api_key
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage, Step

ANA = "+4915123456789"
BEN = "+4915123456780"
CARL = "+4915123456781"

WELCOME = {
    "name": "Welcome",
    "description": "New leads",
    "steps": [
        {"day": 1, "type": "template", "template": {"name": "welcome", "language": "en"}},
        {"day": 3, "at": "10:00", "message": "Hi {first_name|there}, a tip for you"},
        {"after": "2h", "message": "Did you get a chance to look?"},
    ],
}


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    text: str


@dataclass
class Api:
    server: TestServer
    services: Services
    admin_key: str
    public_key: str
    alerts: LogAlerts

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def auth(self, key: str | None) -> dict[str, str]:
        chosen = {"admin": self.admin_key, "public": self.public_key}.get(key or "", key)
        return {} if chosen is None else {"Authorization": f"Bearer {chosen}"}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = "admin",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        source: str | None = None,
    ) -> Reply:
        """One request; ``source`` picks the client address (another 127.x.y.z)."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        sent = self.auth(key) | (headers or {})
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.request(method, self.url(path), data=data, headers=sent) as response,
        ):
            text = await response.text()
            parsed = json.loads(text) if response.content_type == "application/json" else None
            return Reply(response.status, parsed, dict(response.headers), text)

    async def sequence(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.call("POST", "/api/sequences", body or WELCOME)
        assert reply.status == 201, reply.text
        return dict(reply.body)


@asynccontextmanager
async def serve_api(
    db: Database,
    clock: ManualClock,
    *,
    rate_per_minute: int = 1000,
    client_max_size: int = 1024**2,
) -> AsyncIterator[Api]:
    """The API alone, on an aiohttp app with real services, served on 127.0.0.1."""
    settings = load_settings(
        _env_file=None,
        database_url="sqlite+aiosqlite:///unused.db",
        default_region="DE",
        public_rate_per_minute=rate_per_minute,
    )
    alerts = LogAlerts()
    services = Services(
        settings=settings,
        db=db,
        clock=clock,
        options=settings.engine_options(),
        alerts=alerts,
        sender=ConsoleSender(),
    )
    app = web.Application(client_max_size=client_max_size)
    app[SERVICES] = services
    setup_api(app)
    admin = await create_api_key(db, scope="admin", name="crm", now=clock.now())
    public = await create_api_key(db, scope="public", name="form", now=clock.now())
    async with TestServer(app) as server:
        yield Api(server, services, admin.plaintext, public.plaintext, alerts)


@pytest.fixture
async def api(db: Database, clock: ManualClock, clean_env: None) -> AsyncIterator[Api]:
    async with serve_api(db, clock) as served:
        yield served


@pytest.fixture
async def sqlite_api(
    sqlite_db: Database, clock: ManualClock, clean_env: None
) -> AsyncIterator[Api]:
    """For request checks that end before the database is asked anything."""
    async with serve_api(sqlite_db, clock) as served:
        yield served


def fields(reply: Reply) -> list[str | None]:
    return [d["field"] for d in reply.body["error"]["details"]]


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.text
    assert set(reply.body) == {"error"}
    assert set(reply.body["error"]) == {"code", "message", "details"}
    assert reply.body["error"]["code"] == code
    assert reply.body["error"]["message"]


async def scheduled(db: Database, **where: Any) -> list[Any]:
    conditions = [getattr(OutboundMessage, k) == v for k, v in where.items()]
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(OutboundMessage.id, OutboundMessage.step_id, OutboundMessage.due_at)
            .where(OutboundMessage.status == "scheduled", *conditions)
            .order_by(OutboundMessage.due_at)
        )
        return list(rows)


# --- sequences --------------------------------------------------------------------------


async def test_create_answers_the_sequence_with_its_steps(api: Api) -> None:
    body = await api.sequence()
    assert body["name"] == "Welcome"
    assert body["description"] == "New leads"
    assert body["status"] == "active"
    assert body["send_window"] is None and body["keyword"] is None
    assert body["stop_on_reply"] is False
    assert body["enrollments"]["total"] == 0
    steps = body["steps"]
    assert [(s["number"], s["day"], s["at"], s["after"]) for s in steps] == [
        (1, 1, None, None),
        (2, None, None, "2h"),
        (3, 3, "10:00", None),
    ]
    assert steps[0]["type"] == "template"
    assert steps[0]["template"] == {
        "name": "welcome",
        "language": "en",
        "params": [],
        "header": None,
    }
    assert steps[2]["message"] == "Hi {first_name|there}, a tip for you"
    # A text step two days in, without a fallback, will be skipped for most contacts.
    assert any("Day 3 at 10:00" in w for w in body["warnings"])

    listed = await api.call("GET", "/api/sequences")
    assert listed.status == 200
    assert [s["id"] for s in listed.body["sequences"]] == [body["id"]]
    one = await api.call("GET", f"/api/sequences/{body['id']}")
    assert one.status == 200 and one.body == body


async def test_create_takes_every_field(api: Api) -> None:
    body = await api.sequence(
        {
            "name": "Tips",
            "status": "paused",
            "send_window": "8:00-20:00",
            "stop_on_reply": True,
            "keyword": "join  tips",
            "steps": [
                {
                    "day": 2,
                    "type": "media",
                    "media_url": "https://example.com/tip.jpg",
                    "media_type": "image",
                    "message": "A tip, {name}",
                    "fallback_template": {
                        "name": "tip",
                        "language": "pt-br",
                        "params": ["{first_name|there}"],
                        "header": {"type": "image", "link": "https://example.com/h.jpg"},
                    },
                }
            ],
        }
    )
    assert body["status"] == "paused"
    assert body["send_window"] == "08:00-20:00"
    assert body["stop_on_reply"] is True
    assert body["keyword"] == "JOIN TIPS"
    step = body["steps"][0]
    assert step["media_url"] == "https://example.com/tip.jpg"
    assert step["fallback_template"]["language"] == "pt_BR"
    assert step["fallback_template"]["header"] == {
        "type": "image",
        "link": "https://example.com/h.jpg",
    }
    assert body["warnings"] == []


async def test_a_duplicate_name_is_a_conflict(api: Api) -> None:
    await api.sequence()
    reply = await api.call("POST", "/api/sequences", {"name": "  welcome ", "steps": []})
    assert_error(reply, 409, "conflict")
    await api.sequence({"name": "Other", "keyword": "JOIN"})
    reply = await api.call("POST", "/api/sequences", {"name": "Third", "keyword": "join"})
    assert_error(reply, 409, "conflict")
    assert "keyword" in reply.body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"nmae": "x", "name": "x"}, "nmae"),
        ({"name": "x", "stop_on_reply": "yes"}, "stop_on_reply"),
        ({"name": "x", "status": "gone"}, "status"),
        ({"name": "x", "send_window": "25:00-26:00"}, "send_window"),
        ({"name": "x", "send_window": "09:00-09:00"}, "send_window"),
        ({"name": "x", "send_window": "9-5"}, "send_window"),
        ({"name": "x", "keyword": "STOP"}, "keyword"),
        ({"name": "x", "keyword": "start"}, "keyword"),
        ({"name": "x\u0000"}, "name"),
        ({"name": "x", "steps": [{"message": "hi"}]}, "steps[0].day"),
        ({"name": "x", "steps": [{"day": 1, "after": "2h", "message": "hi"}]}, "steps[0].after"),
        ({"name": "x", "steps": [{"after": "2h", "at": "10:00", "message": "hi"}]}, "steps[0].at"),
        ({"name": "x", "steps": [{"after": "2 weeks", "message": "hi"}]}, "steps[0].after"),
        ({"name": "x", "steps": [{"after": "9999d", "message": "hi"}]}, "steps[0].after"),
        ({"name": "x", "steps": [{"day": 0, "message": "hi"}]}, "steps[0].day"),
        ({"name": "x", "steps": [{"day": 1, "at": "24:00", "message": "hi"}]}, "steps[0].at"),
        ({"name": "x", "steps": [{"day": 1, "message": "  "}]}, "steps[0].message"),
        ({"name": "x", "steps": [{"day": 1, "message": "Hi {name"}]}, "steps[0].message"),
        ({"name": "x", "steps": [{"day": 1, "type": "media"}]}, "steps[0].media_url"),
        (
            {
                "name": "x",
                "steps": [
                    {
                        "day": 1,
                        "type": "media",
                        "media_type": "audio",
                        "media_url": "https://e.com/a.ogg",
                        "message": "caption",
                    }
                ],
            },
            "steps[0].message",
        ),
        (
            {
                "name": "x",
                "steps": [
                    {"day": 1, "type": "media", "media_type": "image", "media_url": "ftp://x"}
                ],
            },
            "steps[0].media_url",
        ),
        ({"name": "x", "steps": [{"day": 1, "type": "template"}]}, "steps[0].template"),
        (
            {
                "name": "x",
                "steps": [
                    {"day": 1, "type": "template", "template": {"name": "Bad!", "language": "en"}}
                ],
            },
            "steps[0].template.name",
        ),
        (
            {
                "name": "x",
                "steps": [
                    {"day": 1, "type": "template", "template": {"name": "w", "language": "e"}}
                ],
            },
            "steps[0].template.language",
        ),
        (
            {
                "name": "x",
                "steps": [
                    {
                        "day": 1,
                        "type": "template",
                        "template": {"name": "w", "language": "en", "params": [" "]},
                    }
                ],
            },
            "steps[0].template.params[0]",
        ),
        (
            {
                "name": "x",
                "steps": [
                    {"day": 1, "message": "a"},
                    {"day": 2, "message": "b", "media_type": "image"},
                ],
            },
            "steps[1].media_type",
        ),
    ],
)
async def test_a_bad_sequence_is_422_naming_the_field(
    sqlite_api: Api, body: dict[str, Any], field: str
) -> None:
    reply = await sqlite_api.call("POST", "/api/sequences", body)
    assert reply.status == 422, reply.text
    assert reply.body["error"]["code"] in ("validation_error", "invalid")
    assert field in fields(reply)
    assert field in reply.body["error"]["message"]
    listed = await sqlite_api.call("GET", "/api/sequences")
    assert listed.body["sequences"] == []


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b'{"name": "\\ud800"}', 400, "malformed_json"),
        (b"\xff\xfe", 400, "malformed_json"),
        (b"[]", 422, "validation_error"),
        (b'"Welcome"', 422, "validation_error"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(
    sqlite_api: Api, raw: bytes, status: int, code: str
) -> None:
    reply = await sqlite_api.call("POST", "/api/sequences", raw=raw)
    assert_error(reply, status, code)


async def test_sequence_ids_are_checked(api: Api) -> None:
    assert_error(await api.call("GET", "/api/sequences/999"), 404, "not_found")
    assert_error(await api.call("GET", "/api/sequences/0"), 404, "not_found")
    assert_error(await api.call("GET", "/api/sequences/" + "9" * 30), 404, "not_found")
    reply = await api.call("GET", "/api/sequences/abc")
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == ["id"]


async def test_ids_are_ids_even_when_a_name_is_digits(api: Api) -> None:
    first = await api.sequence({"name": "First", "steps": []})
    await api.sequence({"name": str(first["id"] + 1), "steps": []})
    named_like_first = await api.sequence({"name": str(first["id"]), "steps": []})
    reply = await api.call("GET", f"/api/sequences/{first['id']}")
    assert reply.body["name"] == "First"
    reply = await api.call("GET", f"/api/sequences/{named_like_first['id']}")
    assert reply.body["name"] == str(first["id"])


async def test_put_replaces_settings_and_matches_steps(api: Api) -> None:
    created = await api.sequence()
    sid = created["id"]
    enrolled = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    assert enrolled.status == 201
    before = {row.step_id: row for row in await scheduled(api.services.db)}
    step_ids = await _step_ids(api.services.db, sid)
    assert len(before) == 3

    api.services.clock.advance(hours=3)  # the "after 2h" step's time has passed
    body = {
        "name": "Welcome v2",
        "description": "edited",
        "send_window": "always",
        "stop_on_reply": True,
        "keyword": "hello",
        "steps": [
            WELCOME["steps"][0],  # unchanged: keeps its id and its pending message
            {"day": 3, "at": "11:00", "message": "Hi {first_name|there}, a tip for you"},
            {"day": 5, "type": "template", "template": {"name": "checkin", "language": "en"}},
            {"after": "1h", "message": "added, but already past for Ana"},
        ],
    }
    reply = await api.call("PUT", f"/api/sequences/{sid}", body)
    assert reply.status == 200, reply.text
    out = reply.body
    assert (out["name"], out["description"], out["send_window"]) == (
        "Welcome v2",
        "edited",
        "always",
    )
    assert (out["stop_on_reply"], out["keyword"]) == (True, "HELLO")
    assert [(s["day"], s["at"], s["after"]) for s in out["steps"]] == [
        (1, None, None),
        (None, None, "1h"),
        (3, "11:00", None),
        (5, None, None),
    ]
    # Identical steps are kept, the others paired in send order: "after 2h" became
    # "after 1h", Day 3 moved to 11:00, and Day 5 is new.
    day1, after2h, day3 = step_ids
    assert await _step_ids(api.services.db, sid) == [day1, after2h, day3, max(step_ids) + 1]
    after = {row.step_id: row for row in await scheduled(api.services.db)}
    assert after[day1] == before[day1]  # untouched
    assert after[day3].due_at == before[day3].due_at + timedelta(hours=1)  # re-timed
    assert after2h not in after  # "after 1h" is already past for Ana: never sent late
    assert after[max(step_ids) + 1].due_at == datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
    assert len(after) == 3


async def test_put_pauses_and_resumes_shifting_the_schedule(api: Api) -> None:
    created = await api.sequence()
    sid = created["id"]
    await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    before = [row.due_at for row in await scheduled(api.services.db)]
    body = WELCOME | {"status": "paused"}
    reply = await api.call("PUT", f"/api/sequences/{sid}", body)
    assert reply.body["status"] == "paused" and reply.body["paused_at"] is not None
    api.services.clock.advance(hours=5)
    reply = await api.call("PUT", f"/api/sequences/{sid}", body | {"status": "active"})
    assert reply.body["status"] == "active"
    after = [row.due_at for row in await scheduled(api.services.db)]
    assert after == [due + timedelta(hours=5) for due in before]


async def test_put_failures(api: Api) -> None:
    first = await api.sequence()
    second = await api.sequence({"name": "Second", "steps": []})
    reply = await api.call(
        "PUT", f"/api/sequences/{second['id']}", {"name": "WELCOME", "steps": []}
    )
    assert_error(reply, 409, "conflict")
    reply = await api.call("PUT", f"/api/sequences/{second['id']}", {"name": "Second"})
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == ["steps"]
    reply = await api.call("PUT", "/api/sequences/999", {"name": "X", "steps": []})
    assert_error(reply, 404, "not_found")
    await api.call("DELETE", f"/api/sequences/{first['id']}")
    reply = await api.call("PUT", f"/api/sequences/{first['id']}", WELCOME)
    assert_error(reply, 409, "conflict")
    assert "archived" in reply.body["error"]["message"]
    unchanged = await api.call("GET", f"/api/sequences/{second['id']}")
    assert unchanged.body["name"] == "Second"


async def test_delete_archives_and_stops_enrollments(api: Api) -> None:
    created = await api.sequence({**WELCOME, "keyword": "join"})
    sid = created["id"]
    await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    reply = await api.call("DELETE", f"/api/sequences/{sid}")
    assert reply.status == 204 and reply.text == ""
    again = await api.call("DELETE", f"/api/sequences/{sid}")
    assert again.status == 204
    one = await api.call("GET", f"/api/sequences/{sid}")
    assert one.body["status"] == "archived" and one.body["keyword"] is None
    assert one.body["enrollments"]["stopped"] == 1
    assert await scheduled(api.services.db) == []
    assert_error(await api.call("DELETE", "/api/sequences/999"), 404, "not_found")


# --- enrolling --------------------------------------------------------------------------


async def test_enroll_one_contact(api: Api) -> None:
    sid = (await api.sequence())["id"]
    reply = await api.call(
        "POST",
        f"/api/sequences/{sid}/enroll",
        {
            "phone": "0151 23456789",
            "name": "Ana Lima",
            "email": "ana@example.com",
            "timezone": "Europe/Lisbon",
            "custom_fields": {"plan": "gold"},
        },
    )
    assert reply.status == 201, reply.text
    out = reply.body
    assert out["status"] == "active" and out["source"] == "api"
    assert out["sequence_id"] == sid and out["sequence"] == "Welcome"
    assert out["timezone"] == "Europe/Lisbon"
    assert out["contact"]["phone"] == ANA
    assert out["contact"]["custom_fields"] == {"plan": "gold"}
    assert out["contact"]["opted_out"] is False
    assert out["next_send"]["step"] == 1
    assert out["next_send"]["due_at"] == "2026-03-02T09:00:00Z"

    again = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    assert_error(again, 409, "already_enrolled")


@pytest.mark.parametrize(
    ("contact", "field"),
    [
        ({"phone": "12"}, "phone"),
        ({"phone": "not a number"}, "phone"),
        ({"phone": ANA, "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "no phone"}, "phone"),
        ({"phone": 4915123456789}, "phone"),
        ({"phone": ANA, "custom_fields": {"plan": 3}}, "custom_fields.plan"),
        ({"phone": ANA, "force": "yes"}, "force"),
        ({"phone": ANA, "name": "x" * 201}, "name"),
    ],
)
async def test_enroll_refuses_bad_contacts_naming_the_field(
    sqlite_api: Api, contact: dict[str, Any], field: str
) -> None:
    sid = (await sqlite_api.sequence())["id"]
    reply = await sqlite_api.call("POST", f"/api/sequences/{sid}/enroll", contact)
    assert_error(reply, 422, "validation_error")
    assert field in fields(reply)
    async with sqlite_api.services.db.engine.connect() as conn:
        assert (await conn.execute(select(Enrollment.id))).first() is None


async def test_enroll_refusals(api: Api) -> None:
    sid = (await api.sequence())["id"]
    assert (await api.call("POST", "/api/public/opt-out", {"phone": BEN})).status == 200
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": BEN})
    assert_error(reply, 409, "opted_out")
    reply = await api.call("POST", "/api/sequences/999/enroll", {"phone": ANA})
    assert_error(reply, 404, "not_found")
    empty = (await api.sequence({"name": "Empty", "steps": []}))["id"]
    reply = await api.call("POST", f"/api/sequences/{empty}/enroll", {"phone": ANA})
    assert_error(reply, 422, "invalid")
    await api.call("DELETE", f"/api/sequences/{sid}")
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    assert_error(reply, 422, "invalid")
    assert "archived" in reply.body["error"]["message"]


async def test_enrolling_again_after_completion_needs_force(api: Api) -> None:
    sid = (await api.sequence())["id"]
    first = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    async with api.services.db.engine.begin() as conn:
        await conn.execute(
            update(Enrollment)
            .where(Enrollment.id == first.body["id"])
            .values(status="completed", completed_at=api.services.clock.now())
        )
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    assert_error(reply, 409, "already_enrolled")
    assert "force" in reply.body["error"]["message"]
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA, "force": True})
    assert reply.status == 201 and reply.body["id"] != first.body["id"]


async def test_bulk_enroll_reports_each_contact(api: Api) -> None:
    sid = (await api.sequence())["id"]
    await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    await api.call("POST", "/api/public/opt-out", {"phone": CARL})
    contacts = [
        {"phone": BEN, "name": "Ben"},
        {"phone": ANA},
        {"phone": "0151 23456780"},  # Ben again
        {"phone": CARL},
        {"phone": "123"},
        {"phone": "+4915123456782", "timezone": "Nowhere/Land"},
        {"phone": "+4915123456783"},
    ]
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll/bulk", {"contacts": contacts})
    assert reply.status == 200, reply.text
    out = reply.body
    assert out["sequence"] == "Welcome"
    assert out["enrolled"] == 2 and out["total"] == 7
    assert [(p["index"], p["phone"]) for p in out["already_enrolled"]] == [(1, ANA)]
    assert [(p["index"], p["phone"]) for p in out["duplicates"]] == [(2, BEN)]
    assert [(p["index"], p["phone"]) for p in out["opted_out"]] == [(3, CARL)]
    assert [p["index"] for p in out["invalid"]] == [4, 5]
    assert all(p["reason"] for p in out["invalid"])


async def test_bulk_enroll_failures(api: Api) -> None:
    sid = (await api.sequence())["id"]
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll/bulk", {"contacts": []})
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == ["contacts"]
    reply = await api.call(
        "POST", f"/api/sequences/{sid}/enroll/bulk", {"contacts": [{"phone": ANA}, {}]}
    )
    assert fields(reply) == ["contacts[1].phone"]
    reply = await api.call("POST", "/api/sequences/999/enroll/bulk", {"contacts": [{"phone": ANA}]})
    assert_error(reply, 404, "not_found")
    async with api.services.db.engine.connect() as conn:
        assert (await conn.execute(select(Enrollment.id))).first() is None


async def test_enrollments_are_paged_and_filtered(api: Api) -> None:
    sid = (await api.sequence())["id"]
    contacts = [{"phone": f"+49151234{n:05d}"} for n in range(51)]
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll/bulk", {"contacts": contacts})
    assert reply.body["enrolled"] == 51
    page1 = await api.call("GET", f"/api/sequences/{sid}/enrollments")
    assert page1.status == 200
    assert (page1.body["page"], page1.body["page_size"], page1.body["total"]) == (1, 50, 51)
    assert len(page1.body["enrollments"]) == 50
    page2 = await api.call("GET", f"/api/sequences/{sid}/enrollments?page=2")
    assert [e["contact"]["phone"] for e in page2.body["enrollments"]] == ["+4915123400050"]
    page3 = await api.call("GET", f"/api/sequences/{sid}/enrollments?page=3")
    assert page3.body["enrollments"] == [] and page3.body["total"] == 51

    paused_id = page1.body["enrollments"][0]["id"]
    await api.call("PUT", f"/api/enrollments/{paused_id}", {"status": "paused"})
    paused = await api.call("GET", f"/api/sequences/{sid}/enrollments?status=paused")
    assert [e["id"] for e in paused.body["enrollments"]] == [paused_id]
    assert paused.body["total"] == 1
    active = await api.call("GET", f"/api/sequences/{sid}/enrollments?status=active&page=2")
    assert active.body["total"] == 50 and active.body["enrollments"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=done", "status"), ("page=0", "page"), ("page=x", "page"), ("pgae=2", "pgae")],
)
async def test_enrollment_queries_are_checked(sqlite_api: Api, query: str, field: str) -> None:
    sid = (await sqlite_api.sequence())["id"]
    reply = await sqlite_api.call("GET", f"/api/sequences/{sid}/enrollments?{query}")
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == [field]
    assert_error(await sqlite_api.call("GET", "/api/sequences/999/enrollments"), 404, "not_found")


async def test_enrollment_pause_resume_stop(api: Api) -> None:
    sid = (await api.sequence())["id"]
    eid = (await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})).body["id"]
    before = [row.due_at for row in await scheduled(api.services.db)]

    paused = await api.call("PUT", f"/api/enrollments/{eid}", {"status": "paused"})
    assert paused.status == 200 and paused.body["status"] == "paused"
    assert paused.body["paused_at"] == "2026-03-02T09:00:00Z"
    again = await api.call("PUT", f"/api/enrollments/{eid}", {"status": "paused"})
    assert again.status == 200 and again.body["status"] == "paused"

    api.services.clock.advance(hours=2)
    resumed = await api.call("PUT", f"/api/enrollments/{eid}", {"status": "active"})
    assert resumed.body["status"] == "active" and resumed.body["paused_at"] is None
    after = [row.due_at for row in await scheduled(api.services.db)]
    assert after == [due + timedelta(hours=2) for due in before]

    stopped = await api.call("PUT", f"/api/enrollments/{eid}", {"status": "stopped"})
    assert stopped.body["status"] == "stopped" and stopped.body["next_send"] is None
    assert await scheduled(api.services.db) == []
    reply = await api.call("PUT", f"/api/enrollments/{eid}", {"status": "active"})
    assert_error(reply, 409, "conflict")
    reply = await api.call("PUT", f"/api/enrollments/{eid}", {"status": "stopped"})
    assert reply.status == 200


async def test_enrollment_update_failures(api: Api) -> None:
    reply = await api.call("PUT", "/api/enrollments/999", {"status": "paused"})
    assert_error(reply, 404, "not_found")
    reply = await api.call("PUT", "/api/enrollments/1", {"status": "completed"})
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == ["status"]


# --- stats ------------------------------------------------------------------------------


async def test_stats_for_all_and_for_one(api: Api) -> None:
    sid = (await api.sequence())["id"]
    other = (await api.sequence({"name": "Other", "steps": [{"day": 1, "message": "hi"}]}))["id"]
    await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    everything = await api.call("GET", "/api/stats")
    assert everything.status == 200, everything.text
    assert everything.body["sequence"] is None
    assert {s["id"] for s in everything.body["sequences"]} == {sid, other}
    assert len(everything.body["trend"]) == 14
    one = await api.call("GET", f"/api/stats?sequence_id={sid}&days=7")
    assert one.body["sequence"] == "Welcome"
    [stats] = one.body["sequences"]
    assert stats["enrollments"]["active"] == 1
    assert [step["number"] for step in stats["steps"]] == [1, 2, 3]
    assert stats["totals"]["scheduled"] == 3
    assert len(one.body["trend"]) == 7
    missing = await api.call("GET", "/api/stats?sequence_id=999")
    assert_error(missing, 404, "not_found")
    assert fields(missing) == ["sequence_id"]
    bad = await api.call("GET", "/api/stats?days=0")
    assert_error(bad, 422, "validation_error")
    assert fields(bad) == ["days"]


# --- public routes ----------------------------------------------------------------------


async def test_public_enroll_by_name_or_id(api: Api) -> None:
    sid = (await api.sequence())["id"]
    reply = await api.call(
        "POST", "/api/public/enroll", {"sequence": "welcome", "phone": ANA}, key="public"
    )
    assert reply.status == 201, reply.text
    assert reply.body == {
        "status": "enrolled",
        "phone": ANA,
        "sequence": {"id": sid, "name": "Welcome"},
    }
    reply = await api.call("POST", "/api/public/enroll", {"sequence": sid, "phone": BEN})
    assert reply.status == 201  # an admin key reaches public routes too
    reply = await api.call(
        "POST", "/api/public/enroll", {"sequence": sid, "phone": ANA}, key="public"
    )
    assert_error(reply, 409, "already_enrolled")
    reply = await api.call(
        "POST", "/api/public/enroll", {"sequence": "nope", "phone": CARL}, key="public"
    )
    assert_error(reply, 404, "not_found")
    assert fields(reply) == ["sequence"]
    reply = await api.call("POST", "/api/public/enroll", {"phone": CARL}, key="public")
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == ["sequence"]
    reply = await api.call(
        "POST", "/api/public/enroll", {"sequence": sid, "phone": "x"}, key="public"
    )
    assert fields(reply) == ["phone"]


async def test_public_opt_out(api: Api) -> None:
    sid = (await api.sequence())["id"]
    await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    reply = await api.call("POST", "/api/public/opt-out", {"phone": "0151 23456789"}, key="public")
    assert reply.status == 200, reply.text
    assert reply.body == {"phone": ANA, "opted_out": True, "already_opted_out": False}
    assert await scheduled(api.services.db) == []
    async with api.services.db.engine.connect() as conn:
        row = (await conn.execute(select(Contact).where(Contact.phone == ANA))).one()
        assert row.opted_out_at is not None and row.opt_out_source == "api"
        status = (await conn.execute(select(Enrollment.status))).scalar_one()
    assert status == "opted_out"
    assert [kind for kind, _ in api.alerts.sent] == ["opt_out"]
    assert ANA not in api.alerts.sent[0][1]  # masked

    again = await api.call("POST", "/api/public/opt-out", {"phone": ANA}, key="public")
    assert again.body["already_opted_out"] is True
    assert len(api.alerts.sent) == 1
    stranger = await api.call("POST", "/api/public/opt-out", {"phone": BEN}, key="public")
    assert stranger.body == {"phone": BEN, "opted_out": True, "already_opted_out": False}
    reply = await api.call("POST", "/api/public/opt-out", {"phone": "abc"}, key="public")
    assert_error(reply, 422, "validation_error")
    assert fields(reply) == ["phone"]


# --- keys and scopes --------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/api/sequences"),
    ("POST", "/api/sequences"),
    ("GET", "/api/sequences/1"),
    ("PUT", "/api/sequences/1"),
    ("DELETE", "/api/sequences/1"),
    ("POST", "/api/sequences/1/enroll"),
    ("POST", "/api/sequences/1/enroll/bulk"),
    ("GET", "/api/sequences/1/enrollments"),
    ("PUT", "/api/enrollments/1"),
    ("GET", "/api/stats"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_a_public_key_cannot_reach_admin_routes(
    sqlite_api: Api, method: str, path: str
) -> None:
    await sqlite_api.sequence()
    reply = await sqlite_api.call(method, path, {"name": "Hijack", "steps": []}, key="public")
    assert_error(reply, 403, "forbidden")
    unchanged = await sqlite_api.call("GET", "/api/sequences/1")
    assert unchanged.body["name"] == "Welcome" and unchanged.body["status"] == "active"


@pytest.mark.parametrize(
    ("method", "path"),
    [*ADMIN_ROUTES, ("POST", "/api/public/enroll"), ("POST", "/api/public/opt-out")],
)
async def test_every_route_needs_a_key(sqlite_api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Basic YWRtaW46YWRtaW4="}, {"Authorization": "Bearer"}):
        reply = await sqlite_api.call(method, path, {"phone": ANA}, key=None, headers=headers)
        assert_error(reply, 401, "unauthorized")
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    reply = await sqlite_api.call(method, path, {"phone": ANA}, key="drip_" + "x" * 43)
    assert_error(reply, 401, "unauthorized")
    async with sqlite_api.services.db.engine.connect() as conn:
        assert (await conn.execute(select(Contact.id))).first() is None


async def test_a_revoked_key_is_refused(api: Api) -> None:
    assert (await api.call("GET", "/api/sequences")).status == 200
    await revoke_api_key(api.services.db, api.admin_key[:12], now=api.services.clock.now())
    reply = await api.call("GET", "/api/sequences")
    assert_error(reply, 401, "unauthorized")
    reply = await api.call("POST", "/api/public/opt-out", {"phone": ANA})
    assert_error(reply, 401, "unauthorized")
    assert (
        await api.call("POST", "/api/public/opt-out", {"phone": ANA}, key="public")
    ).status == 200


async def test_the_document_needs_no_key(api: Api) -> None:
    reply = await api.call("GET", "/api/openapi.json", key=None)
    assert reply.status == 200 and reply.body["openapi"].startswith("3.1")


# --- errors -----------------------------------------------------------------------------


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    assert_error(await api.call("GET", "/api/nothing"), 404, "not_found")
    assert_error(await api.call("GET", "/api/nothing", key=None), 401, "unauthorized")
    reply = await api.call("PATCH", "/api/sequences")
    assert_error(reply, 405, "method_not_allowed")
    assert set(reply.headers["Allow"].split(", ")) == {"GET", "POST"}


async def test_a_body_over_the_limit_is_413(
    db: Database, clock: ManualClock, clean_env: None
) -> None:
    async with serve_api(db, clock, client_max_size=2048) as api:
        contacts = [{"phone": ANA, "name": "x" * 100}] * 40
        reply = await api.call("POST", "/api/sequences/1/enroll/bulk", {"contacts": contacts})
        assert_error(reply, 413, "payload_too_large")


class BrokenClock:
    def now(self) -> datetime:
        raise RuntimeError("connection to db.internal:5432 failed, password=hunter2")


async def test_an_unexpected_error_is_500_without_internals(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.services.clock = BrokenClock()
    with caplog.at_level(logging.ERROR, logger="bot.api.errors"):
        reply = await api.call("POST", "/api/sequences", WELCOME)
    assert_error(reply, 500, "internal_error")
    assert "hunter2" not in reply.text and "db.internal" not in reply.text
    assert "RuntimeError" not in reply.text
    assert any("hunter2" in (r.exc_text or "") for r in caplog.records)


async def test_routes_outside_api_are_left_alone(api: Api) -> None:
    async with aiohttp.ClientSession() as http, http.get(api.url("/elsewhere")) as response:
        assert response.status == 404
        assert response.content_type == "text/plain"


# --- rate limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hits", "expected"),
    [
        # (identity, seconds) → the answer to each hit, with a limit of 2 per 60 s
        ([("a", 0), ("a", 1), ("a", 2)], [None, None, Limited(58)]),
        ([("a", 0), ("a", 1), ("b", 2)], [None, None, None]),
        ([("a", 0), ("a", 1), ("a", 60)], [None, None, None]),
        ([("a", 0), ("a", 1), ("a", 59.5), ("a", 60.5)], [None, None, Limited(1), None]),
        (
            [("a", 0), ("a", 30), ("a", 31), ("a", 31), ("a", 90)],
            [None, None, Limited(29), Limited(29), None],
        ),
    ],
)
def test_sliding_window(hits: list[tuple[str, float]], expected: list[Limited | None]) -> None:
    limiter = SlidingWindowLimiter(2)
    assert [limiter.hit(identity, at) for identity, at in hits] == expected


def test_the_limiter_forgets_idle_callers_first() -> None:
    limiter = SlidingWindowLimiter(1, max_identities=3)
    for n, identity in enumerate("abc"):
        limiter.hit(identity, n)
    assert limiter.hit("d", 100) is None  # a, b and c are idle by now
    assert len(limiter) == 1
    assert limiter.hit("d", 101) == Limited(59)


async def test_public_routes_are_limited_per_key_and_per_address(
    db: Database, clock: ManualClock, clean_env: None
) -> None:
    async with serve_api(db, clock, rate_per_minute=3) as api:
        other = (await create_api_key(db, scope="public", name="b", now=clock.now())).plaintext

        async def opt_out(key: str, source: str) -> Reply:
            return await api.call(
                "POST", "/api/public/opt-out", {"phone": ANA}, key=key, source=source
            )

        for _ in range(3):
            assert (await opt_out(api.public_key, "127.0.0.1")).status == 200
        limited = await opt_out(api.public_key, "127.0.0.1")
        assert_error(limited, 429, "rate_limited")
        assert limited.headers["Retry-After"] == "60"
        # Per key: the same key from a fresh address is still limited.
        assert (await opt_out(api.public_key, "127.0.0.2")).status == 429
        # Per address: a fresh key from the busy address is limited too...
        assert (await opt_out(other, "127.0.0.1")).status == 429
        # ...and gets through from elsewhere.
        assert (await opt_out(other, "127.0.0.3")).status == 200
        # Admin routes are not limited.
        for _ in range(5):
            assert (await api.call("GET", "/api/sequences")).status == 200

        clock.advance(seconds=60)
        assert (await opt_out(api.public_key, "127.0.0.1")).status == 200


async def test_requests_without_a_key_count_against_the_address(
    db: Database, clock: ManualClock, clean_env: None
) -> None:
    async with serve_api(db, clock, rate_per_minute=2) as api:
        for _ in range(2):
            reply = await api.call("POST", "/api/public/enroll", {}, key="drip_guess")
            assert reply.status == 401
        reply = await api.call("POST", "/api/public/enroll", {}, key="drip_guess")
        assert_error(reply, 429, "rate_limited")
        assert int(reply.headers["Retry-After"]) == 60


async def _step_ids(db: Database, sequence_id: int) -> list[int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(Step.id)
            .where(Step.sequence_id == sequence_id, Step.deleted_at.is_(None))
            .order_by(Step.position)
        )
        return list(rows.scalars())


async def test_names_made_of_other_digits_are_names(api: Api) -> None:
    missing = await api.call("POST", "/api/public/enroll", {"sequence": "²", "phone": ANA})
    assert_error(missing, 404, "not_found")
    sid = (await api.sequence({**WELCOME, "name": "²"}))["id"]
    reply = await api.call("POST", "/api/public/enroll", {"sequence": "²", "phone": ANA})
    assert reply.status == 201 and reply.body["sequence"] == {"id": sid, "name": "²"}
    reply = await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": BEN})
    assert reply.status == 201
    paused = await api.call("PUT", f"/api/enrollments/{reply.body['id']}", {"status": "paused"})
    assert paused.body["status"] == "paused"
    stats = await api.call("GET", f"/api/stats?sequence_id={sid}")
    assert stats.body["sequence"] == "²"
    assert (await api.call("DELETE", f"/api/sequences/{sid}")).status == 204


async def test_put_can_archive(api: Api) -> None:
    sid = (await api.sequence())["id"]
    await api.call("POST", f"/api/sequences/{sid}/enroll", {"phone": ANA})
    reply = await api.call("PUT", f"/api/sequences/{sid}", WELCOME | {"status": "archived"})
    assert reply.status == 200 and reply.body["status"] == "archived"
    assert reply.body["enrollments"]["stopped"] == 1
    assert await scheduled(api.services.db) == []
