"""The REST API under ``/api``: its route table, its handlers and its gatekeeping.

The table (:data:`OPERATIONS`) is the single list of routes: :func:`setup_api` registers
exactly these with the router and the OpenAPI document is generated from the same list.
Handlers validate with the models of :mod:`bot.api.schemas`, call the engine, and answer
with those models again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.api import schemas as s
from bot.api.errors import ApiError, Handler, error_middleware, invalid_request, is_api_path
from bot.api.openapi import Answer, Operation, build_document
from bot.api.ratelimit import SlidingWindowLimiter
from bot.services import SERVICES, Services
from handlers.stats import collect_stats
from scheduler.contacts import find_contact, opt_out_number, set_enrollment_status
from scheduler.enrollment import EnrollReport, enroll
from scheduler.errors import NotFound
from scheduler.phones import mask_phone
from scheduler.sequence_replace import (
    MAX_ID,
    engine_ref,
    enrollment_by_id,
    enrollment_counts,
    enrollment_page,
    replace_sequence,
    sequence_by_id,
    sequence_by_name,
)
from scheduler.sequences import (
    create_sequence,
    list_sequences,
    load_steps,
    set_status,
    window_warnings,
)
from scheduler.steps import StepSpec
from storage.api_keys import ApiKeyRecord, verify_api_key
from storage.states import EnrollmentStatus, SequenceStatus

M = TypeVar("M", bound=BaseModel)

OPENAPI_PATH = "/api/openapi.json"


@dataclass
class ApiState:
    """What the API keeps between requests: the served document and the rate limiter.

    The limiter is made on first use, when the settings are known (they arrive with the
    services at start-up, after the routes are set up).
    """

    document: bytes
    limiter: SlidingWindowLimiter | None = None


API_STATE: web.AppKey[ApiState] = web.AppKey("api_state", ApiState)
#: the key that authenticated a request
API_KEY: web.RequestKey[ApiKeyRecord] = web.RequestKey("api_key", ApiKeyRecord)


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


# --- reading requests -------------------------------------------------------------------


async def read_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise invalid_request(err) from None


def read_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as err:
        raise invalid_request(err) from None


def path_id(request: web.Request, name: str = "id") -> int:
    text = request.match_info[name]
    if not (text.isascii() and text.isdigit()):
        raise ApiError(
            422,
            f"{name}: expected a positive whole number, got {text!r}",
            details=[s.FieldProblem(field=name, message="expected a positive whole number")],
        )
    value = int(text) if len(text) <= 20 else MAX_ID + 1
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, f"nothing has the id {text}")
    return value


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, body=s.dump(model), content_type="application/json")


# --- sequences --------------------------------------------------------------------------


async def _sequence_out(services: Services, sequence_id: int) -> s.SequenceOut:
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
        steps = await load_steps(conn, sequence_id)
        counts = await enrollment_counts(conn, [sequence_id])
    warnings = window_warnings([step.spec for step in steps], has_keyword=bool(record.keyword))
    return s.sequence_out(record, steps, counts[sequence_id], warnings)


async def list_all(request: web.Request) -> web.Response:
    services = _services(request)
    out = []
    async with services.db.engine.connect() as conn:
        records = await list_sequences(conn, services.db.workspace_id)
        counts = await enrollment_counts(conn, [r.id for r in records])
        for record in records:
            steps = await load_steps(conn, record.id)
            warnings = window_warnings([x.spec for x in steps], has_keyword=bool(record.keyword))
            out.append(s.sequence_out(record, steps, counts[record.id], warnings))
    return answer(s.SequenceListOut(sequences=out))


async def get_one(request: web.Request) -> web.Response:
    return answer(await _sequence_out(_services(request), path_id(request)))


@dataclass(frozen=True)
class _SequenceValues:
    name: str
    send_window: str | None
    keyword: str | None
    specs: list[StepSpec]


def _sequence_values(body: s.SequenceIn) -> _SequenceValues:
    """Every engine-level check of a sequence body at once, so all problems come back."""
    problems: list[s.FieldProblem] = []
    values: dict[str, Any] = {}
    checks: list[tuple[str, Any]] = [
        ("name", lambda: s.check_name(body.name)),
        ("send_window", lambda: s.normalized_window(body.send_window)),
        ("keyword", lambda: s.check_keyword(body.keyword)),
        ("specs", lambda: s.to_specs(body.steps)),
    ]
    for name, check in checks:
        try:
            values[name] = check()
        except s.InvalidFields as err:
            problems.extend(err.problems)
    if problems:
        raise s.InvalidFields(problems)
    return _SequenceValues(**values)


async def create(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request, s.SequenceIn)
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
    services = _services(request)
    sequence_id = path_id(request)
    body = await read_body(request, s.SequenceReplaceIn)
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
    services = _services(request)
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


# --- enrollments ------------------------------------------------------------------------


def _refusal(report: EnrollReport) -> ApiError | None:
    """Why the one contact of ``report`` was not enrolled, as the error to answer."""
    if report.opted_out.lines:
        return ApiError(
            409, "this number opted out; it is never enrolled or messaged", code="opted_out"
        )
    if report.already_enrolled.lines:
        return ApiError(409, report.already_enrolled.lines[0].reason, code="already_enrolled")
    if report.invalid.lines:
        reason = report.invalid.lines[0].reason
        return ApiError(
            422, f"phone: {reason}", details=[s.FieldProblem(field="phone", message=reason)]
        )
    return None


async def _enroll_one(
    services: Services, sequence: str | int, contact: s.ContactIn, *, force: bool
) -> tuple[int, str]:
    """Enroll one contact; its enrollment id and number, or the error saying why not."""
    phone = s.check_contact(contact, services.options.default_region)
    report = await enroll(
        services.db,
        sequence,
        [s.to_contact(contact)],
        now=services.clock.now(),
        options=services.options,
        force=force,
        source="api",
    )
    refusal = _refusal(report)
    if refusal is not None:
        raise refusal
    return report.enrolled_ids[0][1], phone


async def enroll_one(request: web.Request) -> web.Response:
    services = _services(request)
    sequence_id = path_id(request)
    body = await read_body(request, s.EnrollIn)
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
    enrollment_id, _ = await _enroll_one(
        services, engine_ref(record.name, record.id), body, force=body.force
    )
    async with services.db.engine.connect() as conn:
        detail = await enrollment_by_id(conn, services.db.workspace_id, enrollment_id)
    return answer(s.enrollment_out(detail), 201)


async def enroll_bulk(request: web.Request) -> web.Response:
    services = _services(request)
    sequence_id = path_id(request)
    body = await read_body(request, s.BulkEnrollIn)
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
    report = await enroll(
        services.db,
        engine_ref(record.name, record.id),
        [s.to_contact(contact, index=i) for i, contact in enumerate(body.contacts)],
        now=services.clock.now(),
        options=services.options,
        force=body.force,
        source="api",
    )
    return answer(s.report_out(report))


async def enrollments(request: web.Request) -> web.Response:
    services = _services(request)
    sequence_id = path_id(request)
    query = read_query(request, s.EnrollmentsQuery)
    status = EnrollmentStatus(query.status) if query.status is not None else None
    async with services.db.engine.connect() as conn:
        await sequence_by_id(conn, services.db.workspace_id, sequence_id)
        total, details = await enrollment_page(
            conn,
            services.db.workspace_id,
            sequence_id,
            status=status,
            offset=(query.page - 1) * s.PAGE_SIZE,
            limit=s.PAGE_SIZE,
        )
    page = s.EnrollmentPageOut(
        enrollments=[s.enrollment_out(d) for d in details],
        page=query.page,
        page_size=s.PAGE_SIZE,
        total=total,
    )
    return answer(page)


async def update_enrollment(request: web.Request) -> web.Response:
    services = _services(request)
    enrollment_id = path_id(request)
    body = await read_body(request, s.EnrollmentUpdateIn)
    wanted = EnrollmentStatus(body.status)
    db = services.db
    async with db.engine.connect() as conn:
        detail = await enrollment_by_id(conn, db.workspace_id, enrollment_id)
    if detail.status != wanted:
        if detail.status not in (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED):
            raise ApiError(
                409,
                f"enrollment {enrollment_id} has ended ({detail.status}); enroll the contact "
                "again to restart it",
            )
        contact = detail.contact.phone or detail.contact.user_id or ""
        await set_enrollment_status(
            db,
            engine_ref(detail.sequence, detail.sequence_id),
            contact,
            wanted,
            now=services.clock.now(),
            region=services.options.default_region,
        )
        async with db.engine.connect() as conn:
            detail = await enrollment_by_id(conn, db.workspace_id, enrollment_id)
    return answer(s.enrollment_out(detail))


# --- stats ------------------------------------------------------------------------------


async def stats(request: web.Request) -> web.Response:
    services = _services(request)
    query = read_query(request, s.StatsQuery)
    name = None
    if query.sequence_id is not None:
        async with services.db.engine.connect() as conn:
            try:
                record = await sequence_by_id(conn, services.db.workspace_id, query.sequence_id)
            except NotFound as err:
                raise ApiError(
                    404, str(err), details=[s.FieldProblem(field="sequence_id", message=str(err))]
                ) from None
        name = str(engine_ref(record.name, record.id))
    report = await collect_stats(
        services.db,
        services.clock.now(),
        sequence=name,
        days=query.days,
        timezone=services.settings.timezone,
    )
    return answer(s.stats_out(report))


# --- public -----------------------------------------------------------------------------


async def public_enroll(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request, s.PublicEnrollIn)
    db = services.db
    async with db.engine.connect() as conn:
        try:
            if isinstance(body.sequence, int):
                record = await sequence_by_id(conn, db.workspace_id, body.sequence)
            else:
                found = await sequence_by_name(conn, db.workspace_id, body.sequence)
                if found is None and body.sequence.isascii() and body.sequence.isdigit():
                    found = await sequence_by_id(conn, db.workspace_id, int(body.sequence))
                if found is None:
                    raise NotFound(f"no sequence named {body.sequence!r}")
                record = found
        except NotFound as err:
            raise ApiError(
                404, str(err), details=[s.FieldProblem(field="sequence", message=str(err))]
            ) from None
    _, phone = await _enroll_one(services, engine_ref(record.name, record.id), body, force=False)
    out = s.PublicEnrollOut(
        status="enrolled", phone=phone, sequence=s.SequenceRefOut(id=record.id, name=record.name)
    )
    return answer(out, 201)


async def public_opt_out(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request, s.OptOutIn)
    db, region = services.db, services.options.default_region
    phone = s.check_contact(s.ContactIn(phone=body.phone), region)
    now = services.clock.now()
    async with db.engine.connect() as conn:
        try:
            known: int | None = (await find_contact(conn, db.workspace_id, phone, region)).id
        except NotFound:
            known = None
    if known is None:
        _, changed = await opt_out_number(db, phone, now=now, region=region, source="api")
    else:
        # The contact's send lock: no message can leave after this opt-out commits.
        async with services.locks.hold(known):
            _, changed = await opt_out_number(db, phone, now=now, region=region, source="api")
    if changed:
        await services.alerts.alert(
            f"{mask_phone(phone)} opted out through the REST API: every sequence stopped and "
            "pending messages cancelled.",
            kind="opt_out",
        )
    return answer(s.OptOutOut(phone=phone, opted_out=True, already_opted_out=not changed))


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[API_STATE].document, content_type="application/json")


# --- the table --------------------------------------------------------------------------

_NOT_FOUND = "No sequence with this id."

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/api/sequences",
        list_all,
        "listSequences",
        "List every sequence (archived ones too)",
        {200: Answer("The sequences, oldest first.", s.SequenceListOut)},
    ),
    Operation(
        "POST",
        "/api/sequences",
        create,
        "createSequence",
        "Create a sequence",
        {201: Answer("The new sequence.", s.SequenceOut)},
        body=s.SequenceIn,
        errors={409: "Another sequence has this name or keyword."},
    ),
    Operation(
        "GET",
        "/api/sequences/{id}",
        get_one,
        "getSequence",
        "One sequence with its steps",
        {200: Answer("The sequence.", s.SequenceOut)},
        errors={404: _NOT_FOUND},
    ),
    Operation(
        "PUT",
        "/api/sequences/{id}",
        replace,
        "replaceSequence",
        "Replace a sequence: settings, status and steps",
        {200: Answer("The sequence as it is now.", s.SequenceOut)},
        body=s.SequenceReplaceIn,
        errors={
            404: _NOT_FOUND,
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
        errors={404: _NOT_FOUND},
    ),
    Operation(
        "POST",
        "/api/sequences/{id}/enroll",
        enroll_one,
        "enrollContact",
        "Enroll one contact",
        {201: Answer("The new enrollment.", s.EnrollmentOut)},
        body=s.EnrollIn,
        errors={
            404: _NOT_FOUND,
            409: "Already enrolled (or completed, without force), or opted out.",
        },
        tag="enrollments",
    ),
    Operation(
        "POST",
        "/api/sequences/{id}/enroll/bulk",
        enroll_bulk,
        "enrollContacts",
        "Enroll many contacts and get the report",
        {200: Answer("What happened to each contact.", s.EnrollReportOut)},
        body=s.BulkEnrollIn,
        errors={404: _NOT_FOUND},
        description="One bad contact never blocks the others: invalid numbers, duplicates, "
        "opted-out and already enrolled contacts are reported with their index. A contact "
        "that does not fit the schema at all fails the whole request (422).",
        tag="enrollments",
    ),
    Operation(
        "GET",
        "/api/sequences/{id}/enrollments",
        enrollments,
        "listEnrollments",
        "A sequence's enrollments, 50 a page",
        {200: Answer("One page, oldest first, with the total.", s.EnrollmentPageOut)},
        query=s.EnrollmentsQuery,
        errors={404: _NOT_FOUND},
        tag="enrollments",
    ),
    Operation(
        "PUT",
        "/api/enrollments/{id}",
        update_enrollment,
        "updateEnrollment",
        "Pause, resume or stop one enrollment",
        {200: Answer("The enrollment as it is now.", s.EnrollmentOut)},
        body=s.EnrollmentUpdateIn,
        errors={404: "No enrollment with this id.", 409: "The enrollment has ended."},
        description="Resuming shifts the remaining steps by the time spent paused.",
        tag="enrollments",
    ),
    Operation(
        "GET",
        "/api/stats",
        stats,
        "getStats",
        "Statistics per sequence and step, with the daily trend",
        {200: Answer("The report.", s.StatsOut)},
        query=s.StatsQuery,
        errors={404: "No sequence with this sequence_id."},
        tag="stats",
    ),
    Operation(
        "POST",
        "/api/public/enroll",
        public_enroll,
        "publicEnroll",
        "Enroll one contact into a sequence named by id or name (for forms)",
        {201: Answer("Enrolled.", s.PublicEnrollOut)},
        scope="public",
        body=s.PublicEnrollIn,
        errors={
            404: "No such sequence.",
            409: "Already enrolled or completed, or opted out.",
        },
        tag="public",
    ),
    Operation(
        "POST",
        "/api/public/opt-out",
        public_opt_out,
        "publicOptOut",
        "Opt a number out of everything",
        {200: Answer("Opted out (now or before).", s.OptOutOut)},
        scope="public",
        body=s.OptOutIn,
        tag="public",
    ),
    Operation(
        "GET",
        OPENAPI_PATH,
        openapi_document,
        "getOpenApi",
        "This document",
        {200: Answer("The OpenAPI 3.1 document.", schema={"type": "object"})},
        scope=None,
        tag="meta",
    ),
)

_BY_ROUTE = {(op.method, op.path): op for op in OPERATIONS}


# --- gatekeeping ------------------------------------------------------------------------


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="dripbot"'})


async def _authenticate(request: web.Request, services: Services) -> ApiKeyRecord:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise _unauthorized("send your API key as 'Authorization: Bearer <key>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("expected 'Authorization: Bearer <key>'")
    key = await verify_api_key(services.db, token.strip())
    if key is None:
        raise _unauthorized("unknown or revoked API key")
    return key


def _required_scope(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    op = _BY_ROUTE.get((request.method, path))
    if op is not None:
        return op.scope
    # No such route: still ask for a key, so the API's shape is not open to strangers.
    return "public" if request.path.startswith("/api/public/") else "admin"


def _limiter(request: web.Request, services: Services) -> SlidingWindowLimiter:
    state = request.app[API_STATE]
    if state.limiter is None:
        state.limiter = SlidingWindowLimiter(services.settings.public_rate_per_minute)
    return state.limiter


def _check_rate(limiter: SlidingWindowLimiter, identity: str, services: Services) -> None:
    limited = limiter.hit(identity, services.clock.now().timestamp())
    if limited is not None:
        raise ApiError(
            429,
            f"too many requests; try again in {limited.retry_after} s",
            headers={"Retry-After": str(limited.retry_after)},
        )


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Rate limits, then the key, then its scope; the order spares the database a flood."""
    if not is_api_path(request.path):
        return await handler(request)
    scope = _required_scope(request)
    if scope is None:
        return await handler(request)
    services = _services(request)
    limiter = _limiter(request, services) if request.path.startswith("/api/public/") else None
    if limiter is not None:
        _check_rate(limiter, f"address:{request.remote}", services)
    key = await _authenticate(request, services)
    if scope == "admin" and key.scope != "admin":
        raise ApiError(403, "this key is public: it reaches only /api/public/*")
    if limiter is not None:
        _check_rate(limiter, f"key:{key.id}", services)
    request[API_KEY] = key
    return await handler(request)


def setup_api(app: web.Application) -> None:
    """Add the ``/api`` routes and the middlewares that guard them (and only them)."""
    document = json.dumps(build_document(OPERATIONS), ensure_ascii=False).encode()
    app[API_STATE] = ApiState(document=document)
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
    app.middlewares.extend([error_middleware, guard_middleware])
