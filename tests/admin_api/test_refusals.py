"""Who may use the admin API: no token, a virtual key's secret or an unknown token get 401 (with
``WWW-Authenticate``); an auditor reads everything and changes nothing (403, recorded); an admin
does both. And the OpenAPI document describes exactly the routes the app serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from gateway_app.admin_api import OPERATIONS
from tests.admin_api.conftest import ADMIN, ALICE, AUDITOR, admin_gateway, from_address

ADMIN_PATHS = re.compile(r"^/admin(/|$)|^/v1/quota$")


def concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "some-id", path)


@pytest.mark.anyio
async def test_tokens_roles_and_virtual_keys(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        admin_ops = [op for op in OPERATIONS if op.access != "key"]
        for n, op in enumerate(admin_ops):
            path = concrete(op.path)
            # Each operation from an address of its own: wrong tokens are limited per address.
            async with from_address(gw, f"10.1.{n // 250}.{n % 250 + 1}") as http:
                for token in (None, ALICE, "not-a-token-at-all"):
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    refused = await http.request(op.method, path, headers=headers)
                    assert refused.status_code == 401, (op.path, token, refused.text)
                    assert refused.headers["www-authenticate"] == 'Bearer realm="mcp-gateway-admin"'
                    assert refused.json()["error"] == "unauthorized"
                basic = await http.request(op.method, path, headers={"Authorization": f"Basic {ADMIN}"})
                assert basic.status_code == 401

        writes = [op for op in admin_ops if op.access == "write"]
        assert {op.action for op in writes} == {
            "key.create",
            "key.update",
            "key.rotate",
            "key.revoke",
            "policy.reload",
        }
        for op in writes:
            refused = await gw.call(op.method, concrete(op.path), AUDITOR, json={"key_id": "vk_x"})
            assert refused.status_code == 403, (op.path, refused.text)
            assert refused.json() == {
                "error": "forbidden",
                "message": "admin token 'audit' has the read-only role 'auditor'",
            }
        for op in admin_ops:
            if op.access == "read" and not op.path_params:
                for token in (AUDITOR, ADMIN):
                    answer = await gw.call(op.method, op.path, token)
                    assert answer.status_code == 200, (op.path, answer.text)

        # Every refused change was recorded, with who tried; nothing changed.
        actions = (await gw.get("/admin/actions", AUDITOR, limit=100)).json()["items"]
        assert sorted(
            (a["action"], a["actor"], a["role"], a["outcome"], a["door"]) for a in actions
        ) == sorted((op.action, "audit", "auditor", "refused", "api") for op in writes)
        assert (await gw.get("/admin/keys")).json() == {"keys": []}


def served(app: Any) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, Route) and ADMIN_PATHS.match(route.path):
            found |= {(route.path, method.lower()) for method in route.methods or () if method != "HEAD"}
    return found


def refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return own + [r for v in value.values() for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


@pytest.mark.anyio
async def test_the_openapi_document_describes_exactly_the_served_routes(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        answer = await gw.get("/admin/openapi.json", AUDITOR)
        assert answer.status_code == 200
        doc = answer.json()
        assert (await gw.get("/admin/openapi.json", None)).status_code == 401
        routes = served(gw.app)
    assert doc["openapi"].startswith("3.1")
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert described - routes == set(), "described but not served"
    assert routes - described == set(), "served but not described"
    assert ("/v1/quota", "get") in routes and ("/admin/openapi.json", "get") in routes
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            named = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert named == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            assert operation["responses"] and operation["summary"]
    for ref in refs(doc):
        section, kind, name = ref.removeprefix("#/").split("/")
        assert name in doc[section][kind], ref
