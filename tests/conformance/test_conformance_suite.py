"""The official MCP conformance suite, against the fixture directly and through the gateway.

`@modelcontextprotocol/conformance` (0.1.16 for 2025-11-25, 0.2.0-alpha.12 for 2026-07-28, run
by Node 22 from npm) runs its server scenarios against ``examples.servers.conformance_fixture``
over streamable HTTP, then against a gateway whose only upstream is that fixture (no name
prefixes; ``mcp.anonymous_key``, since the runner cannot send a header). Every scenario that
passes directly must pass through the gateway, except those listed with a reason in
``expected_failures.yaml``; a listed scenario that passes through the gateway, or that does not
pass directly (or does not exist), makes the list stale and fails the test too.

The suite's checks are weak in places (a tool call answered "Unknown tool" passes
tools-call-simple-text), so the audit log must also show the fixture's tools answering.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from tests.conftest import REPO_ROOT, RunningGateway, free_port, run_gateway
from tests.e2e.node_tools import CONFORMANCE, NODE22, require, wait_for_port

pytestmark = pytest.mark.e2e

EXPECTED_FAILURES = Path(__file__).resolve().parent / "expected_failures.yaml"
RUNNER_OPTIONS = {
    "2025-11-25": ["--spec-version", "2025-11-25"],
    "2026-07-28": ["--requirements", "2026-07-28", "--timeout", "10000"],
}
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fixture_url() -> Iterator[str]:
    require(NODE22, *CONFORMANCE.values())
    port = free_port()
    command = [sys.executable, "-m", "examples.servers.conformance_fixture", "--transport", "http"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
async def gateway(
    fixture_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    config = {
        "virtual_keys": [{"id": "conformance", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {
            "anonymous_key": "conformance",
            "tool_naming": {"prefix": "never"},
            "servers": [{"name": "fixture", "url": fixture_url}],
            "virtual_key_permissions": {"conformance": "*"},
        },
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_KEY_ALICE", "conformance-secret-0123456789")
        async with run_gateway(config, tmp_path_factory.mktemp("gateway")) as gw:
            yield gw


def expected_failures() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = yaml.safe_load(EXPECTED_FAILURES.read_text())
    return data


async def run_suite(era: str, url: str, out: Path) -> dict[str, bool]:
    """Run every server scenario of ``era`` in one runner invocation; scenario -> passed."""
    command = [
        str(NODE22),
        str(CONFORMANCE[era]),
        "server",
        "--url",
        url,
        "-o",
        str(out),
        *RUNNER_OPTIONS[era],
    ]
    started = time.monotonic()
    result = await anyio.run_process(command, check=False)  # exit 1 when any scenario fails
    print(f"conformance {era} against {url}: {time.monotonic() - started:.1f} s")
    outcomes: dict[str, bool] = {}
    for directory in out.iterdir():
        match = RESULT_DIR.match(directory.name)
        if match is None:
            continue
        checks: list[dict[str, Any]] = json.loads((directory / "checks.json").read_text())
        outcomes[match["scenario"]] = not any(c["status"] == "FAILURE" for c in checks)
    assert outcomes, f"the runner reported no scenarios: {result.stdout.decode()[-2000:]}"
    return outcomes


def compare(direct: dict[str, bool], through: dict[str, bool], listed: dict[str, str]) -> list[str]:
    """What is wrong: regressions through the gateway, and a stale or unexplained expected-failures list."""
    passing = {s for s, ok in direct.items() if ok}
    problems = []
    if regressions := sorted(s for s in passing if not through.get(s) and s not in listed):
        problems.append(f"pass directly but fail through the gateway: {regressions}")
    if now_passing := sorted(s for s in listed if through.get(s)):
        problems.append(f"listed in {EXPECTED_FAILURES.name} but pass now: {now_passing}")
    if unknown := sorted(s for s in listed if s not in passing):
        problems.append(f"listed but not a scenario that passes directly: {unknown}")
    if unexplained := sorted(s for s, reason in listed.items() if not str(reason or "").strip()):
        problems.append(f"listed without a reason: {unexplained}")
    return problems


def test_the_comparison_catches_regressions_and_a_stale_list() -> None:
    direct = {"a": True, "b": True, "c": True, "d": False}
    assert compare(direct, {"a": True, "b": False, "c": False}, {"b": "why"}) == [
        "pass directly but fail through the gateway: ['c']"
    ]
    assert compare(
        direct, {"a": True, "b": True, "c": True}, {"b": "why", "d": "why", "zz": "why", "a": ""}
    ) == [
        f"listed in {EXPECTED_FAILURES.name} but pass now: ['a', 'b']",
        "listed but not a scenario that passes directly: ['d', 'zz']",
        "listed without a reason: ['a']",
    ]
    assert compare(direct, {"a": True, "b": False, "c": True}, {"b": "why"}) == []


def test_the_expected_failures_file_names_eras_and_reasons() -> None:
    listed = expected_failures()
    assert set(listed) <= set(RUNNER_OPTIONS), listed.keys()
    for era, scenarios in listed.items():
        assert all(isinstance(r, str) and r.strip() for r in scenarios.values()), era


@pytest.mark.anyio
@pytest.mark.timeout(180)
@pytest.mark.parametrize("era", list(RUNNER_OPTIONS))
async def test_every_scenario_that_passes_directly_passes_through_the_gateway(
    era: str, fixture_url: str, gateway: RunningGateway, tmp_path: Path
) -> None:
    direct = await run_suite(era, fixture_url, tmp_path / "direct")
    through = await run_suite(era, gateway.url, tmp_path / "gateway")
    listed = expected_failures().get(era) or {}

    passing = {s for s, ok in direct.items() if ok}
    # The fixture is what the suite expects: every scenario the spec revision requires passes.
    assert len(passing) >= (30 if era == "2025-11-25" else 37), sorted(
        s for s, ok in direct.items() if not ok
    )
    assert not (problems := compare(direct, through, listed)), f"{era}: " + "; ".join(problems)

    # The weak checks: the fixture's tools really answered through the gateway, under the key.
    calls = [c for c in await gateway.flushed_calls() if c.protocol_version == era]
    outcomes = {(c.tool, c.status) for c in calls}
    assert {
        ("test_simple_text", "ok"),
        ("test_image_content", "ok"),
        ("test_error_handling", "tool_error"),
    } <= (outcomes), sorted(outcomes)
    assert {c.key_id for c in calls} == {"conformance"}
