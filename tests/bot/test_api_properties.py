"""Property-based: schemathesis reads the served OpenAPI document, generates requests for every
operation (valid ones and ones that break the schema) and checks each answer against it.

No answer may be a 5xx, and none may contradict the document: an undocumented status, a
body that does not fit its schema, a missing documented header, a wrong content type.
Requests that break the schema must be refused with a 4xx. The run is bounded and
derandomized, so it takes seconds and fails the same way every time it fails.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scheduler.clock import ManualClock
from storage.database import Database
from tests.bot.test_api import ANA, WELCOME, serve_api

#: examples per operation and generation mode
EXAMPLES = 20
#: a body over the size limit is refused with 413 before it is read, whatever it holds
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [
                    *("400", "401", "403", "404", "405", "406", "409", "413", "415", "422"),
                    *("428", "429", "5xx"),
                ]
            }
        }
    }
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def negative_data_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """``negative_data_rejection`` less one false alarm: a made-up query parameter whose value
    is an empty list or None never reaches the server (the HTTP client drops it), so the
    request that arrives is valid and rightly accepted."""
    if any(value == [] or value is None for value in (case.query or {}).values()):
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


def run(
    operation: Any, mode: GenerationMode, base_url: str, session: requests.Session, headers: Any
) -> None:
    checks = [*CHECKS, negative_data_refused] if mode.is_negative else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=checks)

    call()


def explore(base_url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation of the served document in both modes; what was exercised."""
    ran = []
    with requests.Session() as session:
        document = session.get(f"{base_url}/api/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(document, config=CONFIG)
        for result in schema.get_all_operations():
            operation = result.ok()
            spec = document["paths"][operation.path][operation.method.lower()]
            modes = [GenerationMode.POSITIVE]
            if "parameters" in spec or "requestBody" in spec:  # else nothing can be broken
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                run(operation, mode, base_url, session, headers)
                ran.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    return ran


@pytest.mark.parametrize("key", ["admin", "public"])
async def test_no_answer_contradicts_the_document(
    sqlite_db: Database, clock: ManualClock, clean_env: None, key: str
) -> None:
    async with serve_api(sqlite_db, clock, rate_per_minute=1_000_000) as api:
        # Something to find: generated ids and names now and then hit real records.
        first = await api.sequence()
        await api.sequence({"name": "1", "keyword": "join", "steps": WELCOME["steps"][:1]})
        await api.call("POST", f"/api/sequences/{first['id']}/enroll", {"phone": ANA})
        headers = api.auth(key)
        ran = await asyncio.to_thread(explore, api.url("").rstrip("/"), headers)
    assert len(ran) == 2 * 13 - 2  # GET /api/sequences and the document take no input
