"""What both front doors (`mcp_gateway`, `llm_proxy`) stand on: the HTTP client transport, ASGI
helpers, key lookup, the database engine and the batched row writers, SSE, JSON limits.

Imports `policies` and libraries only; never a front door or the composition root.
"""
