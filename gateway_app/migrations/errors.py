"""Why the gateway will not use a database's schema as it is. Each message says what to do."""

from __future__ import annotations


class SchemaError(RuntimeError):
    """The database's schema is not one this release can use (as it is, or at all)."""


class SchemaOutOfDate(SchemaError):
    """Older than this release's schema, and this command does not upgrade (`mcp-gateway db upgrade` does)."""


class SchemaTooNew(SchemaError):
    """Stamped with a revision this release does not know: a newer release upgraded it."""


class SchemaUnrecognised(SchemaError):
    """Unversioned, with some of the gateway's tables, but not the schema of any release."""


class MigrationLockTimeout(SchemaError):
    """Another process held the migration lock longer than we wait."""
