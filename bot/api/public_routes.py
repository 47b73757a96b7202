"""The public routes (``/api/public/*``): what forms and CRMs call with a public key.

They do the least a form needs, enroll one contact or opt a number out, so a public key
that leaks reaches nothing else; they are the rate-limited routes. A form knows a sequence
by its name more often than by its id, so either is taken.
"""

from __future__ import annotations

from aiohttp import web

from bot.api.common_schemas import FieldProblem
from bot.api.enrollment_routes import enroll_contact
from bot.api.enrollment_schemas import (
    ContactIn,
    OptOutIn,
    OptOutOut,
    PublicEnrollIn,
    PublicEnrollOut,
    SequenceRefOut,
    check_contact,
)
from bot.api.errors import ApiError
from bot.api.handling import answer, read_body, services_of
from bot.api.openapi import Answer, Operation
from scheduler.contacts import find_contact, opt_out_number
from scheduler.errors import NotFound
from scheduler.phones import mask_phone
from scheduler.sequence_replace import engine_ref, sequence_by_id, sequence_by_name


async def public_enroll(request: web.Request) -> web.Response:
    services = services_of(request)
    body = await read_body(request, PublicEnrollIn)
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
                404, str(err), details=[FieldProblem(field="sequence", message=str(err))]
            ) from None
    _, phone = await enroll_contact(services, engine_ref(record.name, record.id), body, force=False)
    out = PublicEnrollOut(
        status="enrolled", phone=phone, sequence=SequenceRefOut(id=record.id, name=record.name)
    )
    return answer(out, 201)


async def public_opt_out(request: web.Request) -> web.Response:
    services = services_of(request)
    body = await read_body(request, OptOutIn)
    db, region = services.db, services.options.default_region
    phone = check_contact(ContactIn(phone=body.phone), region)
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
    return answer(OptOutOut(phone=phone, opted_out=True, already_opted_out=not changed))


# --- the table --------------------------------------------------------------------------


PUBLIC_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/api/public/enroll",
        public_enroll,
        "publicEnroll",
        "Enroll one contact into a sequence named by id or name (for forms)",
        {201: Answer("Enrolled.", PublicEnrollOut)},
        scope="public",
        body=PublicEnrollIn,
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
        {200: Answer("Opted out (now or before).", OptOutOut)},
        scope="public",
        body=OptOutIn,
        tag="public",
    ),
)
