"""Recognising a database made before migrations existed (by ``create_all``), to stamp it.

Releases up to this one created tables with ``create_all`` and added new columns with
``add_missing_columns``; their databases have no version table. What they hold is known exactly:
the first release's tables (revision 0001) and, by today, three additions (revision 0002). The sets
below are frozen history, never derived from the models: later revisions need no entry here, because
every database that reaches them is versioned.
"""

from __future__ import annotations

from sqlalchemy import Connection, inspect

from gateway_app.migrations.errors import SchemaUnrecognised


def _columns(names: str) -> frozenset[str]:
    return frozenset(names.split())


FIRST_RELEASE: dict[str, frozenset[str]] = {
    "api_keys": _columns("id key_id name team secret_sha256 prefix created_at expires_at revoked_at"),
    "tool_calls": _columns(
        "id timestamp request_id key_id key_name team client_name client_version session_id "
        "protocol_version exposed_name server tool arguments arguments_truncated result "
        "result_truncated status error latency_ms upstream_latency_ms"
    ),
    "model_requests": _columns(
        "request_id timestamp endpoint key_id key_name team provider requested_model served_model "
        "route attempts input_tokens output_tokens cache_read_tokens cache_write_tokens cost_usd "
        "price_source latency_ms ttfb_ms stream status http_status error_type error blocked_by "
        "session_id upstream_request_id user_agent"
    ),
    "budget_alerts": _columns(
        "id timestamp kind budget period period_label threshold spent_usd limit_usd resets_at message"
    ),
}
"""Revision 0001: the tables and columns of the release at commit 52cf063."""

ADDED_BEFORE_MIGRATIONS: dict[str, frozenset[str]] = {
    "file_key_revocations": frozenset({"id", "key_id", "revoked_at"}),
    "tool_calls": frozenset({"blocked_by"}),
    "model_requests": frozenset({"usage_estimated"}),
}
"""Revision 0002: what create_all and add_missing_columns added after it, until migrations."""


def _merge(*schemas: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    merged: dict[str, frozenset[str]] = {}
    for schema in schemas:
        for table, columns in schema.items():
            merged[table] = merged.get(table, frozenset()) | columns
    return merged


SIGNATURES: tuple[tuple[str, dict[str, frozenset[str]]], ...] = (
    ("0002", _merge(FIRST_RELEASE, ADDED_BEFORE_MIGRATIONS)),
    ("0001", FIRST_RELEASE),
)
"""Newest first: an unversioned database is stamped at the first whose tables and columns it has."""

LEGACY_TABLES = frozenset(_merge(FIRST_RELEASE, ADDED_BEFORE_MIGRATIONS))


def recognise(connection: Connection) -> str | None:
    """The revision an unversioned database's tables match, or None when it holds none of them.

    Raises `SchemaUnrecognised` for a database with some of the gateway's tables but not the
    schema of any release (a development build before the first release, or a damaged one).
    """
    inspector = inspect(connection)
    present = set(inspector.get_table_names()) & LEGACY_TABLES
    if not present:
        return None
    columns = {table: {c["name"] for c in inspector.get_columns(table)} for table in present}
    for revision, schema in SIGNATURES:
        if all(table in columns and wanted <= columns[table] for table, wanted in schema.items()):
            return revision
    missing: list[str] = []
    for table, wanted in FIRST_RELEASE.items():
        if table not in columns:
            missing.append(table)
        else:
            missing += [f"{table}.{column}" for column in sorted(wanted - columns[table])]
    raise SchemaUnrecognised(
        "it has some of the gateway's tables but no version table, and not the schema of any release "
        f"(missing: {', '.join(missing)}); it was not made by a release of mcp-gateway"
    )
