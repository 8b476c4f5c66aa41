"""Reading the gateway's database never creates one: a wrong directory is a clear error, not an empty file."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import inspect

from gateway_app.cli import main
from gateway_app.database import DatabaseNotFound, create_schema, open_database
from gateway_common.db import make_engine


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


def test_an_existing_gateway_database_opens_with_its_schema_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TABLE model_requests")
    opened = open_database(f"sqlite:///{path}")
    try:
        assert {"tool_calls", "model_requests", "api_keys"} <= set(inspect(opened).get_table_names())
    finally:
        opened.dispose()


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
