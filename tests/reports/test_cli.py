"""``mcp-gateway audit`` and ``mcp-gateway report``: paging, filters, ``--json``/``--csv``, ``audit
show``, refusals of bad flags, help for every flag, and read-only opening."""

from __future__ import annotations

import argparse
import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway_app.cli import build_parser, main
from gateway_app.database import create_schema
from gateway_app.queries import DailySpend, ModelRequestRecord, ToolCallRecord, csv_header
from gateway_common.db import make_engine
from tests.reports.seed import Seeded, seed

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, Seeded]:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    create_schema(engine)
    seeded = seed(engine, NOW)
    engine.dispose()
    return url, seeded


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return orjson.loads(out)


def newest_first(stamps: dict[str, datetime]) -> list[str]:
    return [ident for _, ident in sorted(((stamp, ident) for ident, stamp in stamps.items()), reverse=True)]


def test_paging_with_the_printed_cursor(
    database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str]
) -> None:
    url, seeded = database
    ids: list[str] = []
    cursor: str | None = None
    while True:
        extra: list[str] = ["--cursor", cursor] if cursor else []
        page = run_json(capsys, "audit", "--database-url", url, "--limit", "4", *extra)
        assert page["limit"] == 4 and len(page["items"]) <= 4
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids == newest_first(seeded.tool_calls)
    everything = run_json(capsys, "audit", "--database-url", url, "--all")
    assert [item["id"] for item in everything["items"]] == ids and everything["next_cursor"] is None
    # A table says how to get the next page, on standard error.
    code, out, err = run(capsys, "audit", "--database-url", url, "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3
    assert err.startswith("more: add --cursor ")
    second = run_json(capsys, "audit", "--database-url", url, "--limit", "2", "--cursor", err.split()[3])
    assert [item["id"] for item in second["items"]] == ids[2:4]


def test_csv_parses_with_its_header(database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str]) -> None:
    url, seeded = database
    code, out, _ = run(capsys, "audit", "--database-url", url, "--all", "--csv", "--limit", "1")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == csv_header(ToolCallRecord)
    assert [row["id"] for row in rows] == newest_first(seeded.tool_calls)
    bob = next(row for row in rows if row["id"] == "tc0006")
    assert bob["blocked_by"] == "rate_limit:key:vk_bob:tool_calls_per_minute" and bob["session_id"] == ""
    code, out, _ = run(capsys, "audit", "requests", "--database-url", url, "--csv", "--key", "vk_alice")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == csv_header(ModelRequestRecord)
    assert sorted(row["request_id"] for row in rows) == ["mr0001", "mr0002", "mr0003", "mr0012", "mr0013"]
    assert [float(row["cost_usd"]) for row in rows if row["request_id"] == "mr0003"] == [0.125]
    code, out, _ = run(
        capsys,
        "report",
        "spend",
        "--database-url",
        url,
        "--now",
        NOW.isoformat(),
        "--month",
        "--daily",
        "--csv",
    )
    daily = list(csv.DictReader(io.StringIO(out)))
    assert list(daily[0]) == csv_header(DailySpend)
    assert sum(float(row["cost_usd"]) for row in daily) == 3.6875
    code, out, _ = run(capsys, "audit", "--database-url", url, "--csv", "--client", "nobody")
    assert out.splitlines() == [",".join(csv_header(ToolCallRecord))]  # no rows: the header alone


@pytest.mark.parametrize("spelling", ["rate_limited", "RATE_LIMITED", "Rate-Limited", " rate-limited "])
def test_status_in_any_case(
    database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    url, _ = database
    calls = run_json(capsys, "audit", "--database-url", url, "--status", spelling)
    assert sorted(item["id"] for item in calls["items"]) == ["tc0006", "tc0015"]
    requests = run_json(capsys, "audit", "requests", "--database-url", url, "--status", spelling)
    assert sorted(item["request_id"] for item in requests["items"]) == ["mr0007", "mr0019"]
    several = run_json(capsys, "audit", "--database-url", url, "--status", spelling, "--status", "DENIED")
    assert sorted(item["id"] for item in several["items"]) == ["tc0004", "tc0006", "tc0007", "tc0015"]


def test_audit_show_prints_arguments_and_result(
    database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = database
    code, out, _ = run(capsys, "audit", "show", "tc0004", "--database-url", url)
    assert code == 0
    assert "exposed_name         filesystem__write_file" in out
    assert "Unknown tool: 'filesystem__write_file'" in out
    arguments = out.index("arguments:\n{\n")
    result = out.index("result:\n{\n")
    assert '"path": "src/4.ts"' in out[arguments:result]
    assert '"text": "result 4"' in out[result:]
    shown = run_json(capsys, "audit", "show", "tc0004", "--database-url", url)
    assert shown["arguments"] == {"path": "src/4.ts"} and shown["call"]["status"] == "denied"
    request = run_json(capsys, "audit", "show", "mr0015", "--database-url", url)
    assert (request["served_model"], request["provider"], request["cost_usd"]) == ("gpt-4o", "openai", 2.0)
    code, out, err = run(capsys, "audit", "show", "nothing-like-it", "--database-url", url)
    assert (code, out) == (1, "") and "no tool call and no model request has the id 'nothing-like-it'" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "requests", "--server", "x"], "audit requests takes no --server"),
        (["audit", "--model", "m"], "audit (tool calls) takes no --model"),
        (["audit", "show", "tc0001", "--key", "k"], "audit show takes no --key"),
        (["audit", "everything"], "Give `show ID`, `requests`, `prune` or nothing"),
        (["audit", "--cursor", "garbage!"], "--cursor: not a page cursor"),
        (["audit", "--month", "2026-13"], "--month: '2026-13' is not YYYY-MM"),
        (["report", "spend", "--week", "--since", "7d"], "--week and --since cannot be combined"),
        (["report", "limits", "--since", "1d", "--until", "2d"], "is not after --since"),
    ],
)
def test_bad_flags_are_refused_with_a_reason(
    database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    url, _ = database
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--database-url", url])
    assert message in str(refused.value.code)


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
def test_the_page_size_is_bounded(
    database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["audit", "--database-url", database[0], "--limit", limit])
    assert refused.value.code == 2
    assert "argument --limit" in capsys.readouterr().err


def test_budgets_need_the_policy(database: tuple[str, Seeded], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "report", "budgets", "--database-url", database[0])
    assert code == 2 and "needs --config FILE" in err


def test_reports_refuse_a_missing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["report", "top-keys", "--database-url", "sqlite:///data/gateway.db"])
    assert exited.value.code == 1
    assert f"no gateway database at {tmp_path}/data/gateway.db" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_flag_has_help() -> None:
    commands = _subparsers(build_parser())
    parsers = {"audit": commands["audit"], "report": commands["report"]}
    parsers.update({f"report {name}": p for name, p in _subparsers(commands["report"]).items()})
    assert set(parsers) == {
        "audit",
        "report",
        *(f"report {n}" for n in ("top-keys", "tools", "spend", "limits", "budgets")),
    }
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
