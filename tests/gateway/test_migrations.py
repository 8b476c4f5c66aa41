"""The schema's migrations, on SQLite and PostgreSQL: empty databases, the first release's and those
made by create_all before migrations all reach the head with their rows; the models and the
migrations agree; a database from a newer release or of no release's shape is refused; a failed
migration changes nothing; the lock gives up after its wait."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, SQLModel, select

from gateway_app.database import (
    MigrationLockTimeout,
    SchemaTooNew,
    SchemaUnrecognised,
    schema_state,
    target_metadata,
    upgrade_database,
)
from gateway_app.migrations import runner
from gateway_app.migrations.lock import ADVISORY_LOCK_KEY
from gateway_common.db import make_engine
from gateway_common.keystore import ApiKey, FileKeyRevocation, create_key
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from mcp_gateway.audit.models import ToolCall
from tests.conftest import PYTHON, REPO_ROOT
from tests.postgres import scratch_database
from tests.schema_fixtures import insert_rows, load_ddl, postgres_sequences_follow

MODELS: dict[str, type[SQLModel]] = {
    "api_keys": ApiKey,
    "file_key_revocations": FileKeyRevocation,
    "tool_calls": ToolCall,
    "model_requests": ModelRequest,
    "budget_alerts": BudgetAlertRecord,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
        yield engine
        engine.dispose()
        return
    with scratch_database("h9_alembic") as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would write to turn this database into the models' schema."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": runner.VERSION_TABLE, "compare_type": True}
        )
        return list(compare_metadata(context, target_metadata()))


def versions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text(f"SELECT version_num FROM {runner.VERSION_TABLE}"))]


def assert_rows_intact(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Every fixture row reads back, value for value, through today's models."""
    with Session(engine) as db:
        for table, expected in rows.items():
            model = MODELS[table]
            key = next(iter(model.__table__.primary_key.columns)).name  # type: ignore[attr-defined]
            stored = {getattr(r, key): r.model_dump() for r in db.exec(select(model)).all()}
            for row in expected:
                got = stored[row[key]]
                for column, value in row.items():
                    if isinstance(value, datetime):
                        assert got[column] == value, (table, column)
                    else:
                        assert got[column] == value, (table, column, got[column], value)


def test_there_is_one_head_and_revisions_are_numbered_in_order() -> None:
    heads = runner.scripts().get_heads()
    assert len(heads) == 1, f"several heads {heads}: two revisions name the same down_revision"
    chain = [script.revision for script in runner.history()]
    assert chain == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    assert runner.pending(None) == tuple(chain) and runner.pending(chain[-1]) == ()
    assert runner.pending("0001") == tuple(chain[1:])
    files = sorted(p.name for p in (runner.SCRIPT_LOCATION / "versions").glob("[0-9]*.py"))
    assert [name[:4] for name in files] == chain


def test_an_empty_database_is_brought_to_the_head_the_models_declare(engine: Engine) -> None:
    result = upgrade_database(engine)
    assert (result.before, result.stamped, result.applied) == (None, None, runner.pending(None))
    differences = schema_differences(engine)
    assert differences == [], (
        f"the models and the migrations disagree: {differences}. Every model change needs a revision "
        "(README: Changing the schema)"
    )
    assert versions(engine) == [runner.head()]
    again = upgrade_database(engine)
    assert (again.before, again.applied) == (runner.head(), ())


def test_the_comparison_sees_a_schema_that_is_not_the_models(engine: Engine) -> None:
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_tool_calls_key_time"))
        conn.execute(text("ALTER TABLE budget_alerts ADD COLUMN note VARCHAR"))
    kinds = sorted(d[0] for d in schema_differences(engine))
    assert kinds == ["add_index", "remove_column"]


def test_a_first_release_database_is_stamped_then_upgraded_with_its_rows(engine: Engine) -> None:
    load_ddl(engine, "release_52cf063")
    rows = insert_rows(engine, "rows_52cf063")
    postgres_sequences_follow(engine)
    assert schema_state(engine).recognised == "0001"

    result = upgrade_database(engine)

    assert (result.before, result.stamped, result.applied) == ("0001", "0001", runner.pending("0001"))
    assert versions(engine) == [runner.head()]
    assert schema_differences(engine) == []
    assert_rows_intact(engine, rows)
    with Session(engine) as db:
        assert {c.blocked_by for c in db.exec(select(ToolCall)).all()} == {None}
        assert {r.usage_estimated for r in db.exec(select(ModelRequest)).all()} == {None}
    # Today's code writes to it: the rows only later releases can hold, and a new key secret.
    later = insert_rows(engine, "rows_95ea5bb")
    assert_rows_intact(engine, later)
    record, _ = create_key(engine, "vk_after_upgrade")
    assert record.id == 3


