"""The front door: `make run`'s launcher on a machine with nothing but Python.

No DATABASE_URL and no REDIS_URL: it must use a SQLite file and start its own Valkey, seed the
demo, serve the login page, and on Ctrl-C stop web, worker, beat and Valkey, leaving nothing
running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}
    }
    env.update(OVERSIGHT_VAR_DIR=str(tmp_path / "var"), PORT=str(port))
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
        spawned = children_of(launcher.pid)
        assert len(spawned) >= 4, "web, worker, beat and the embedded Valkey"
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
