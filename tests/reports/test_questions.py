"""The four administrators' questions (README, "Answers for the people who govern") answered over
one seeded database, in SQLite and in PostgreSQL, by the query functions, by the CLI (``--json``,
and the README's command as written) and by the README's SQLModel snippet: each gives the answer
the seed was built to have, so all three agree.

The snippets read ``datetime.now``: the seed is placed around the real now (seed.py keeps every
answer the same whatever day that is). The one edit made to a snippet is its database URL, on
PostgreSQL.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from gateway_app.cli import main
from gateway_app.database import create_schema
from gateway_app.queries import limits, parse_period, spend, team_tools, top_keys
from gateway_common.db import make_engine
from tests.conftest import REPO_ROOT
from tests.e2e.test_readme import readme_blocks
from tests.reports.seed import (
    FRONTEND_TOOLS_IN_CLAUDE_CODE,
    LIMIT_HITS,
    MODEL_CALLS_THIS_WEEK,
    SPEND_PER_TEAM_LAST_MONTH,
    seed,
)

README_URL = "sqlite:///data/gateway.db"


@dataclass
class Seeded:
    url: str
    engine: Engine
    now: datetime
    root: Path
    """Plays the repository's directory: data/gateway.db (SQLite) and examples/ are here."""


@contextlib.contextmanager
def seeded_database(root: Path, url: str | None) -> Iterator[Seeded]:
    """``url``'s database (None: SQLite in ``root/data/gateway.db``, where the README's commands look),
    seeded around now."""
    (root / "data").mkdir(parents=True)
    (root / "examples").symlink_to(REPO_ROOT / "examples")
    url = url or f"sqlite:///{root / 'data' / 'gateway.db'}"
    engine = make_engine(url)
    create_schema(engine)
    now = datetime.now(UTC)
    seed(engine, now)
    try:
        yield Seeded(url, engine, now, root)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Seeded]:
    url = request.getfixturevalue("postgres_database") if request.param == "postgresql" else None
    with seeded_database(tmp_path / "repo", url) as db:
        yield db


@pytest.fixture
def seeded_sqlite(tmp_path: Path) -> Iterator[Seeded]:
    with seeded_database(tmp_path / "repo", None) as db:
        yield db


# -- the answers, three ways --------------------------------------------------------------------


def from_queries(db: Seeded) -> dict[str, Any]:
    thirty_days = parse_period(now=db.now, default="30d")
    keys = top_keys(db.engine, parse_period(now=db.now, week="this"))
    tools = team_tools(db.engine, thirty_days, team="frontend", client="claude-code")
    costs = spend(db.engine, parse_period(now=db.now, month="last"), by="team")
    hits = limits(db.engine, thirty_days)
    return {
        "top-keys": {row.key_id: row.model_calls for row in keys.rows},
        "tools": {
            (r.server, r.tool): {"calls": r.calls, "ok": r.ok, "refused": r.refused, "keys": r.keys}
            for r in tools.rows
        },
        "spend": {row.group: (row.cost_usd, row.requests) for row in costs.rows},
        "limits": {(r.key_id, r.surface, r.status, r.blocked_by): r.refusals for r in hits.rows},
    }


