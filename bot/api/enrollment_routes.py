"""The enrollment routes: enroll contacts, list them, pause, resume or stop one enrollment.

Enrolling one contact answers with an error when the contact was not enrolled, where a bulk
enrollment reports each refused contact and goes on; :func:`enroll_contact` is that one-
contact path, shared with the public enroll route.
"""

from __future__ import annotations

from aiohttp import web

from bot.api.common_schemas import PAGE_SIZE, FieldProblem
from bot.api.enrollment_schemas import (
    BulkEnrollIn,
    ContactIn,
    EnrollIn,
    EnrollmentOut,
    EnrollmentPageOut,
    EnrollmentsQuery,
    EnrollmentUpdateIn,
    EnrollReportOut,
    check_contact,
    enrollment_out,
    report_out,
    to_contact,
)
from bot.api.errors import ApiError
from bot.api.handling import answer, path_id, read_body, read_query, services_of
from bot.api.openapi import Answer, Operation
from bot.api.sequence_routes import SEQUENCE_NOT_FOUND
from bot.services import Services
from scheduler.contacts import set_enrollment_status
from scheduler.enrollment import EnrollReport, enroll
from scheduler.sequence_replace import (
    engine_ref,
    enrollment_by_id,
    enrollment_page,
    sequence_by_id,
)
from storage.states import EnrollmentStatus


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
            422, f"phone: {reason}", details=[FieldProblem(field="phone", message=reason)]
        )
    return None


async def enroll_contact(
    services: Services, sequence: str | int, contact: ContactIn, *, force: bool
) -> tuple[int, str]:
    """Enroll one contact; its enrollment id and number, or the error saying why not."""
    phone = check_contact(contact, services.options.default_region)
    report = await enroll(
        services.db,
        sequence,
        [to_contact(contact)],
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
    services = services_of(request)
    sequence_id = path_id(request)
    body = await read_body(request, EnrollIn)
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
    enrollment_id, _ = await enroll_contact(
        services, engine_ref(record.name, record.id), body, force=body.force
    )
    async with services.db.engine.connect() as conn:
        detail = await enrollment_by_id(conn, services.db.workspace_id, enrollment_id)
    return answer(enrollment_out(detail), 201)


async def enroll_bulk(request: web.Request) -> web.Response:
    services = services_of(request)
    sequence_id = path_id(request)
    body = await read_body(request, BulkEnrollIn)
    async with services.db.engine.connect() as conn:
        record = await sequence_by_id(conn, services.db.workspace_id, sequence_id)
    report = await enroll(
        services.db,
        engine_ref(record.name, record.id),
        [to_contact(contact, index=i) for i, contact in enumerate(body.contacts)],
        now=services.clock.now(),
        options=services.options,
        force=body.force,
        source="api",
    )
    return answer(report_out(report))


async def enrollments(request: web.Request) -> web.Response:
    services = services_of(request)
    sequence_id = path_id(request)
    query = read_query(request, EnrollmentsQuery)
    status = EnrollmentStatus(query.status) if query.status is not None else None
    async with services.db.engine.connect() as conn:
        await sequence_by_id(conn, services.db.workspace_id, sequence_id)
        total, details = await enrollment_page(
            conn,
            services.db.workspace_id,
            sequence_id,
            status=status,
            offset=(query.page - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )
    page = EnrollmentPageOut(
        enrollments=[enrollment_out(d) for d in details],
        page=query.page,
        page_size=PAGE_SIZE,
        total=total,
    )
    return answer(page)


async def update_enrollment(request: web.Request) -> web.Response:
    services = services_of(request)
    enrollment_id = path_id(request)
    body = await read_body(request, EnrollmentUpdateIn)
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
    return answer(enrollment_out(detail))


# --- the table --------------------------------------------------------------------------


ENROLLMENT_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/api/sequences/{id}/enroll",
        enroll_one,
        "enrollContact",
        "Enroll one contact",
        {201: Answer("The new enrollment.", EnrollmentOut)},
        body=EnrollIn,
        errors={
            404: SEQUENCE_NOT_FOUND,
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
        {200: Answer("What happened to each contact.", EnrollReportOut)},
        body=BulkEnrollIn,
        errors={404: SEQUENCE_NOT_FOUND},
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
        {200: Answer("One page, oldest first, with the total.", EnrollmentPageOut)},
        query=EnrollmentsQuery,
        errors={404: SEQUENCE_NOT_FOUND},
        tag="enrollments",
    ),
    Operation(
        "PUT",
        "/api/enrollments/{id}",
        update_enrollment,
        "updateEnrollment",
        "Pause, resume or stop one enrollment",
        {200: Answer("The enrollment as it is now.", EnrollmentOut)},
        body=EnrollmentUpdateIn,
        errors={404: "No enrollment with this id.", 409: "The enrollment has ended."},
        description="Resuming shifts the remaining steps by the time spent paused.",
        tag="enrollments",
    ),
)
