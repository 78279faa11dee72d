"""The gateway's adversarial review (issue 25): one approval is one execution, whatever the
client does with the 2026-07-28 request state; a stopped agent runs nothing; a session answers
only to its own key; Oversight going away for a while neither orphans a request nor loses an
outcome. Each of these ran the upstream (or left a request pending) before the fix."""

from __future__ import annotations

import sys
import uuid

import anyio
import httpx
import mcp_types as types
import pytest
import yaml
from mcp import Client, MCPError, StdioServerParameters

from agents import services as agent_services
from agents.models import AgentStatus
from approvals import services
from approvals.models import ApprovalRequest, Status
from controls.models import Outcome
from guardrails import policies, policyfile
from guardrails.models import Policy
from oversight_client import Oversight
from tests.mcp.conftest import BASE_DIR, session, text_of
from tests.support import live
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def marker() -> str:
    return f"/srv/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def slow_needs_approval(mcp_policies):
    fields, problems = policyfile.check_fields(
        {
            "name": "mcp.files.slow_read",
            "category": "read",
            "risk_level": "high",
            "requires_approval": True,
        },
        agent_names=set(),
    )
    assert not problems
    policies.save_policy(fields=fields, policy=Policy.objects.get(name="mcp.files.slow_read"))


async def accept(ctx, params):
    return types.ElicitResult(action="accept")


def first_leg(url: str, key: str, name: str, arguments: dict) -> types.InputRequiredResult:
    """A 2026-07-28 client's first call: the gateway answers with the request page to open."""

    async def go():
        async with session(url, key, elicitation=accept) as client:
            return await client.session.call_tool(name, arguments, allow_input_required=True)

    answer = anyio.run(go)
    assert isinstance(answer, types.InputRequiredResult), answer
    return answer


def second_leg(url, key, name, arguments, state, *, mode="auto", timeout=None):
    """The call again with the state; an exception (a timeout, a refusal) is returned. After a
    timeout the session stays a while: the gateway is still making the call."""

    async def go():
        async with session(url, key, mode=mode, elicitation=accept) as client:
            try:
                return await client.session.call_tool(
                    name,
                    arguments,
                    request_state=state,
                    allow_input_required=True,
                    read_timeout_seconds=timeout,
                )
            except Exception as exc:
                if timeout is not None:
                    await anyio.sleep(3)
                return exc

    return anyio.run(go)


def test_an_approval_runs_once_even_when_its_first_answer_was_lost(
    gateway, make_agent, slow_needs_approval, approvers
):
    agent = make_agent()
    arguments = {"path": marker(), "seconds": 2}
    state = first_leg(gateway.url, agent.key, "files.slow_read", arguments).request_state
    request = ApprovalRequest.objects.get(agent=agent.agent)
    services.approve_request(request_id=request.pk, reviewer=approvers["em"])
    # The client stops waiting after 1 s, while the upstream is running the call ...
    lost = second_leg(gateway.url, agent.key, "files.slow_read", arguments, state, timeout=1.0)
    assert isinstance(lost, Exception)
    # ... and sends the same state again.
    again = second_leg(gateway.url, agent.key, "files.slow_read", arguments, state)
    assert isinstance(again, MCPError)
    assert len(gateway.upstream_calls(arguments["path"])) == 1
    receipt = live.wait_until(lambda: Outcome.objects.filter(approval_request=request).first())
    assert receipt.approval_request_id == request.pk


def test_a_state_the_gateway_did_not_mint_is_refused(
    gateway, make_agent, mcp_policies, approvers, web_server
):
    """An approved request of the agent's, opened through the API, named as the state."""
    agent = make_agent()
    arguments = {"path": marker(), "content": "x"}
    with Oversight(web_server.url, agent.key) as oversight:
        request = oversight.request_approval(
            "mcp.files.write_file", arguments, justification="not through the gateway"
        )
    services.approve_request(request_id=uuid.UUID(request.id), reviewer=approvers["em"])
    for mode in ("legacy", "auto"):
        answer = second_leg(
            gateway.url, agent.key, "files.write_file", arguments, request.id, mode=mode
        )
        assert isinstance(answer, MCPError), answer
        assert "requestState" in answer.message
    assert gateway.upstream_calls(arguments["path"]) == []


