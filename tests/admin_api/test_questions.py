"""The administrators' questions asked of the admin API over the seeded database of the report
tests (tests/reports/seed.py): each answer is the CLI's ``--json`` for the same question, equal as
a whole, and holds the numbers the seed was built to have. The README's curl commands for the
questions are run as written (``curl`` against the gateway on a loopback port)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway_app.cli import main
from tests.admin_api.conftest import ADMIN, FakeClock, Gateway, admin_gateway, on_socket, policy_doc, run_sh
from tests.e2e.test_readme import readme_blocks
from tests.reports.seed import (
    FRONTEND_TOOLS_IN_CLAUDE_CODE,
    LIMIT_HITS,
    MODEL_CALLS_THIS_WEEK,
    SPEND_PER_TEAM_LAST_MONTH,
    seed,
)

QUESTIONS = {
    # README block: (the API's path and parameters, the CLI's words)
    "question-top-keys-api": ("/admin/reports/top-keys", {"week": "this"}, ["report", "top-keys", "--week"]),
    "question-tools-api": (
        "/admin/reports/tools",
        {"team": "frontend", "client": "claude-code"},
        ["report", "tools", "--team", "frontend", "--client", "claude-code"],
    ),
    "question-spend-api": (
        "/admin/reports/spend",
        {"by": "team", "month": "last"},
        ["report", "spend", "--by", "team", "--month", "last"],
    ),
    "question-limits-api": ("/admin/reports/limits", {}, ["report", "limits"]),
}


def doc() -> dict[str, Any]:
    return policy_doc(
        teams=[{"name": name} for name in ("eng", "ops", "frontend", "backend")],
        budgets={
            "teams": [{"name": "backend", "monthly_limit_usd": 3}],
            "org_level": {"daily_limit_usd": 50},
        },
    )


def cli_json(gw: Gateway, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    now = gw.runtime.state.current.now().isoformat()
    assert main([*argv, "--json", "--now", now]) == 0
    return orjson.loads(capsys.readouterr().out)


def answers(report: dict[str, Any], question: str) -> Any:
    rows = report["rows"]
    if question == "question-top-keys-api":
        return {r["key_id"]: r["model_calls"] for r in rows}
    if question == "question-tools-api":
        names = ("calls", "ok", "refused", "keys")
        return {(r["server"], r["tool"]): {n: r[n] for n in names} for r in rows}
    if question == "question-spend-api":
        return {r["group"]: (r["cost_usd"], r["requests"]) for r in rows}
    return {(r["key_id"], r["surface"], r["status"], r["blocked_by"]): r["refusals"] for r in rows}


EXPECTED = {
    "question-top-keys-api": MODEL_CALLS_THIS_WEEK,
    "question-tools-api": FRONTEND_TOOLS_IN_CLAUDE_CODE,
    "question-spend-api": SPEND_PER_TEAM_LAST_MONTH,
    "question-limits-api": LIMIT_HITS,
}


@pytest.mark.anyio
async def test_each_question_has_the_clis_answer_and_the_readmes_curl_gets_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    async with admin_gateway(tmp_path, doc(), clock=clock) as gw:
        now = gw.runtime.state.current.now()
        await asyncio.to_thread(seed, gw.runtime.engine, now)
        database = ["--database-url", gw.url]
        async with on_socket(gw) as base:
            for question, (path, params, argv) in QUESTIONS.items():
                from_cli = cli_json(gw, capsys, *argv, *database)
                from_api = await gw.get(path, **params)
                assert from_api.status_code == 200, from_api.text
                assert from_api.json() == from_cli, question
                assert answers(from_cli, question) == EXPECTED[question]
                # The README's request, as written (but the port), answers the same.
                code = readme_blocks()[question].replace("127.0.0.1:8080", base.removeprefix("http://"))
                ran = await asyncio.to_thread(run_sh, code, MCPGW_ADMIN_TOKEN=ADMIN)
                assert ran.returncode == 0, ran.stderr
                printed = [orjson.loads(line) for line in ran.stdout.splitlines() if line.strip()]
                assert printed[0] == from_cli, question
            # The limits block also asks for the budgets: the policy's, spent as the ledger says.
            budgets = cli_json(gw, capsys, "report", "budgets", "--config", str(gw.path))
            assert printed[1] == budgets == (await gw.get("/admin/reports/budgets")).json()
        team = next(r for r in budgets["rows"] if r["budget"] == "team:backend")
        assert team["spent_usd"] == 1.5 + 0.75 + 0.25  # this month's backend spend in the seed
        assert [a["kind"] for a in team["alerts"]] == ["threshold"]


@pytest.mark.anyio
async def test_audit_listings_filter_and_page_like_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with admin_gateway(tmp_path, doc()) as gw:
        seeded = await asyncio.to_thread(seed, gw.runtime.engine, gw.runtime.state.current.now())
        database = ["--database-url", gw.url]
        # Paged: every page's items are the CLI's, and following the cursors reaches every row once.
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = (await gw.get("/admin/audit/tool-calls", **params)).json()
            cli = cli_json(
                gw, capsys, "audit", "--limit", "4", *(["--cursor", cursor] if cursor else []), *database
            )
            assert page == cli
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(seeded.tool_calls) and len(seen) == len(set(seen))

        filtered = await gw.get(
            "/admin/audit/tool-calls", team="frontend", status=["denied", "rate_limited"], since="30d"
        )
        cli = cli_json(
            gw,
            capsys,
            "audit",
            "--team",
            "frontend",
            "--status",
            "denied",
            "--status",
            "rate_limited",
            "--since",
            "30d",
            *database,
        )
        assert filtered.json() == cli and {i["status"] for i in cli["items"]} == {"denied", "rate_limited"}
        summary = await gw.get("/admin/audit/tool-calls/summary", key="vk_bob")
        assert summary.json()["rows"] == cli_json(
            gw, capsys, "audit", "--summary", "--key", "vk_bob", *database
        )

        requests = await gw.get("/admin/audit/model-requests", model="gpt-4o")
        assert requests.json() == cli_json(gw, capsys, "audit", "requests", "--model", "gpt-4o", *database)
        assert [r["request_id"] for r in requests.json()["items"]] == ["mr0015"]

        one = await gw.get("/admin/audit/tool-calls/tc0004")
        assert one.json() == cli_json(gw, capsys, "audit", "show", "tc0004", *database)
        assert one.json()["arguments"] == {"path": "src/4.ts"}
        assert (await gw.get("/admin/audit/model-requests/mr0015")).json()["cost_usd"] == 2.0

        # Bad input: a clear 400 or 404, never a 500.
        for path, params, status, words in (
            ("/admin/audit/tool-calls/nope", {}, 404, "no tool call has the id 'nope'"),
            ("/admin/audit/model-requests/nope", {}, 404, "no model request"),
            ("/admin/audit/tool-calls", {"limit": 0}, 400, "limit must be between 1 and 1000"),
            ("/admin/audit/tool-calls", {"limit": "x"}, 400, "limit must be a whole number"),
            ("/admin/audit/tool-calls", {"cursor": "!!"}, 400, "not a page cursor"),
            ("/admin/audit/tool-calls", {"status": "fine"}, 400, "unknown status 'fine'"),
            ("/admin/audit/tool-calls", {"since": "yesterday"}, 400, "is neither a duration"),
            ("/admin/reports/spend", {"by": "colour"}, 400, "by is one of team, key, model, provider"),
            ("/admin/reports/top-keys", {"month": "last", "week": "this"}, 400, "give one period"),
        ):
            answer = await gw.get(path, **params)
            assert answer.status_code == status, (path, params, answer.text)
            assert words in answer.json()["message"], answer.json()
