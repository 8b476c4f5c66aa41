"""The downstream side: the /mcp endpoint clients talk to."""
