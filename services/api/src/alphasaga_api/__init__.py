"""The HTTP API (``/v1``) and the MCP server of AlphaSaga: thin layers over the one client API."""