def test_a_stopped_agent_runs_no_approved_call(gateway, make_agent, mcp_policies, approvers):
    agent = make_agent()
    arguments = {"path": marker(), "content": "x"}
    state = first_leg(gateway.url, agent.key, "files.write_file", arguments).request_state
    request = ApprovalRequest.objects.get(agent=agent.agent)
    services.approve_request(request_id=request.pk, reviewer=approvers["em"])
    agent_services.set_agent_status(
        agent=agent.agent, status=AgentStatus.DISABLED, reason="kill switch"
    )
    answer = second_leg(gateway.url, agent.key, "files.write_file", arguments, state)
    assert isinstance(answer, types.CallToolResult)
    assert answer.is_error
    assert "the agent is disabled" in text_of(answer)
    assert gateway.upstream_calls(arguments["path"]) == []


def test_a_session_answers_only_to_the_key_that_opened_it(gateway, make_agent, mcp_policies):
    owner, other = make_agent(), make_agent()
    accept_both = {"Accept": "application/json, text/event-stream"}
    opened = httpx.post(
        gateway.url,
        headers={**accept_both, "Authorization": f"Bearer {owner.key}"},
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "x", "version": "1"},
            },
        },
        timeout=10,
    )
    session_id = opened.headers["mcp-session-id"]
    intruder = {
        **accept_both,
        "Authorization": f"Bearer {other.key}",
        "mcp-session-id": session_id,
        "mcp-protocol-version": "2025-11-25",
    }
    assert httpx.delete(gateway.url, headers=intruder, timeout=10).status_code == 404
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}
    assert httpx.post(gateway.url, headers=intruder, json=cancel, timeout=10).status_code == 404
    two_keys = [
        ("Accept", accept_both["Accept"]),
        ("Authorization", "Bearer ovs_junk_junk"),
        ("Authorization", f"Bearer {owner.key}"),
    ]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert httpx.post(gateway.url, headers=two_keys, json=listing, timeout=10).status_code == 400


@pytest.mark.faults
def test_oversight_away_for_a_while_neither_orphans_a_request_nor_loses_an_outcome(
    gateway, make_agent, mcp_policies, approvers, tmp_path, web_server
):
    """Oversight unreachable for 6 s while one call waits for a person and another is being
    forwarded: the waiting call goes on waiting and runs once approved; the forwarded call's
    outcome is reported when Oversight is back."""
    agent = make_agent()
    host, port = web_server.url.removeprefix("http://").split(":")
    proxy = TcpProxy(tmp_path, host, int(port))
    proxy.start()
    config = yaml.safe_load(gateway.config.read_text())
    config["oversight_url"] = f"http://127.0.0.1:{proxy.port}"
    config_file = tmp_path / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config))
    stdio = StdioServerParameters(
        command=sys.executable,
        args=["-m", "oversight.mcp", "--stdio", "--config", str(config_file)],
        env={"OVERSIGHT_API_KEY": agent.key, "OVERSIGHT_MCP_LOG_LEVEL": "WARNING"},
        cwd=str(BASE_DIR),
    )
    waiting_path, slow_path = marker(), marker()
    answers: dict[str, types.CallToolResult] = {}

    async def scenario() -> None:
        async with Client(stdio, mode="legacy") as client:
            await client.list_tools()

            async def waiting() -> None:
                answers["waiting"] = await client.call_tool(
                    "files.write_file", {"path": waiting_path, "content": "x"}
                )

            async def slow() -> None:
                await anyio.sleep(1)
                answers["slow"] = await client.call_tool(
                    "files.slow_read", {"path": slow_path, "seconds": 3}
                )

            async def away_then_approved() -> None:
                await anyio.sleep(2.5)
                proxy.cut()
                await anyio.sleep(6)
                proxy.restore()
                request = await anyio.to_thread.run_sync(
                    lambda: live.wait_until(
                        lambda: ApprovalRequest.objects.filter(
                            agent=agent.agent, status=Status.PENDING
                        ).first()
                    )
                )
                await anyio.to_thread.run_sync(
                    lambda: services.approve_request(
                        request_id=request.pk, reviewer=approvers["em"]
                    )
                )

            async with anyio.create_task_group() as group:
                group.start_soon(waiting)
                group.start_soon(slow)
                group.start_soon(away_then_approved)

    try:
        anyio.run(scenario)
    finally:
        proxy.stop()
    assert not answers["waiting"].is_error, text_of(answers["waiting"])
    assert len(gateway.upstream_calls(waiting_path)) == 1
    assert len(gateway.upstream_calls(slow_path)) == 1
    # The slow call's outcome is reported once Oversight is back (its report retries).
    live.wait_until(
        lambda: Outcome.objects.filter(agent=agent.agent, action="mcp.files.slow_read").exists(),
        timeout=30,
        interval=0.2,
    )
    assert Outcome.objects.filter(agent=agent.agent, action="mcp.files.slow_read").count() == 1
