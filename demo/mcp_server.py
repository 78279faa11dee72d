"""The demo's upstream MCP server: a few file tools confined to one directory ($DEMO_WORKSPACE,
default var/workspace). The gateway (deploy/mcp.yaml) fronts it in `make run`; the demo's
policies decide which of its tools run at once, which need a person and which never run.

    python -m demo.mcp_server              # over stdio
    python -m demo.mcp_server --http 9000  # streamable HTTP at http://127.0.0.1:9000/mcp
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mcp.server import MCPServer

server = MCPServer(
    "workspace", instructions="Files in the demo's workspace directory (paths are relative)."
)

MAX_BYTES = 100_000


WELCOME = """# The demo workspace

The MCP gateway fronts this directory's server. Through it, desktop-assistant may list and read
files at once; writing one waits for a team lead's approval, deleting one for an engineering
manager's; `workspace.run_shell` has no policy, so the gateway neither lists nor forwards it.
"""


def _root() -> Path:
    root = Path(os.environ.get("DEMO_WORKSPACE", "var/workspace")).resolve()
    if not root.exists():
        root.mkdir(parents=True)
        (root / "welcome.md").write_text(WELCOME, encoding="utf-8")
    return root


def _inside(path: str) -> Path:
    """The workspace file `path` names; a path that leaves the workspace is refused."""
    root = _root()
    target = (root / path.lstrip("/")).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"{path} is outside the workspace")
    return target


@server.tool()
def list_files() -> list[str]:
    """The files in the workspace, as paths relative to it."""
    root = _root()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@server.tool()
def read_file(path: str) -> str:
    """A file's text (the first 100 KB)."""
    with _inside(path).open(encoding="utf-8", errors="replace") as handle:
        return handle.read(MAX_BYTES)


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a file, replacing what it held."""
    if len(content.encode()) > MAX_BYTES:
        raise ValueError("content is larger than 100 KB")
    target = _inside(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content, encoding="utf-8")
    return f"wrote {len(content)} characters to {path}"


@server.tool()
def delete_file(path: str) -> str:
    """Delete a file."""
    _inside(path).unlink()
    return f"deleted {path}"


@server.tool()
def run_shell(command: str) -> str:
    """Run a shell command. No policy covers it, so the gateway neither lists nor forwards it:
    it is here to show that."""
    raise ValueError("the demo workspace does not run commands")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The demo workspace's MCP server.")
    parser.add_argument("--http", type=int, default=0, help="serve streamable HTTP on this port")
    port = parser.parse_args().http
    if port:
        server.run(transport="streamable-http", host="127.0.0.1", port=port)
    else:
        server.run()
