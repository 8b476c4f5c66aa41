"""The model proxy: Claude Code's (and OpenAI-compatible tools') model traffic through the gateway.

A thin adapter over the pure policy core in `policies` (routing, rate limits,
budgets, pricing). Mounted by `gateway_app.app.create_app` next to /mcp, on the
same port; its resources (`runtime.LlmRuntime`) live in the app's lifespan state
under ``"llm"``, and the rate limiter also under ``"limiter"`` for MCP tool calls.
"""
