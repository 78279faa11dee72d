"""The MCP gateway end to end (SPEC §13): a real MCP client session, the gateway process, real
upstream MCP servers (stdio and streamable HTTP) and the real Oversight web server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters

from approvals import services
from approvals.models import ApprovalRequest, Status
from controls.models import Outcome, Receipt
from oversight_client import params_sha256
from tests.conftest import shift_into_past
from tests.mcp.conftest import BASE_DIR, decide_pending, session, text_of
from tests.support import live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def marker() -> str:
    return f"/srv/{uuid.uuid4().hex[:12]}"


def test_tools_are_listed_by_server_and_certain_denies_are_left_out(
    gateway, make_agent, mcp_policies
):
    agent = make_agent()

    async def scenario() -> list[str]:
        async with session(gateway.url, agent.key) as client:
            return [tool.name for tool in (await client.list_tools()).tools]

    names = anyio.run(scenario)
    assert {"files.read_file", "files.write_file", "files.delete_file"} <= set(names)
    assert "remote.read_file" in names
    assert "files.format_disk" not in names  # no policy: Oversight would refuse it
    assert "remote.write_file" not in names


def test_an_allowed_call_reaches_the_upstream_once_and_its_outcome_is_recorded(
    gateway, make_agent, mcp_policies
):
    agent = make_agent()
    path = marker()

    async def scenario() -> types.CallToolResult:
        async with session(gateway.url, agent.key) as client:
            return await client.call_tool("files.read_file", {"path": path})

    result = anyio.run(scenario)
    assert not result.is_error
    assert text_of(result) == f"contents of {path}"
    reached = gateway.upstream_calls(path)
    assert [(call["tool"], call["arguments"]) for call in reached] == [
        ("read_file", {"path": path})
    ]
    outcome = live.wait_until(
        lambda: Outcome.objects.filter(agent=agent.agent, action="mcp.files.read_file").first()
    )
    assert outcome.success
    assert outcome.params_sha256 == params_sha256("mcp.files.read_file", {"path": path})


def test_a_denied_call_never_reaches_the_upstream(gateway, make_agent, mcp_policies):
    agent = make_agent()

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with session(gateway.url, agent.key) as client:
            forbidden = await client.call_tool("files.delete_file", {"path": "/etc/passwd"})
            unknown = await client.call_tool("files.format_disk", {"path": "/etc/x-unlisted"})
            return forbidden, unknown

    forbidden, unknown = anyio.run(scenario)
    assert forbidden.is_error
    assert "resource_not_allowed" in text_of(forbidden)
    assert forbidden.meta is not None
    assert forbidden.meta["oversight"]["decision"] == "deny"
    assert unknown.is_error
    assert "unknown_action" in text_of(unknown)
    assert gateway.upstream_calls("/etc/passwd") == []
    assert gateway.upstream_calls("/etc/x-unlisted") == []
    assert not ApprovalRequest.objects.filter(agent=agent.agent).exists()


def test_a_call_needing_approval_runs_after_approval_with_the_approvers_changes(
    gateway, make_agent, mcp_policies, approvers
):
    """A client without elicitation hears of the request page in progress notifications."""
    agent = make_agent()
    path = marker()
    changed = {"path": path, "content": "reviewed"}
    approver = decide_pending(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["em"], modified_params=changed
        ),
    )
    heard_of: list[str] = []

    async def heard(progress: float, total: float | None, message: str | None) -> None:
        heard_of.append(message or "")

    async def scenario() -> types.CallToolResult:
        async with session(gateway.url, agent.key) as client:
            return await client.call_tool(
                "files.write_file",
                {"path": path, "content": "draft"},
                progress_callback=heard,
            )

    result = anyio.run(scenario)
    approver.join()
    assert not result.is_error, text_of(result)
    assert [call["arguments"] for call in gateway.upstream_calls(path)] == [changed]
    request = ApprovalRequest.objects.get(agent=agent.agent)
    assert request.action == "mcp.files.write_file"
    assert request.params == {"path": path, "content": "draft"}
    assert any(f"/requests/{request.pk}" in message for message in heard_of)
    receipt = Outcome.objects.get(approval_request=request)
    assert receipt.receipt == Receipt.MATCHED
    assert receipt.success


def test_a_rejected_or_expired_call_never_reaches_the_upstream(
    gateway, make_agent, mcp_policies, approvers
):
    agent = make_agent()
    rejected_path, expired_path = marker(), marker()
    rejecter = decide_pending(
        agent.agent,
        lambda r: services.reject_request(
            request_id=r.pk, reviewer=approvers["em"], reason="Not during the freeze."
        ),
    )

    def expire(request: ApprovalRequest) -> None:
        shift_into_past(request.pk, 7 * 24 * 3600)
        assert services.expire_request(request_id=request.pk)

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with session(gateway.url, agent.key) as client:
            rejected = await client.call_tool(
                "files.write_file", {"path": rejected_path, "content": "x"}
            )
            rejecter.join()
            expirer = decide_pending(agent.agent, expire)
            expired = await client.call_tool(
                "files.write_file", {"path": expired_path, "content": "x"}
            )
            expirer.join()
            return rejected, expired

    rejected, expired = anyio.run(scenario)
    assert rejected.is_error
    assert "Rejected by" in text_of(rejected)
    assert "Not during the freeze." in text_of(rejected)
    assert expired.is_error
    assert "Expired" in text_of(expired)
    assert "Rejected" not in text_of(expired)
    assert gateway.upstream_calls(rejected_path) == []
    assert gateway.upstream_calls(expired_path) == []
    statuses = set(
        ApprovalRequest.objects.filter(agent=agent.agent).values_list("status", flat=True)
    )
    assert statuses == {Status.REJECTED, Status.EXPIRED}


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_client_with_url_elicitation_is_sent_to_the_request_page(
    gateway, make_agent, mcp_policies, approvers, mode
):
    """2026-07-28 sessions (auto) get an InputRequiredResult and call again; 2025-11-25 ones
    (legacy) get an elicitation/create request during the call. Either way the approved call
    runs once."""
    agent = make_agent()
    path = marker()
    approver = decide_pending(
        agent.agent,
        lambda r: services.approve_request(request_id=r.pk, reviewer=approvers["em"]),
    )
    asked: list[types.ElicitRequestURLParams] = []

    async def elicitation(ctx, params):
        asked.append(params)
        return types.ElicitResult(action="accept")

    async def scenario() -> types.CallToolResult:
        async with session(gateway.url, agent.key, mode=mode, elicitation=elicitation) as client:
            return await client.call_tool("files.write_file", {"path": path, "content": "x"})

    result = anyio.run(scenario)
    approver.join()
    assert not result.is_error, text_of(result)
    request = ApprovalRequest.objects.get(agent=agent.agent)
    assert len(asked) == 1
    assert asked[0].mode == "url"
    assert asked[0].url.endswith(f"/requests/{request.pk}/")
    assert len(gateway.upstream_calls(path)) == 1
    assert Outcome.objects.get(approval_request=request).receipt == Receipt.MATCHED


def test_declining_the_approval_page_withdraws_the_request(gateway, make_agent, mcp_policies):
    agent = make_agent()
    path = marker()

    async def elicitation(ctx, params):
        return types.ElicitResult(action="decline")

    async def scenario() -> types.CallToolResult:
        async with session(gateway.url, agent.key, elicitation=elicitation) as client:
            return await client.call_tool("files.write_file", {"path": path, "content": "x"})

    result = anyio.run(scenario)
    assert result.is_error
    assert "withdrawn" in text_of(result)
    assert ApprovalRequest.objects.get(agent=agent.agent).status == Status.CANCELLED
    assert gateway.upstream_calls(path) == []


def test_twenty_concurrent_calls_behave_as_one_at_a_time(
    gateway, make_agent, mcp_policies, approvers
):
    agent = make_agent()
    run = uuid.uuid4().hex[:8]
    approver = decide_pending(
        agent.agent,
        lambda r: services.approve_request(request_id=r.pk, reviewer=approvers["em"]),
        count=5,
    )
    calls = (
        [("files.read_file", {"path": f"/srv/{run}/read/{i}"}) for i in range(10)]
        + [("files.delete_file", {"path": f"/etc/{run}/{i}"}) for i in range(5)]
        + [
            ("files.write_file", {"path": f"/srv/{run}/write/{i}", "content": "x"})
            for i in range(5)
        ]
    )
    results: dict[int, types.CallToolResult] = {}

    async def scenario() -> None:
        async with session(gateway.url, agent.key) as client:

            async def one(index: int, name: str, arguments: dict) -> None:
                results[index] = await client.call_tool(name, arguments)

            async with anyio.create_task_group() as group:
                for index, (name, arguments) in enumerate(calls):
                    group.start_soon(one, index, name, arguments)

    anyio.run(scenario)
    approver.join()
    assert len(approver.decided) == 5
    for index, (name, _) in enumerate(calls):
        assert results[index].is_error == (name == "files.delete_file"), text_of(results[index])
    reached = gateway.upstream_calls(run)
    assert sorted(call["tool"] for call in reached) == ["read_file"] * 10 + ["write_file"] * 5
    assert len({call["arguments"]["path"] for call in reached}) == 15  # each exactly once
    receipts = Outcome.objects.filter(agent=agent.agent, receipt=Receipt.MATCHED)
    assert receipts.count() == 5
    live.wait_until(
        lambda: (
            Outcome.objects.filter(agent=agent.agent, action="mcp.files.read_file").count() == 10
        )
    )


def test_an_upstream_that_crashes_gives_an_error_and_the_gateway_keeps_serving(
    gateway, make_agent, mcp_policies
):
    agent = make_agent()
    path = marker()

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult, types.CallToolResult]:
        async with session(gateway.url, agent.key) as client:
            crashed = await client.call_tool("files.crash", {"path": path})
            after = await client.call_tool("files.read_file", {"path": path})
            remote = await client.call_tool("remote.read_file", {"path": path})
            return crashed, after, remote

    crashed, after, remote = anyio.run(scenario)
    assert crashed.is_error
    assert "upstream" in text_of(crashed).lower()
    assert not after.is_error, text_of(after)  # the stdio upstream was started again
    assert not remote.is_error, text_of(remote)
    assert gateway.process.poll() is None
    failure = live.wait_until(
        lambda: Outcome.objects.filter(agent=agent.agent, action="mcp.files.crash").first()
    )
    assert not failure.success
    assert "closed the connection" in failure.error


def test_over_stdio_the_gateway_acts_as_the_agent_in_its_environment(
    gateway, make_agent, mcp_policies
):
    agent = make_agent()
    path = marker()

    def stdio(key: str) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "oversight.mcp", "--stdio", "--config", str(gateway.config)],
            env={"OVERSIGHT_API_KEY": key, "OVERSIGHT_MCP_LOG_LEVEL": "WARNING"},
            cwd=str(BASE_DIR),
        )

    async def scenario() -> types.CallToolResult:
        async with Client(stdio(agent.key)) as client:
            return await client.call_tool("files.read_file", {"path": path})

    result = anyio.run(scenario)
    assert not result.is_error, text_of(result)
    assert len(gateway.upstream_calls(path)) == 1
    live.wait_until(lambda: Outcome.objects.filter(agent=agent.agent).exists())
    refused = subprocess.run(
        [sys.executable, *stdio("ovs_nope_nope").args],
        cwd=BASE_DIR,
        env={**os.environ, "OVERSIGHT_API_KEY": "ovs_nope_nope"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert "Oversight refused OVERSIGHT_API_KEY" in refused.stderr


def test_the_http_door_wants_a_key_oversight_accepts(gateway, make_agent):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    missing = httpx.post(gateway.url, json=body, headers=headers, timeout=10)
    wrong = httpx.post(
        gateway.url,
        json=body,
        headers={**headers, "Authorization": "Bearer ovs_nope_nope"},
        timeout=10,
    )
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
