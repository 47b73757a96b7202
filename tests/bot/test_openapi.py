"""The OpenAPI document: valid OpenAPI 3.1, served without a key, and exactly the routes the
router serves, each with the errors it can answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from bot.api import setup_api
from bot.api.openapi import build_document
from bot.api.routes import OPERATIONS
from scheduler.clock import ManualClock
from storage.database import Database
from tests.bot.test_api import WELCOME, Api, serve_api

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
async def api(sqlite_db: Database, clock: ManualClock, clean_env: None) -> AsyncIterator[Api]:
    async with serve_api(sqlite_db, clock) as served:
        yield served


@pytest.fixture
async def document(api: Api) -> dict[str, Any]:
    reply = await api.call("GET", "/api/openapi.json", key=None)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    return dict(reply.body)


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A response schema with ``components`` attached, for jsonschema."""
    return {**schema, "components": document["components"]}


def test_the_document_is_valid_openapi_3_1() -> None:
    document = build_document(OPERATIONS)
    assert document["openapi"] == "3.1.0"
    validate(document)
    json.dumps(document)  # plain JSON, nothing left unserializable


async def test_the_served_document_is_the_generated_one(document: dict[str, Any]) -> None:
    assert document == json.loads(json.dumps(build_document(OPERATIONS)))


async def test_the_document_and_the_router_list_the_same_routes(
    api: Api, document: dict[str, Any]
) -> None:
    app: web.Application = api.server.app
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api")
    }
    assert routed == set(operations(document))
    assert len(routed) == 13


def test_setup_registers_only_api_routes() -> None:
    app = web.Application()
    setup_api(app)
    paths = {route.resource.canonical for route in app.router.routes() if route.resource}
    assert all(path.startswith("/api/") for path in paths)
    assert {route.method for route in app.router.routes()} <= {"GET", "POST", "PUT", "DELETE"}


async def test_every_route_documents_its_errors(document: dict[str, Any]) -> None:
    for (method, path), op in operations(document).items():
        responses = op["responses"]
        statuses = set(responses)
        assert "500" in statuses, (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorOut", (method, path, status)
        if path == "/api/openapi.json":
            assert op["security"] == [] and statuses == {"200", "500"}
            continue
        assert op["security"] == [{"bearer": []}]
        assert "WWW-Authenticate" in responses["401"]["headers"]
        public = path.startswith("/api/public/")
        assert ("403" in statuses) is not public, (method, path)
        assert ("429" in statuses) is public, (method, path)
        if public:
            assert responses["429"]["headers"]["Retry-After"]["required"] is True
        if "requestBody" in op:
            assert {"400", "413", "422"} <= statuses, (method, path)
        if "{id}" in path:
            assert {"404", "422"} <= statuses, (method, path)
        assert any(s.startswith("2") for s in statuses)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key made with `dripbot apikey create`.",
    }


async def test_request_schemas_follow_the_spec_bodies(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    step = schemas["StepIn"]["properties"]
    assert set(step) == {
        "day",
        "at",
        "after",
        "type",
        "message",
        "media_url",
        "media_type",
        "template",
        "fallback_template",
    }
    assert set(schemas["TemplateIn"]["properties"]) >= {"name", "language", "params"}
    sequence = schemas["SequenceIn"]["properties"]
    assert set(sequence) == {
        "name",
        "description",
        "status",
        "send_window",
        "stop_on_reply",
        "keyword",
        "steps",
    }
    contact = set(schemas["ContactIn"]["properties"])
    assert contact == {
        "phone",
        "name",
        "first_name",
        "email",
        "company",
        "timezone",
        "custom_fields",
    }
    assert set(schemas["EnrollIn"]["properties"]) == contact | {"force"}
    assert set(schemas["PublicEnrollIn"]["properties"]) == contact | {"sequence"}
    assert set(schemas["BulkEnrollIn"]["properties"]) == {"contacts", "force"}
    assert set(schemas["OptOutIn"]["properties"]) == {"phone"}
    assert schemas["EnrollmentUpdateIn"]["properties"]["status"]["enum"] == [
        "active",
        "paused",
        "stopped",
    ]
    assert "steps" in schemas["SequenceReplaceIn"]["required"]
    ops = operations(document)
    assert [p["name"] for p in ops[("GET", "/api/sequences/{id}/enrollments")]["parameters"]] == [
        "id",
        "status",
        "page",
    ]
    assert [p["name"] for p in ops[("GET", "/api/stats")]["parameters"]] == ["sequence_id", "days"]


async def test_real_answers_fit_their_documented_schemas(
    api: Api, document: dict[str, Any]
) -> None:
    """A hand-picked walk through the API, each answer checked against the document."""
    ops = operations(document)

    async def check(method: str, path: str, template: str, body: Any = None) -> Any:
        reply = await api.call(method, path, body, key="admin")
        response = ops[(method, template)]["responses"][str(reply.status)]
        if "content" in response:
            schema = response["content"]["application/json"]["schema"]
            jsonschema.validate(reply.body, resolve(document, schema))
        return reply.body

    created = await check("POST", "/api/sequences", "/api/sequences", WELCOME)
    sid = created["id"]
    await check("POST", "/api/sequences", "/api/sequences", WELCOME)  # 409
    await check("GET", "/api/sequences", "/api/sequences")
    await check("GET", f"/api/sequences/{sid}", "/api/sequences/{id}")
    enrollment = await check(
        "POST", f"/api/sequences/{sid}/enroll", "/api/sequences/{id}/enroll", {"phone": "0"}
    )
    enrollment = await check(
        "POST",
        f"/api/sequences/{sid}/enroll",
        "/api/sequences/{id}/enroll",
        {"phone": "+4915123456789"},
    )
    await check(
        "POST",
        f"/api/sequences/{sid}/enroll/bulk",
        "/api/sequences/{id}/enroll/bulk",
        {"contacts": [{"phone": "+4915123456780"}, {"phone": "1"}]},
    )
    await check(
        "GET", f"/api/sequences/{sid}/enrollments?page=1", "/api/sequences/{id}/enrollments"
    )
    await check(
        "PUT", f"/api/enrollments/{enrollment['id']}", "/api/enrollments/{id}", {"status": "paused"}
    )
    await check("GET", f"/api/stats?sequence_id={sid}", "/api/stats")
    await check("PUT", f"/api/sequences/{sid}", "/api/sequences/{id}", WELCOME)
    await check("POST", "/api/public/enroll", "/api/public/enroll", {"sequence": sid})
    await check("POST", "/api/public/opt-out", "/api/public/opt-out", {"phone": "+4915123456781"})
    await check("DELETE", f"/api/sequences/{sid}", "/api/sequences/{id}")
