"""`python -m oversight.mcp [--stdio] [--config FILE]`: see oversight.mcp.cli."""

from __future__ import annotations

from oversight.mcp.cli import main

if __name__ == "__main__":
    main()
