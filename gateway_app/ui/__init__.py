"""The dashboard: server-rendered pages under /ui for the people who govern the gateway (spend,
budgets, limits, tool calls, upstreams, keys, policy), behind the admin tokens of the policy.

`Dashboard` (gateway_app.ui.dashboard) is made by `create_app`; its routes are mounted at /ui.
"""

from gateway_app.ui.dashboard import Dashboard

__all__ = ["Dashboard"]
