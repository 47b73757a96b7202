"""The sequence routes: list, read, create, replace and archive, with their table entries.

A sequence body is checked as a whole before anything is written, so a client learns every
problem of a body at once and a refused body changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.api.common_schemas import FieldProblem, InvalidFields
from bot.api.handling import answer, path_id, read_body, services_of
from bot.api.openapi import Answer, Operation
from bot.api.sequence_schemas import (
    SequenceIn,
    SequenceListOut,
    SequenceOut,
    SequenceReplaceIn,
    check_keyword,
    check_name,
    normalized_window,
    sequence_out,
)
from bot.api.step_schemas import to_specs
from bot.services import Services
from scheduler.sequence_records import list_sequences, load_steps
from scheduler.sequence_replace import (
    engine_ref,
    enrollment_counts,
    replace_sequence,
    sequence_by_id,
)
from scheduler.sequence_status import set_status
from scheduler.sequences import create_sequence
from scheduler.step_edits import window_warnings
from scheduler.steps import StepSpec
from storage.states import SequenceStatus


async def _sequence_out(services: Services, sequence_id: int) -> SequenceOut:
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
        steps = await load_steps(conn, sequence_id)
        counts = await enrollment_counts(conn, [sequence_id])
    warnings = window_warnings([step.spec for step in steps], has_keyword=bool(record.keyword))
    return sequence_out(record, steps, counts[sequence_id], warnings)


async def list_all(request: web.Request) -> web.Response:
    services = services_of(request)
    out = []
    async with services.db.engine.connect() as conn:
        records = await list_sequences(conn, services.db.workspace_id)
        counts = await enrollment_counts(conn, [r.id for r in records])
        for record in records:
            steps = await load_steps(conn, record.id)
            warnings = window_warnings([x.spec for x in steps], has_keyword=bool(record.keyword))
            out.append(sequence_out(record, steps, counts[record.id], warnings))
    return answer(SequenceListOut(sequences=out))


async def get_one(request: web.Request) -> web.Response:
    return answer(await _sequence_out(services_of(request), path_id(request)))


@dataclass(frozen=True)
class _SequenceValues:
    name: str
    send_window: str | None
    keyword: str | None
    specs: list[StepSpec]


def _sequence_values(body: SequenceIn) -> _SequenceValues:
    """Every engine-level check of a sequence body at once, so all problems come back."""
    problems: list[FieldProblem] = []
    values: dict[str, Any] = {}
    checks: list[tuple[str, Any]] = [
        ("name", lambda: check_name(body.name)),
        ("send_window", lambda: normalized_window(body.send_window)),
        ("keyword", lambda: check_keyword(body.keyword)),
        ("specs", lambda: to_specs(body.steps)),
    ]
    for name, check in checks:
        try:
            values[name] = check()
        except InvalidFields as err:
            problems.extend(err.problems)
    if problems:
        raise InvalidFields(problems)
    return _SequenceValues(**values)


async def create(request: web.Request) -> web.Response:
    services = services_of(request)
    body = await read_body(request, SequenceIn)
    values = _sequence_values(body)
    now = services.clock.now()
    created = await create_sequence(
        services.db,
        values.name,
        values.specs,
        now=now,
        description=body.description,
        send_window=values.send_window,
        stop_on_reply=body.stop_on_reply,
        keyword=values.keyword,
    )
    if body.status != "active":
        await set_status(
            services.db,
            engine_ref(created.sequence.name, created.sequence.id),
            SequenceStatus(body.status),
            now=now,
        )
    return answer(await _sequence_out(services, created.sequence.id), 201)


async def replace(request: web.Request) -> web.Response:
    services = services_of(request)
    sequence_id = path_id(request)
    body = await read_body(request, SequenceReplaceIn)
    values = _sequence_values(body)
    await replace_sequence(
        services.db,
        sequence_id,
        name=values.name,
        description=body.description,
        status=SequenceStatus(body.status),
        send_window=values.send_window,
        stop_on_reply=body.stop_on_reply,
        keyword=values.keyword,
        steps=values.specs,
        now=services.clock.now(),
        options=services.options,
    )
    return answer(await _sequence_out(services, sequence_id))


async def archive(request: web.Request) -> web.Response:
    services = services_of(request)
    sequence_id = path_id(request)
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
    if record.status != SequenceStatus.ARCHIVED:
        await set_status(
            services.db,
            engine_ref(record.name, record.id),
            SequenceStatus.ARCHIVED,
            now=services.clock.now(),
        )
    return web.Response(status=204)


# --- the table --------------------------------------------------------------------------


SEQUENCE_NOT_FOUND = "No sequence with this id."

SEQUENCE_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/sequences",
        list_all,
        "listSequences",
        "List every sequence (archived ones too)",
        {200: Answer("The sequences, oldest first.", SequenceListOut)},
    ),
    Operation(
        "POST",
        "/api/sequences",
        create,
        "createSequence",
        "Create a sequence",
        {201: Answer("The new sequence.", SequenceOut)},
        body=SequenceIn,
        errors={409: "Another sequence has this name or keyword."},
    ),
    Operation(
        "GET",
        "/api/sequences/{id}",
        get_one,
        "getSequence",
        "One sequence with its steps",
        {200: Answer("The sequence.", SequenceOut)},
        errors={404: SEQUENCE_NOT_FOUND},
    ),
    Operation(
        "PUT",
        "/api/sequences/{id}",
        replace,
        "replaceSequence",
        "Replace a sequence: settings, status and steps",
        {200: Answer("The sequence as it is now.", SequenceOut)},
        body=SequenceReplaceIn,
        errors={
            404: SEQUENCE_NOT_FOUND,
            409: "Another sequence has this name or keyword, or this one is archived.",
        },
        description="Steps left unchanged keep their history; edits reach only messages "
        "not yet sent, and a step whose time has passed for a contact is not sent.",
    ),
    Operation(
        "DELETE",
        "/api/sequences/{id}",
        archive,
        "archiveSequence",
        "Archive a sequence (history stays; its enrollments stop)",
        {204: Answer("Archived (or already archived).")},
        errors={404: SEQUENCE_NOT_FOUND},
    ),
)
