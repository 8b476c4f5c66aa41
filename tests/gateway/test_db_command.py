"""``mcp-gateway db upgrade|current|history``, and what ``serve`` does with a schema it must not use:
one from a newer release, or an older one when ``gateway.database_migrations`` is manual."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from sqlalchemy import inspect, text

from gateway_app.cli import main
from gateway_app.database import prepare_database, upgrade_database
from gateway_app.migrations.runner import VERSION_TABLE, head, history
from gateway_common.db import make_engine
from tests.conftest import PYTHON, REPO_ROOT, free_port
from tests.schema_fixtures import load_ddl


def first_release_file(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    load_ddl(engine, "release_52cf063")
    engine.dispose()
    return url


def test_upgrade_creates_then_finds_nothing_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'gateway.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert capsys.readouterr().out == f"{tmp_path}/data/gateway.db: upgraded from empty to {head()}\n"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert (
        capsys.readouterr().out
        == f"{tmp_path}/data/gateway.db: already at revision {head()} (this release's head)\n"
    )
    assert main(["db", "current", "--database-url", url]) == 0
    assert capsys.readouterr().out == f"{tmp_path}/data/gateway.db: revision {head()} (this release's head)\n"


def test_upgrade_stamps_and_upgrades_a_first_release_database_named_by_the_policy_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = first_release_file(tmp_path / "gateway.db")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"database_url": url}}))

    assert main(["db", "current", "--config", str(config)]) == 1
    assert (
        "unversioned, made by a release before migrations (its tables match 0001)" in capsys.readouterr().out
    )

    assert main(["db", "upgrade", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{tmp_path}/gateway.db: made before migrations, recognised as revision 0001; stamped",
        f"{tmp_path}/gateway.db: upgraded from 0001 to {head()}",
    ]


def test_current_on_an_older_database_says_to_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0001'"))
    engine.dispose()
    assert main(["db", "current", "--database-url", url]) == 1
    assert (
        f"revision 0001; this release's head is {head()}: run `mcp-gateway db upgrade`"
        in capsys.readouterr().out
    )


def test_history_lists_the_revisions_and_marks_the_databases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(history())
    assert (
        lines[0]
        == "0001  The first release's schema (commit 52cf063): keys, audit log, spend ledger, budget alerts."
    )
    assert lines[-1].startswith(f"{head()} (head)  ")

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    capsys.readouterr()
    assert main(["db", "history", "--database-url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"{head()} (head, current)  ")


@pytest.mark.parametrize("command", ["current", "history"])
def test_reading_commands_never_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    assert main(["db", command, "--database-url", f"sqlite:///{tmp_path / 'gateway.db'}"]) == 1
    assert f"no database at {tmp_path}/gateway.db" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_database_from_a_newer_release_is_refused_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    for command in (["db", "upgrade"], ["db", "current"]):
        assert main([*command, "--database-url", url]) == 1
        assert "revision 0099, which this release of mcp-gateway does not know" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["audit", "--database-url", url])
    assert "a newer release has upgraded it" in capsys.readouterr().err


def serve_until_it_exits(config: Path, tmp_path: Path) -> tuple[int, str]:
    result = subprocess.run(
        [PYTHON, "-m", "gateway_app", "serve", "--config", str(config)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_serve_refuses_a_database_from_a_newer_release(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    engine.dispose()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"gateway": {"port": free_port(), "database_url": url}}))
    code, output = serve_until_it_exits(config, tmp_path)
    assert code != 0
    assert "its schema is at revision 0099, which this release of mcp-gateway does not know" in output
    assert "Application startup failed" in output


@pytest.mark.slow
def test_serve_with_manual_migrations_refuses_an_older_database_and_leaves_it(tmp_path: Path) -> None:
    url = first_release_file(tmp_path / "gateway.db")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {"gateway": {"port": free_port(), "database_url": url, "database_migrations": "manual"}}
        )
    )
    code, output = serve_until_it_exits(config, tmp_path)
    assert code != 0
    assert "gateway.database_migrations is manual: run `mcp-gateway db upgrade --config FILE`" in output
    engine = make_engine(url)
    assert VERSION_TABLE not in inspect(engine).get_table_names()
    # Once upgraded by hand, the manual gateway accepts it.
    upgrade_database(engine)
    assert prepare_database(engine, "manual") is None
    engine.dispose()
