"""The HTTP client the gateway uses towards upstream MCP servers and model providers."""
