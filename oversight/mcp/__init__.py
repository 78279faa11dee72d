"""The MCP gateway (SPEC §13): fronts upstream MCP servers and checks every tool call with
Oversight. Run it with `make mcp` or `python -m oversight.mcp [--stdio] [--config FILE]`.

It is a client of Oversight's HTTP API (through `oversight_client`), not of its database: it
can run anywhere an agent could, and imports none of the server's apps."""
