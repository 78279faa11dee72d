"""An upstream MCP server written for the gateway's tests: a few file tools that write every call
they receive to a log (one JSON line each, in $UPSTREAM_LOG), so a test can say exactly what
reached the upstream, and a tool that kills the server mid-call.

    python -m tests.support.mcp_upstream              # over stdio
    python -m tests.support.mcp_upstream --http PORT  # streamable HTTP at /mcp
"""

from __future__ import annotations

import argparse
import json
import os
import time

from mcp.server import MCPServer

server = MCPServer("files")


def _log(tool: str, arguments: dict[str, object]) -> None:
    path = os.environ.get("UPSTREAM_LOG")
    if path:
        line = json.dumps({"tool": tool, "arguments": arguments, "pid": os.getpid()})
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


@server.tool()
def read_file(path: str) -> str:
    """Read a file (the test's pretend one)."""
    _log("read_file", {"path": path})
    return f"contents of {path}"


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a file."""
    _log("write_file", {"path": path, "content": content})
    return f"wrote {len(content)} bytes to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    _log("delete_file", {"path": path})
    return f"deleted {path}"


@server.tool()
def format_disk(path: str) -> str:
    """No policy covers this one: the gateway neither lists nor forwards it."""
    _log("format_disk", {"path": path})
    return f"formatted {path}"


@server.tool()
def slow_read(path: str, seconds: float = 0.5) -> str:
    """Read slowly."""
    _log("slow_read", {"path": path, "seconds": seconds})
    time.sleep(seconds)
    return f"slowly read {path}"


@server.tool()
def fail(path: str) -> str:
    """Always fails (the tool's own error)."""
    _log("fail", {"path": path})
    raise ValueError(f"{path}: no such file")


@server.tool()
def crash(path: str) -> str:
    """Kill the server in the middle of the call."""
    _log("crash", {"path": path})
    os._exit(3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0)
    args = parser.parse_args()
    if args.http:
        server.run(transport="streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
