"""The composition root: settings, the app factory, the CLI, health, serving.

It builds what both front doors share once (database, keys, counters, writers)
and mounts `mcp_gateway` (/mcp) and `llm_proxy` (/v1/...) side by side.
"""