def cli_json(db: Seeded, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json", "--database-url", db.url, "--now", db.now.isoformat()]) == 0
    return orjson.loads(capsys.readouterr().out)


def from_cli(db: Seeded, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    keys = cli_json(db, capsys, "report", "top-keys", "--week")
    tools = cli_json(db, capsys, "report", "tools", "--team", "frontend", "--client", "claude-code")
    costs = cli_json(db, capsys, "report", "spend", "--by", "team", "--month", "last")
    hits = cli_json(db, capsys, "report", "limits")
    return {
        "top-keys": {row["key_id"]: row["model_calls"] for row in keys["rows"]},
        "tools": {
            (r["server"], r["tool"]): {name: r[name] for name in ("calls", "ok", "refused", "keys")}
            for r in tools["rows"]
        },
        "spend": {row["group"]: (row["cost_usd"], row["requests"]) for row in costs["rows"]},
        "limits": {
            (r["key_id"], r["surface"], r["status"], r["blocked_by"]): r["refusals"] for r in hits["rows"]
        },
    }


def run_snippet(db: Seeded, name: str) -> list[str]:
    code = readme_blocks()[name]
    assert README_URL in code, f"README block {name!r} no longer reads the demo's database"
    if not db.url.startswith("sqlite"):
        code = code.replace(README_URL, db.url)
    result = subprocess.run([sys.executable, "-c", code], cwd=db.root, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def parse(lines: list[str], pattern: str) -> list[tuple[str, ...]]:
    found = [re.fullmatch(pattern, line) for line in lines]
    assert all(found), f"unexpected lines: {lines}"
    return [match.groups() for match in found if match is not None]


def from_snippets(db: Seeded) -> dict[str, Any]:
    keys = parse(run_snippet(db, "question-top-keys"), r"(\S+): (\d+) model calls")
    tools = parse(
        run_snippet(db, "question-tools"),
        r"(\w+)/(\w+): (\d+) calls by (\d+) keys, last \d{4}-\d\d-\d\d \d\d:\d\d",
    )
    costs = parse(run_snippet(db, "question-spend"), r"(.+): \$([\d.]+) over (\d+) requests")
    hits = parse(
        run_snippet(db, "question-limits"),
        r"(\S+) (\w+) by (\S+): (\d+) times, last \d{4}-\d\d-\d\d \d\d:\d\d",
    )
    return {
        "top-keys": {key: int(n) for key, n in keys},
        "tools": {(server, tool): {"calls": int(n), "keys": int(k)} for server, tool, n, k in tools},
        "spend": {(None if team == "(no team)" else team): (float(usd), int(n)) for team, usd, n in costs},
        "limits": {(key, status, blocked): int(n) for key, status, blocked, n in hits},
    }


# -- the tests --------------------------------------------------------------------------------------


def test_the_four_questions_have_one_answer_everywhere(
    seeded: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {
        "top-keys": MODEL_CALLS_THIS_WEEK,
        "tools": FRONTEND_TOOLS_IN_CLAUDE_CODE,
        "spend": SPEND_PER_TEAM_LAST_MONTH,
        "limits": LIMIT_HITS,
    }
    assert from_queries(seeded) == expected
    assert from_cli(seeded, capsys) == expected

    snippets = from_snippets(seeded)
    assert snippets["top-keys"] == MODEL_CALLS_THIS_WEEK
    assert list(snippets["top-keys"]) == list(
        MODEL_CALLS_THIS_WEEK
    )  # the same order: most first, then by key
    assert snippets["tools"] == {
        tool: {"calls": n["calls"], "keys": n["keys"]} for tool, n in FRONTEND_TOOLS_IN_CLAUDE_CODE.items()
    }
    assert snippets["spend"] == SPEND_PER_TEAM_LAST_MONTH
    assert snippets["limits"] == {
        (key, status, blocked): n for (key, _, status, blocked), n in LIMIT_HITS.items()
    }


def test_the_python_example_prints_the_spend_reports_json(seeded: Seeded) -> None:
    (line,) = run_snippet(seeded, "question-python")
    report = orjson.loads(line)
    assert (
        report["by"] == "team"
        and report["period"]["label"] == parse_period(now=seeded.now, month="last").label
    )
    assert {
        row["group"]: (row["cost_usd"], row["requests"]) for row in report["rows"]
    } == SPEND_PER_TEAM_LAST_MONTH
    assert report["total_usd"] == 3.75


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "question-top-keys-cli",
            [r"KEY +NAME +TEAM +MODEL CALLS +COST +TOOL CALLS", r"vk_carol +Carol +backend +4 +\$1\.5000 +2"],
        ),
        (
            "question-tools-cli",
            [
                r"SERVER +TOOL +CALLS +OK +REFUSED +KEYS +LAST USED \(UTC\)",
                r"filesystem +read_file +5 +4 +1 +2 .*",
            ],
        ),
        (
            "question-spend-cli",
            [r"TEAM +REQUESTS +INPUT TOKENS .* COST", r"backend +1 +1,000 +100 +0 +0 +\$2\.0000"],
        ),
        (
            "question-limits-cli",
            [
                r"KEY +TEAM +ON +STATUS +REFUSED BY +TIMES .*",
                r"vk_bob +frontend +tools +rate_limited .* 1 .*",
            ],
        ),
    ],
)
def test_the_readme_commands_print_the_answers(
    seeded_sqlite: Seeded, block: str, expected: list[str]
) -> None:
    """The README's commands as written, from the repository's directory (they read the demo's SQLite
    database; the JSON test covers PostgreSQL): their table's header and first row."""
    seeded = seeded_sqlite
    first = readme_blocks()[block].splitlines()[0]
    argv = shlex.split(first)
    assert argv[0] == ".venv/bin/mcp-gateway"
    result = subprocess.run(
        [sys.executable, "-m", "gateway_app", *argv[1:]], cwd=seeded.root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(expected[0], lines[1]), lines  # lines[0] is the title
    assert re.fullmatch(expected[1], lines[2]), lines


def test_the_budgets_command_of_the_readme_runs(seeded_sqlite: Seeded) -> None:
    seeded = seeded_sqlite
    second = readme_blocks()["question-limits-cli"].splitlines()[1]
    argv = shlex.split(second)
    result = subprocess.run(
        [sys.executable, "-m", "gateway_app", *argv[1:]], cwd=seeded.root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^team:backend +monthly +\d{4}-\d\d +\$2\.5000 +\$4,000\.0000 +0\.1 % .* threshold ",
        result.stdout,
        re.M,
    ), result.stdout
