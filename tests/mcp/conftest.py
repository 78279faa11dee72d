"""The MCP gateway as `make mcp` starts it, in front of the test upstream (tests/support/
mcp_upstream.py, over stdio and over streamable HTTP), calling the real web server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import yaml
from django.db import connection
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from approvals.models import ApprovalRequest, Status
from guardrails import policies, policyfile
from tests.support import live
from tools.services import free_port

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# The policies of the test upstream's tools, in the policy file's form. `files.format_disk` has
# none: unknown actions are denied, so the gateway does not list it.
POLICIES = [
    {"name": "mcp.files.read_file", "category": "read", "risk_level": "low"},
    {"name": "mcp.files.slow_read", "category": "read", "risk_level": "low"},
    {"name": "mcp.files.fail", "category": "read", "risk_level": "low"},
    {"name": "mcp.files.crash", "category": "read", "risk_level": "low"},
    {"name": "mcp.remote.read_file", "category": "read", "risk_level": "low"},
    {
        "name": "mcp.files.write_file",
        "category": "write",
        "risk_level": "high",  # an engineering manager decides
        "requires_approval": True,
    },
    {
        "name": "mcp.files.delete_file",
        "category": "write",
        "risk_level": "high",
        "requires_approval": True,
        "allowed_resources": ["/srv"],  # not a pattern: its speed test is timing, flaky on CI
    },
]


@dataclass
class GatewayProcess:
    url: str  # the MCP endpoint
    process: subprocess.Popen[bytes]
    log: Path  # the gateway's own log
    calls: Path  # every call the upstreams received, one JSON line each
    config: Path  # its config file

    def upstream_calls(self, marker: str) -> list[dict[str, Any]]:
        """The upstream calls whose arguments mention `marker` (each test uses its own)."""
        if not self.calls.exists():
            return []
        lines = self.calls.read_text().splitlines()
        return [call for call in map(json.loads, lines) if marker in json.dumps(call)]


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the gateway did not come up:\n{log.read_text()}")


@pytest.fixture(scope="module")
def gateway(web_server: Any, tmp_path_factory: Any) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("mcp")
    calls = tmp / "upstream-calls.jsonl"
    remote_port = free_port()
    remote = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_upstream", "--http", str(remote_port)],
        cwd=BASE_DIR,
        env={**os.environ, "UPSTREAM_LOG": str(calls)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "oversight_url": web_server.url,
        "servers": {
            "files": {
                "command": ["python", "-m", "tests.support.mcp_upstream"],
                "env": {"UPSTREAM_LOG": str(calls)},
                "cwd": str(BASE_DIR),
            },
            "remote": {"url": f"http://127.0.0.1:{remote_port}/mcp"},
        },
        "call_timeout": 20,
    }
    config_file = tmp / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = tmp / "gateway.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "oversight.mcp", "--config", str(config_file)],
        cwd=BASE_DIR,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", process, log)
        yield GatewayProcess(f"http://127.0.0.1:{port}/mcp", process, log, calls, config_file)
    finally:
        for proc in (process, remote):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def mcp_policies(transactional_db: None) -> None:
    for raw in POLICIES:
        fields, problems = policyfile.check_fields(raw, agent_names=set())
        assert not problems, problems
        policies.save_policy(fields=fields)


@asynccontextmanager
async def session(
    url: str,
    key: str,
    *,
    mode: str = "auto",
    elicitation: Any = None,  # an ElicitationFnT
) -> AsyncIterator[Client]:
    """A real MCP client session with the gateway, as the agent whose key it sends."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with (
        http,
        Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            elicitation_callback=elicitation,
            cache=None,
        ) as client,
    ):
        yield client


def text_of(result: types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent))


def decide_pending(agent: Any, decide: Callable[[ApprovalRequest], Any], count: int = 1) -> Any:
    """An approver in another thread who decides the agent's next `count` pending requests as
    they appear. Join the returned thread; it re-raises nothing, so check its `.decided`."""

    decided: list[ApprovalRequest] = []

    def run() -> None:
        try:
            while len(decided) < count:
                request = live.wait_until(
                    lambda: (
                        ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING)
                        .exclude(pk__in=[r.pk for r in decided])
                        .first()
                    ),
                    timeout=20,
                )
                decide(request)
                decided.append(request)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.decided = decided  # type: ignore[attr-defined]
    thread.start()
    return thread
