"""The REST API under ``/api``: its route table, its gatekeeping and its set-up.

The table (:data:`OPERATIONS`) is the single list of routes: :func:`setup_api` registers
exactly these with the router and the OpenAPI document is generated from the same list.
Each resource's module holds its handlers and its part of the table; they validate with the
models of the ``*_schemas`` modules, call the engine, and answer with those models again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from bot.api.enrollment_routes import ENROLLMENT_OPERATIONS
from bot.api.errors import ApiError, Handler, error_middleware, is_api_path
from bot.api.handling import services_of
from bot.api.openapi import Answer, Operation, build_document
from bot.api.public_routes import PUBLIC_OPERATIONS
from bot.api.ratelimit import SlidingWindowLimiter
from bot.api.sequence_routes import SEQUENCE_OPERATIONS
from bot.api.stats_routes import STATS_OPERATIONS
from bot.services import Services
from storage.api_keys import ApiKeyRecord, verify_api_key

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


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[API_STATE].document, content_type="application/json")


# --- the table --------------------------------------------------------------------------


OPERATIONS: tuple[Operation, ...] = (
    *SEQUENCE_OPERATIONS,
    *ENROLLMENT_OPERATIONS,
    *STATS_OPERATIONS,
    *PUBLIC_OPERATIONS,
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
    services = services_of(request)
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