def test_a_database_made_by_main_before_migrations_is_stamped_at_0002(engine: Engine) -> None:
    load_ddl(engine, "main_95ea5bb")
    rows = insert_rows(engine, "rows_52cf063")
    later = insert_rows(engine, "rows_95ea5bb")
    postgres_sequences_follow(engine)

    result = upgrade_database(engine)

    assert (result.before, result.stamped, result.applied) == ("0002", "0002", runner.pending("0002"))
    assert versions(engine) == [runner.head()]
    assert schema_differences(engine) == []
    assert_rows_intact(engine, rows)
    assert_rows_intact(engine, later)


def test_a_first_release_sqlite_file_that_main_extended_is_stamped_at_0002(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    load_ddl(engine, "release_52cf063_then_main_95ea5bb")
    rows = insert_rows(engine, "rows_52cf063")
    later = insert_rows(engine, "rows_95ea5bb")

    result = upgrade_database(engine)

    assert (result.stamped, result.applied) == ("0002", runner.pending("0002"))
    assert schema_differences(engine) == []
    assert_rows_intact(engine, rows)
    assert_rows_intact(engine, later)
    engine.dispose()


def test_a_release_between_with_some_additions_gets_the_others(engine: Engine) -> None:
    load_ddl(engine, "release_52cf063")
    rows = insert_rows(engine, "rows_52cf063")
    with engine.begin() as conn:  # what add_missing_columns did for a release that had only blocked_by
        conn.execute(text("ALTER TABLE tool_calls ADD COLUMN blocked_by VARCHAR"))

    result = upgrade_database(engine)

    assert (result.stamped, result.applied) == ("0001", runner.pending("0001"))
    assert schema_differences(engine) == []
    assert_rows_intact(engine, rows)


def test_a_database_from_a_newer_release_is_refused_and_left_alone(engine: Engine) -> None:
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {runner.VERSION_TABLE} SET version_num = '0099'"))
    with pytest.raises(SchemaTooNew, match=r"revision 0099, which this release of mcp-gateway does not know"):
        upgrade_database(engine)
    with pytest.raises(SchemaTooNew, match="a newer release has upgraded it"):
        schema_state(engine)
    assert versions(engine) == ["0099"]


def test_gateway_tables_of_no_release_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE tool_calls (id VARCHAR(32) PRIMARY KEY, key_id VARCHAR NOT NULL)"))
    with pytest.raises(
        SchemaUnrecognised,
        match=r"missing: api_keys, tool_calls\.arguments, .*tool_calls\.timestamp, .*, model_requests, budget_alerts\)",
    ):
        upgrade_database(engine)
    assert inspect(engine).get_table_names() == ["tool_calls"]


def test_a_failed_migration_changes_nothing(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real_upgrade = command.upgrade

    def upgrade_then_fail(config: Any, revision: str) -> None:
        real_upgrade(config, revision)  # every table created, the version stamped ...
        raise RuntimeError("... and then the process fails before the commit")

    monkeypatch.setattr(command, "upgrade", upgrade_then_fail)
    with pytest.raises(RuntimeError, match="before the commit"):
        upgrade_database(engine)
    assert inspect(engine).get_table_names() == []


def test_the_lock_gives_up_after_its_wait(engine: Engine, tmp_path: Path) -> None:
    holder = make_engine(str(engine.url.render_as_string(hide_password=False)))
    with holder.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
        else:
            conn.connection.dbapi_connection.isolation_level = None  # type: ignore[union-attr]
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        with pytest.raises(MigrationLockTimeout, match="held the schema migration lock"):
            upgrade_database(engine, lock_wait=0)
        conn.rollback()
    holder.dispose()
    assert inspect(engine).get_table_names() == []


def test_the_developers_alembic_command_upgrades_a_scratch_database_and_finds_nothing_to_generate(
    tmp_path: Path,
) -> None:
    """README, "Changing the schema": ``alembic`` configured by pyproject.toml, with -x database_url."""
    url = f"sqlite:///{tmp_path / 'scratch.db'}"

    def alembic(*args: str) -> str:
        done = subprocess.run(
            [PYTHON, "-m", "alembic", "-x", f"database_url={url}", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    alembic("upgrade", "head")
    assert "No new upgrade operations detected." in alembic("check")
    assert alembic("current").strip().endswith(f"{runner.head()} (head)")


def test_only_the_migrations_create_tables() -> None:
    """``create_all`` would race between replicas and skip the version table: nothing calls it."""
    packages = ("gateway_app", "mcp_gateway", "llm_proxy", "gateway_common", "policies", "benchmarks")
    callers = [
        str(path.relative_to(REPO_ROOT))
        for package in packages
        for path in (REPO_ROOT / package).rglob("*.py")
        if ".create_all(" in path.read_text(encoding="utf-8")
    ]
    assert callers == []
