"""`make bench BENCH=mcp` (issue 25): what the MCP gateway adds to an allowed tool call.

The same tool of the same upstream server (demo/mcp_server.py over streamable HTTP), called by
a real MCP client session directly and through the gateway, in alternating blocks so both see
the same machine; the gateway's path includes the check (`POST /api/v1/guardrails/check`) and
its hop. Target (issue 25): under 5 ms added at p50 on this machine.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tools.services import free_port, wait_for_http
from tools.stack import BASE_DIR, manage, percentile

POLICY = """
from guardrails import policies, policyfile
fields, problems = policyfile.check_fields(
    {"name": "mcp.workspace.read_file", "category": "read", "risk_level": "low"}, agent_names=set()
)
assert not problems, problems
policies.save_policy(fields=fields, source="bench")
"""
BLOCKS, CALLS = 10, 200  # per path: 2 000 calls each, alternating blocks of 200


def gateway_overhead(port: int, keys: list[str], env: dict[str, str], tmp: Path) -> None:
    print("\nMCP gateway: an allowed tools/call, direct vs through the gateway (issue 25)")
    manage(env, "shell", "--no-imports", "-c", POLICY)
    workspace = tmp / "workspace"
    workspace.mkdir(exist_ok=True)
    (workspace / "notes.md").write_text("Benchmark notes.\n" * 20)
    upstream_port, gateway_port = free_port(), free_port()
    config = tmp / "mcp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": gateway_port},
                "oversight_url": f"http://127.0.0.1:{port}",
                "servers": {"workspace": {"url": f"http://127.0.0.1:{upstream_port}/mcp"}},
            }
        )
    )
    upstream = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "demo.mcp_server", "--http", str(upstream_port)],
        cwd=BASE_DIR,
        env={**env, "DEMO_WORKSPACE": str(workspace)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "oversight.mcp", "--config", str(config)],
        cwd=BASE_DIR,
        env={**env, "OVERSIGHT_MCP_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_http(f"http://127.0.0.1:{gateway_port}/healthz", 30):
            print("  the gateway did not start")
            return
        direct, checks, through = anyio.run(
            _measure,
            f"http://127.0.0.1:{upstream_port}/mcp",
            f"http://127.0.0.1:{gateway_port}/mcp",
            keys[: len(keys) // 2],
            keys[len(keys) // 2 :],
            f"http://127.0.0.1:{port}",
        )
    finally:
        for process in (gateway, upstream):
            process.terminate()
            process.wait(timeout=15)
    for name, times in (
        ("direct to the upstream", direct),
        ("the check alone", checks),
        ("through the gateway", through),
    ):
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        print(f"  {name:<24} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({len(times)} calls)")
    added50 = percentile(through, 0.5) - percentile(direct, 0.5)
    added99 = percentile(through, 0.99) - percentile(direct, 0.99)
    verdict = "meets" if added50 < 5 else "MISSES"
    print(f"  added by the gateway: p50 {added50:.2f} ms, p99 {added99:.2f} ms ({verdict} < 5 ms)")


async def _measure(
    direct_url: str, gateway_url: str, keys: list[str], checkers: list[str], oversight_url: str
) -> tuple[list[float], list[float], list[float]]:
    """Calls one after another. The gateway's calls take turns over one session per agent: an
    agent may make 1 200 API calls a minute, and each gateway call makes two (check, outcome)."""
    async with AsyncExitStack() as stack:
        plain = await stack.enter_async_context(create_mcp_http_client())
        upstream = await stack.enter_async_context(
            Client(streamable_http_client(direct_url, http_client=plain), cache=None)
        )
        sessions = []
        for key in keys:
            keyed = await stack.enter_async_context(
                create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
            )
            sessions.append(
                await stack.enter_async_context(
                    Client(streamable_http_client(gateway_url, http_client=keyed), cache=None)
                )
            )
        turns = itertools.cycle(sessions)
        timings: dict[str, list[float]] = {"direct": [], "check": [], "gateway": []}
        api = await stack.enter_async_context(httpx.AsyncClient(base_url=oversight_url))
        # Agents of their own, and other arguments each time: checks with no outcome between
        # them would be a loop (SPEC §6) for the agents the gateway uses.
        check_keys = itertools.cycle(checkers)
        counter = itertools.count()

        async def direct() -> None:
            await _call(upstream, "read_file")

        async def gateway() -> None:
            await _call(next(turns), "workspace.read_file")

        async def check() -> None:
            # The call the gateway makes first (the one it makes after, the outcome report,
            # is off the answer's path).
            answer = await api.post(
                "/api/v1/guardrails/check",
                json={
                    "action": "mcp.workspace.read_file",
                    "params": {"path": f"notes-{next(counter)}.md"},
                },
                headers={"Authorization": f"Bearer {next(check_keys)}"},
            )
            answer.raise_for_status()

        paths = (("direct", direct), ("check", check), ("gateway", gateway))
        for _, call in paths:  # warm up every path (connections, the gateway's key cache)
            for _ in range(2 * len(sessions)):
                await call()
        for _ in range(BLOCKS):
            for name, call in paths:
                for _ in range(CALLS):
                    started = time.perf_counter()
                    await call()
                    timings[name].append((time.perf_counter() - started) * 1000)
        return timings["direct"], timings["check"], timings["gateway"]


async def _call(client: Client, tool: str) -> None:
    with anyio.fail_after(30):  # a call that waits for a person would hang the benchmark
        result = await client.call_tool(tool, {"path": "notes.md"})
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
