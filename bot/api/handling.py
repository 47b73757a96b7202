"""What every API handler does first and last: find the services, read the request, answer.

Reading goes through the pydantic models, so a body, a query or a path id that does not fit
is refused the same way on every route, naming the field, before a handler touches the
engine; answering serializes a model, so every success body is one the OpenAPI document
describes.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from bot.api.common_schemas import FieldProblem, dump
from bot.api.errors import ApiError, invalid_request
from bot.services import SERVICES, Services
from scheduler.sequence_replace import MAX_ID

M = TypeVar("M", bound=BaseModel)


def services_of(request: web.Request) -> Services:
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
            details=[FieldProblem(field=name, message="expected a positive whole number")],
        )
    value = int(text) if len(text) <= 20 else MAX_ID + 1
    if not 1 <= value <= MAX_ID:
        raise ApiError(404, f"nothing has the id {text}")
    return value


def answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, body=dump(model), content_type="application/json")
