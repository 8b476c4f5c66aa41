"""Reading the gateway's database never creates one (a wrong directory is a clear error, not an empty
file) and never upgrades one (an older schema is a clear error naming `mcp-gateway db upgrade`)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect

from gateway_app.cli import main
from gateway_app.database import DatabaseNotFound, SchemaOutOfDate, create_schema, open_database
from gateway_common.db import make_engine
from tests.schema_fixtures import load_ddl


def test_a_missing_sqlite_file_is_refused_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseNotFound, match=f"no gateway database at {tmp_path}/data/gateway.db"):
        open_database("sqlite:///data/gateway.db")
    assert list(tmp_path.iterdir()) == []


def test_a_database_without_the_gateways_tables_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE notes (id INTEGER)")
    with pytest.raises(DatabaseNotFound, match="is not a gateway database"):
        open_database(f"sqlite:///{other}")
    empty = tmp_path / "empty.db"
    empty.touch()  # what an older README snippet left behind when run from the wrong directory
    with pytest.raises(DatabaseNotFound, match="is not a gateway database"):
        open_database(f"sqlite:///{empty}")


def test_a_database_at_this_releases_schema_opens(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    opened = open_database(f"sqlite:///{path}")
    try:
        assert {"tool_calls", "model_requests", "api_keys"} <= set(inspect(opened).get_table_names())
    finally:
        opened.dispose()


def test_an_older_database_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    engine = make_engine(f"sqlite:///{path}")
    load_ddl(engine, "release_52cf063")
    engine.dispose()
    with pytest.raises(
        SchemaOutOfDate, match=r"made by a release before migrations .* run `mcp-gateway db upgrade"
    ):
        open_database(f"sqlite:///{path}")
    with pytest.raises(SchemaOutOfDate, match="this release needs revision"):
        open_database(f"sqlite:///{path}", create=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "file_key_revocations" not in tables
    assert "gateway_schema_version" not in tables


@pytest.mark.parametrize("command", [["audit", "--summary"], ["keys", "list"]])
def test_read_only_cli_commands_refuse_a_missing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([*command, "--database-url", "sqlite:///data/gateway.db"])
    assert exited.value.code == 1
    assert f"no gateway database at {tmp_path}/data/gateway.db" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_keys_create_still_creates_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "create", "vk_new", "--database-url", "sqlite:///data/gateway.db"]) == 0
    assert (tmp_path / "data" / "gateway.db").is_file()
    assert main(["keys", "list", "--database-url", "sqlite:///data/gateway.db"]) == 0
    assert "vk_new" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["audit", "--summary"], ["keys", "list"], ["keys", "create", "vk_new"]])
def test_cli_commands_refuse_an_older_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    load_ddl(engine, "release_52cf063")
    engine.dispose()
    with pytest.raises(SystemExit) as exited:
        main([*command, "--database-url", f"sqlite:///{tmp_path / 'gateway.db'}"])
    assert exited.value.code == 1
    assert "run `mcp-gateway db upgrade --config FILE` (or --database-url URL)" in capsys.readouterr().err
