"""The admin REST API under ``/admin`` and the self-service ``GET /v1/quota``.

Every endpoint is an `Operation` (`operation.py`: authentication, roles, errors, the record of
changes); the modules group them by area: keys, policy, audit, reports, status (upstream health,
admin actions), quota. `admin_routes` gives the app the routes, and ``/admin/openapi.json`` the
document made from the same operations.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from starlette.routing import Route

from gateway_app.admin_api import audit, keys, policy, quota, reports, status
from gateway_app.admin_api.openapi import document
from gateway_app.admin_api.operation import Call, Operation, Reply


def _version() -> str:
    try:
        return version("mcp-gateway")
    except PackageNotFoundError:
        return "0"


async def openapi_document(call: Call) -> Reply:
    return Reply(document(OPERATIONS, keys.SCHEMAS, _version()))


OPENAPI = Operation(
    "GET",
    "/admin/openapi.json",
    openapi_document,
    "This document",
    "status",
    responses={200: "The OpenAPI 3.1 document of the admin API and /v1/quota."},
)
OPERATIONS: tuple[Operation, ...] = (
    *keys.OPERATIONS,
    *policy.OPERATIONS,
    *audit.OPERATIONS,
    *reports.OPERATIONS,
    *status.OPERATIONS,
    OPENAPI,
    *quota.OPERATIONS,
)


def admin_routes() -> list[Route]:
    """The routes of every operation, for the app's route list."""
    return [op.route() for op in OPERATIONS]


def openapi() -> dict[str, Any]:
    """The document as served (for tools and tests)."""
    return document(OPERATIONS, keys.SCHEMAS, _version())


__all__ = ["OPERATIONS", "Operation", "admin_routes", "openapi"]
