"""Every failure under ``/api`` as JSON: ``{"error": {"code", "message", "details"}}``.

Clients branch on ``code`` (stable) and show ``message`` (a sentence); ``details`` lists the
fields at fault. Bad input is always a 4xx naming the field. Anything unexpected is logged
with its traceback and answered 500 with a generic message, so internals never leak.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from pydantic import ValidationError

from bot.api.common_schemas import FieldProblem, InvalidFields, error_body, field_path
from scheduler.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api"

#: the code each status answers with when nothing more precise applies
CODES: Mapping[int, str] = {
    400: "malformed_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
}


class ApiError(Exception):
    """An answer other than success, raised anywhere below the middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def error_response(error: ApiError) -> web.Response:
    return web.Response(
        status=error.status,
        body=error_body(error.code, error.message, error.details),
        content_type="application/json",
        headers=error.headers,
    )


def invalid_request(err: ValidationError, *, where: str = "") -> ApiError:
    """A pydantic failure as a 400 (not JSON at all) or a 422 naming each field."""
    problems = err.errors(include_url=False, include_input=False)
    if any(p["type"] == "json_invalid" for p in problems):
        reason = next(p["msg"] for p in problems if p["type"] == "json_invalid")
        return ApiError(
            400,
            f"the body is not valid JSON: {reason.removeprefix('Invalid JSON: ')}",
            code="malformed_json",
        )
    details = []
    for problem in problems:
        field = field_path(problem["loc"], where)
        message = problem["msg"]
        if problem["type"] == "model_type" and field is None:
            message = "the body must be a JSON object"
        details.append(FieldProblem(field=field, message=message))
    return _validation_error(details)


def invalid_fields(err: InvalidFields) -> ApiError:
    return _validation_error(err.problems)


def _validation_error(details: Sequence[FieldProblem]) -> ApiError:
    first = details[0]
    where = f"{first.field}: " if first.field else ""
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ApiError(422, f"{where}{first.message}{more}", details=details)


def _from_http(exc: web.HTTPException) -> ApiError:
    headers = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        message = f"{exc.method} is not allowed here; use {headers['Allow']}"
    elif exc.status == 404:
        message = "no such endpoint (see /api/openapi.json)"
    elif exc.status == 413:
        message = "the body is too large"
    else:
        message = exc.reason
    return ApiError(exc.status, message, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_api_path(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except InvalidFields as err:
        return error_response(invalid_fields(err))
    except NotFound as err:
        return error_response(ApiError(404, str(err)))
    except Conflict as err:
        return error_response(ApiError(409, str(err)))
    except Invalid as err:
        return error_response(ApiError(422, str(err), code="invalid"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http(exc))
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(ApiError(500, "something went wrong on our side; it has been logged"))
