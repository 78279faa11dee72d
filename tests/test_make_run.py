"""The front door: `make run`'s launcher on a machine with nothing but Python.

No DATABASE_URL and no REDIS_URL: it must use a SQLite file and start its own Valkey, seed the
demo, serve the login page and the MCP gateway, and on Ctrl-C stop web, worker, beat, the
gateway and Valkey, leaving nothing running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.live import wait_until
from tools.services import free_port

BASE_DIR = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def children_of(pid: int) -> set[int]:
    """Every process whose ancestry leads to `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)}


def _state(pid: int) -> str:
    try:
        return (
            (Path(f"/proc/{pid}") / "status").read_text().split("State:")[1].split("\n")[0].lower()
        )
    except (OSError, IndexError):
        return "zombie"


def test_make_run_serves_the_demo_and_ctrl_c_stops_everything(tmp_path):
    port, mcp_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}
    }
    env.update(
        OVERSIGHT_VAR_DIR=str(tmp_path / "var"), PORT=str(port), OVERSIGHT_MCP_PORT=str(mcp_port)
    )
    log = (tmp_path / "run.log").open("wb")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tools.launcher"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output = tmp_path / "run.log"
    try:
        wait_until(
            lambda: "Press Ctrl-C" in output.read_text(errors="replace"), timeout=120, interval=0.2
        )
        text = output.read_text()
        assert "started the embedded Valkey" in text
        assert "SQLite at" in text
        assert "Demo traffic" in text
        login = httpx.get(f"http://127.0.0.1:{port}/login/")
        assert login.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ok"
        # Beat's sweep sends the demo's emails and says so; the routine lines of its runs
        # every couple of seconds stay out of the terminal (oversight.logfilters).
        wait_until(
            lambda: "outbox sweep, email deliveries:" in output.read_text(errors="replace"),
            timeout=30,
            interval=0.2,
        )
        text = output.read_text()
        assert "Task approvals.tasks.sweep_emails[" not in text
        assert "Sending due task sweep-emails" not in text
        # The gateway fronts the demo workspace as the demo's desktop-assistant.
        key = re.search(r"Demo agent desktop-assistant .*API key: (\S+),", text)
        assert key is not None
        tools, welcome = anyio.run(_through_the_gateway, f"http://127.0.0.1:{mcp_port}/mcp", key[1])
        assert {"workspace.read_file", "workspace.write_file"} <= tools
        assert "workspace.run_shell" not in tools  # no policy: never forwarded, not listed
        assert "The demo workspace" in welcome
        spawned = children_of(launcher.pid)
        assert len(spawned) >= 6, "web, worker, beat, the gateway, its upstream and Valkey"
        # Ctrl-C in a terminal: SIGINT to the launcher's process group.
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while alive(spawned) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(spawned), f"left running: {alive(spawned)}"
        assert "stopped." in output.read_text()
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)


async def _through_the_gateway(url: str, key: str) -> tuple[set[str], str]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        read = await client.call_tool("workspace.read_file", {"path": "welcome.md"})
        assert not read.is_error
        text = " ".join(b.text for b in read.content if isinstance(b, types.TextContent))
        return tools, text
