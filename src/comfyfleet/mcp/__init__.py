"""`comfyfleet mcp`: the fleet as Model Context Protocol tools for LLM agents.

A client of one balancer's public API (never of Redis): `client` (the HTTP calls),
`catalog` (workflows as tools), `jobs` (run, follow, cancel, answer), `progress` (job
events as progress notifications), `preview` (downscaled image content), `resources`,
`server` (the MCP handlers and change notifications), `transport` (stdio and streamable
HTTP with a bearer token in front). Needs the `mcp` extra: `pip install 'comfyfleet[mcp]'`.
"""
