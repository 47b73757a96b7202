"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Nothing here is written by hand per route: each :class:`Operation` says its method, path,
scope, body, query and answers, the router is built from the same table, and the schemas
come from the models the handlers validate with. The errors each route can answer follow
from what it takes (a body can be malformed or too large, a key can be missing or of the
wrong scope, a public route can be rate limited), so they are derived too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bot.api.common_schemas import ErrorOut
from scheduler.sequence_replace import MAX_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Scope = Literal["admin", "public"]

PUBLIC_PREFIX = "/api/public/"
SECURITY_SCHEME = "bearer"
_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Answer:
    """A success answer: its description and body model (None: no body)."""

    description: str
    model: type[BaseModel] | None = None
    #: a literal schema, for the rare body that is not one of our models
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    answers: Mapping[int, Answer]
    #: the key scope needed; None for no key at all
    scope: Scope | None = "admin"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    #: errors this route answers beyond the ones derived from its shape, with their meaning
    errors: Mapping[int, str] = field(default_factory=dict)
    description: str = ""
    tag: str = "sequences"

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def rate_limited(self) -> bool:
        return self.path.startswith(PUBLIC_PREFIX)


def error_statuses(op: Operation) -> dict[int, str]:
    """Every error status ``op`` can answer, with what it means there."""
    errors: dict[int, str] = {}
    if op.body is not None:
        errors[400] = "The body is not JSON."
    if op.scope is not None:
        errors[401] = "No API key, or an unknown or revoked one."
    if op.scope == "admin":
        errors[403] = "The key's scope does not reach this route (a public key)."
    if op.path_params:
        errors[404] = "Nothing has this id."
    if op.body is not None:
        errors[413] = "The body is too large."
    if op.body is not None or op.query is not None or op.path_params:
        errors[422] = "A field is invalid; details name each one."
    if op.rate_limited:
        errors[429] = "Too many requests from this key or address; retry after Retry-After."
    errors.update(op.errors)
    errors[500] = "An unexpected error (logged); the body says nothing more."
    return dict(sorted(errors.items()))


def _models(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorOut, "serialization"): None}
    for op in operations:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for answer in op.answers.values():
            if answer.model is not None:
                wanted[(answer.model, "serialization")] = None
    return list(wanted)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=_REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": {k: v for k, v in prop.items() if k != "description"},
        }
        if "description" in prop:
            parameter["description"] = prop["description"]
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is optional by being left out, never by being ``null``."""
    options = schema.get("anyOf")
    result = dict(schema)
    if options is not None:
        kept = [option for option in options if option.get("type") != "null"]
        result.pop("anyOf")
        if len(kept) == 1:
            result |= kept[0]
        else:
            result["anyOf"] = kept
    if result.get("default", "") is None:
        result.pop("default")
    return result


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _operation(op: Operation, refs: Mapping[Any, dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{SECURITY_SCHEME: []}] if op.scope is not None else [],
    }
    description = op.description
    if op.scope is not None:
        reach = "an admin key" if op.scope == "admin" else "a public or an admin key"
        description = f"{description}\n\nNeeds {reach}.".strip()
    item["description"] = description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        }
        for name in op.path_params
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    if parameters:
        item["parameters"] = parameters
    if op.body is not None:
        item["requestBody"] = {"required": True, "content": _json(refs[(op.body, "validation")])}
    responses: dict[str, Any] = {}
    for status, answer in sorted(op.answers.items()):
        response: dict[str, Any] = {"description": answer.description}
        if answer.model is not None:
            response["content"] = _json(refs[(answer.model, "serialization")])
        elif answer.schema is not None:
            response["content"] = _json(answer.schema)
        responses[str(status)] = response
    error_schema = refs[(ErrorOut, "serialization")]
    for status, meaning in error_statuses(op).items():
        response = {"description": meaning, "content": _json(error_schema)}
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"required": True, "schema": {"type": "string"}}
            }
        if status == 429:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before the next request.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        responses[str(status)] = response
    item["responses"] = responses
    return item


def build_document(
    operations: Sequence[Operation], *, title: str = "dripbot", version: str = "1"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing exactly ``operations``."""
    refs, definitions = models_json_schema(_models(operations), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{title} REST API",
            "version": version,
            "description": (
                "Sequences, enrollments and statistics for forms, CRMs and scripts. Send "
                "`Authorization: Bearer <key>` (`dripbot apikey create --scope admin|public`). "
                "Admin keys reach every route; public keys only /api/public/*, which is also "
                "rate limited per key and per client address. Errors are "
                '`{"error": {"code", "message", "details"}}`.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key made with `dripbot apikey create`.",
                }
            },
        },
    }
