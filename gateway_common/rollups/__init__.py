"""Daily rollups of the audit log and the spend ledger, so that reports over weeks and months read
thousands of rows instead of a million.

Six tables (`tables`), one row per UTC day (or month) and combination of what the reports group or
filter by:

- ``usage_daily`` (model requests): key, team, provider, model (the served one, else the requested
  one) with requests, tokens and cost: spend by key, top keys' model side, budgets;
- ``spend_daily``: the same without the key (a few rows a day): spend by team, model, provider;
- ``tool_calls_daily`` (audit rows): key, team, kind, status with calls: top keys' tool side and
  "tool calls today";
- ``tool_usage_daily`` (audit rows naming a tool): server, tool, team, client with calls, ok,
  refused and the last call, and ``tool_keys_monthly``: which keys called it on which days of a
  month (a bit per day): the tools report and its distinct keys. Per key and day this would be
  half as many rows as there are calls (keys call many tools a few times a day);
- ``refusals_daily`` (both, refused rows only: `policies.outcomes.REFUSALS`): surface, key, team,
  status, limit (``blocked_by``) with refusals, first and last: the limits report.

They are kept in the transaction that inserts the rows (`upkeep.insert_rows`: the batch writers,
their fallback file's replay, tests and seeders all insert through it), so a rollup never
disagrees with the rows beside it, and a batch that fails or a process killed mid-batch rolls both
back together. Rows put in another way (a bulk import by hand) are counted by
``mcp-gateway db rebuild-rollups``. Sums of costs are added batch by batch, so they equal a sum over
the rows to within float rounding (about 1e-15 of the amount).

Reports (`gateway_app.queries.rollup_reads`) read whole UTC days from the rollups and the partial
days at a period's ends from the rows, so every answer equals the one the rows alone give.

Retention deletes rows only; rollups are kept (one row per day and combination, a few megabytes a
year). So after a prune, a report over days older than the retention still answers from the
rollups, while listings (which read the rows) show nothing that old; a period starting inside a
pruned day gets that day's partial start from the (now absent) rows.

Measured with benchmarks/reports.py (1,000,000 rows of each table over 90 days, a 2-core machine
under load 4-9, p50 of five runs): with the covering indexes alone (revision 0003) 30-day reports
took 0.2-0.9 s (SQLite) and up to 1.9 s (PostgreSQL), 90-day ones 1.2-2.3 s and 1.3-4.5 s: reading
a million index entries takes that long whatever the plan. With the rollups every dashboard
question answers in under 100 ms, every report in under 250 ms but the 90-day tools report
(331 ms SQLite, 189 ms PostgreSQL). Rollup rows for those 2,000,000: usage 164,178, spend 8,865,
tool calls 81,193, tool usage 100,325, tool keys 108,998, refusals 46,884. Per key and day the
tool usage had 525,662 rows and the 90-day tools report took 2.5 s: hence no key in it, and the
monthly day bits for the keys. What keeping them costs the writers: benchmarks/writer_rollups.py.
"""

from gateway_common.rollups.tables import (
    ROLLUP_MODELS,
    RefusalsDaily,
    SpendDaily,
    ToolCallsDaily,
    ToolKeysMonthly,
    ToolUsageDaily,
    UsageDaily,
)
from gateway_common.rollups.upkeep import add_to_rollups, insert_rows, rebuild_rollups

__all__ = [
    "ROLLUP_MODELS",
    "RefusalsDaily",
    "SpendDaily",
    "ToolCallsDaily",
    "ToolKeysMonthly",
    "ToolUsageDaily",
    "UsageDaily",
    "add_to_rollups",
    "insert_rows",
    "rebuild_rollups",
]
