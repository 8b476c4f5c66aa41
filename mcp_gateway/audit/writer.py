"""The audit writer: a `BatchWriter` for `ToolCall` rows that redacts and caps arguments and results.

Everything here happens where the rows are stored (the writer process, or the writer's thread), not
on the request path, and before a row goes anywhere (the database or the fallback file):

- content off (``mcp.servers[].audit.log_content: false`` or ``virtual_keys[].audit_content:
  false``): arguments and result are replaced by ``{"_not_logged": "<why>"}``;
- otherwise secrets are replaced by markers (`redaction`), in the arguments, the result
  and the error text;
- a value whose JSON is over its size limit becomes a marked preview of that JSON, itself
  cleaned of secrets (`Redactor.json_text`);
- a value the database could not store (orjson refuses more than 254 levels of nesting)
  becomes ``{"_unstorable": "<reason>"}``, with its ``*_truncated`` flag set.

If cleaning a value fails, the value is replaced by a marker rather than stored as it was.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sqlalchemy import Engine

from gateway_common.writers.batch import BatchWriter
from gateway_common.writers.process import WriterProcess
from gateway_common.writers.rows import Row, describe, is_marker, unstorable
from mcp_gateway.audit.models import ToolCall, ToolCallRow
from mcp_gateway.audit.redaction import AuditRuleInputs, AuditRules, PolicySource, Redactor, TooLarge
from policies.gateway_settings import AuditSettings

logger = logging.getLogger("mcp_gateway.audit")

NOT_LOGGED = "_not_logged"
"""Key of the marker that stands for arguments or a result not stored by policy."""


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)  # as the database will encode it


def _preview(encoded: bytes, limit: int) -> dict[str, Any]:
    return {"_truncated": True, "bytes": len(encoded), "preview": encoded[:limit].decode("utf-8", "ignore")}


def cap_json(value: Any, limit: int) -> tuple[Any, bool]:
    """``value`` itself if its JSON fits in ``limit`` bytes, else a marked preview of it, or the
    ``_unstorable`` marker if it cannot be encoded at all. The flag says whether it was replaced."""
    return clean_json(value, limit, None)[:2]


def clean_json(value: Any, limit: int, redactor: Redactor | None) -> tuple[Any, bool, int]:
    """Like `cap_json`, with secrets replaced first (``redactor``); also returns how many were.

    A value too large to store, or with too many objects to walk (`TooLarge`), is stored as a
    preview of its JSON text, cleaned as text."""
    if value is None:
        return None, False, 0
    try:
        encoded = _encode(value)
    except Exception as exc:
        return unstorable(f"cannot be encoded as JSON: {describe(exc)}"), True, 0
    if len(encoded) <= limit:
        if redactor is None:
            return value, False, 0
        try:
            cleaned, found = redactor.value(value)
        except TooLarge:
            pass  # previewed and cleaned as text below
        else:
            if not found:
                return value, False, 0
            encoded = _encode(cleaned)  # markers change the size
            if len(encoded) <= limit:
                return cleaned, False, found
            return _preview(encoded, limit), True, found  # made of the cleaned value: nothing to clean
    capped = _preview(encoded, limit)
    found = 0
    if redactor is not None:
        capped["preview"], found = redactor.json_text(capped["preview"])
    return capped, True, found


class AuditCleaner:
    """The audit writer's ``prepare``: redacts, withholds and caps each row's content by the rules
    of the current policy (`use`). Picklable, so the writer process gets its own copy."""

    def __init__(self, settings: AuditSettings) -> None:
        self.settings = settings
        self._rules = AuditRules(settings)
        self._counts = {"redacted": 0, "withheld": 0, "salvaged": 0}

    def use(self, inputs: AuditRuleInputs) -> None:
        """Clean the next rows by these rules (`AuditRules.inputs` of the current policy)."""
        self._rules = AuditRules(*inputs)

    def take_counts(self) -> dict[str, int]:
        """Secrets replaced (``redacted``), rows without content (``withheld``) and rows stored with
        a marker (``salvaged``) since last asked."""
        counts = {name: count for name, count in self._counts.items() if count}
        self._counts = dict.fromkeys(self._counts, 0)
        return counts

    def __call__(self, row: Row) -> Row:
        row = dict(row)
        counts = self._counts
        try:
            rule = self._rules.for_row(row["key_id"], row.get("server"))
        except Exception as exc:
            logger.error("audit rules failed (%s); storing the row without its content", describe(exc))
            return _withheld(row, f"not logged: the redaction rules failed ({describe(exc)})", error_too=True)
        redactor = rule.redactor
        settings = self.settings
        try:
            error = row.get("error")
            if isinstance(error, str) and error:
                row["error"], cleaned = redactor.text(error)
                counts["redacted"] += cleaned
            if rule.withheld is not None:
                counts["withheld"] += 1
                return _withheld(row, rule.withheld)
            arguments, row["arguments_truncated"], found = clean_json(
                row.get("arguments"), settings.max_arguments_bytes, redactor
            )
            result, row["result_truncated"], more = clean_json(
                row.get("result"), settings.max_result_bytes, redactor
            )
        except Exception as exc:  # a bug in a rule must not let the secrets through
            logger.error("could not redact an audit row (%s); storing it without its content", describe(exc))
            return _withheld(row, f"not logged: redaction failed ({describe(exc)})", error_too=True)
        row["arguments"], row["result"] = arguments, result
        counts["redacted"] += found + more
        if is_marker(arguments) or is_marker(result):
            counts["salvaged"] += 1
        return row


class AuditWriter(BatchWriter[ToolCallRow]):
    def __init__(
        self,
        engine: Engine,
        settings: AuditSettings,
        *,
        policy: PolicySource | None = None,
        process: WriterProcess | None = None,
    ) -> None:
        """``policy``: where to read the current policy for per-server and per-key rules; without it,
        only ``settings`` (the built-in redactions plus its global names and patterns) apply.
        ``process``: the writer process that stores the rows (None: a thread of this process)."""
        self.settings = settings
        self._policy = policy
        self._rules_source: object = None
        self._rules_inputs: AuditRuleInputs | None = None
        self.redacted = 0
        """Secrets replaced by a marker so far."""
        self.withheld = 0
        """Rows stored without arguments and result (content logging off for their key or server)."""
        super().__init__(
            engine,
            ToolCall.__table__,  # type: ignore[attr-defined]
            prepare=AuditCleaner(settings),
            context=self._current_rules if policy is not None else None,
            flush_interval=settings.flush_interval_ms / 1000,
            batch_size=settings.batch_size,
            fallback_path=settings.fallback_file,
            name="audit",
            process=process,
        )

    def health(self) -> dict[str, Any]:
        return {**super().health(), "redacted_values": self.redacted, "content_not_logged": self.withheld}

    def _current_rules(self) -> AuditRuleInputs | None:
        """The current policy's rule inputs: the same object until the policy changes."""
        assert self._policy is not None
        policy = self._policy()
        if policy is not self._rules_source:
            self._rules_inputs = AuditRules.inputs(policy)
            self._rules_source = policy
        return self._rules_inputs


def _withheld(row: Row, why: str, *, error_too: bool = False) -> Row:
    """The row without its arguments and result (markers instead); ``error_too`` when the error text
    could not be cleaned either."""
    for name in ("arguments", "result"):
        if row.get(name) is not None:
            row[name] = {NOT_LOGGED: why}
        row[f"{name}_truncated"] = False
    if error_too and row.get("error") is not None:
        row["error"] = why
    return row
