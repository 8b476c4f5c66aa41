"""The OpenAPI 3.1 document of the admin API and ``/v1/quota``, made from the operations themselves
(`Operation`: path, method, parameters, body schema, responses), so it cannot describe a route that
is not served; a test checks the served routes against it in both directions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway_app.admin_api.operation import Operation

PROBLEM = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "A stable code: unauthorized, forbidden, not_found..."},
        "message": {"type": "string", "description": "What went wrong and what to do instead."},
    },
    "additionalProperties": True,
}
_REFUSALS = {
    400: ("BadRequest", "A parameter or body the API cannot read (the message names it)."),
    401: ("Unauthorized", "No admin token, or not one (a virtual key never opens the admin API)."),
    403: ("Forbidden", "The token's role is auditor (read only) and this is a change."),
    404: ("NotFound", "No such id."),
    422: ("Refused", "The gateway refuses the change (the message says why)."),
    429: (
        "TooManyWrongTokens",
        "This address sent 10 wrong admin tokens within 5 minutes: wait for Retry-After seconds.",
    ),
}


def _parameter(param: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": param.name,
        "in": param.where,
        "required": param.required or param.where == "path",
        "description": param.description,
        "schema": dict(param.schema),
    }
    if param.schema.get("type") == "array":
        entry.update(style="form", explode=True)
    return entry


def _responses(op: Operation) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for status, description in sorted(op.responses.items()):
        content = {"application/json": {"schema": {"type": "object"}}}
        if status >= 400:
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        found[str(status)] = {"description": description, "content": content}
    refusals = [400, 401]
    if op.access == "write":
        refusals += [403, 422]
    if op.path_params:
        refusals.append(404)
    if op.access != "key":
        refusals.append(429)
    for status in refusals:
        found.setdefault(str(status), {"$ref": f"#/components/responses/{_REFUSALS[status][0]}"})
    return found


def _entry(op: Operation) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "security": [{"virtualKey": []}, {"virtualKeyHeader": []}]
        if op.access == "key"
        else [{"adminToken": []}],
        "x-roles": {"read": ["admin", "auditor"], "write": ["admin"], "key": []}[op.access],
        "parameters": [_parameter(p) for p in op.params],
        "responses": _responses(op),
    }
    if op.description:
        entry["description"] = op.description
    if op.action is not None:
        entry["x-admin-action"] = op.action
    if op.body is not None:
        entry["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": dict(op.body)}},
        }
    return entry


def document(operations: Iterable[Operation], schemas: Mapping[str, Any], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _entry(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MCP Gateway admin API",
            "version": version,
            "description": "Keys, policy, audit, reports and upstream health under /admin (an admin "
            "token: role admin for changes, auditor reads), and GET /v1/quota for a virtual key.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "An admin token."},
                "virtualKey": {"type": "http", "scheme": "bearer", "description": "A virtual key."},
                "virtualKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": {"Problem": PROBLEM, **schemas},
            "responses": {
                name: {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
                for name, description in _REFUSALS.values()
            },
        },
    }
