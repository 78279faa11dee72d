"""The demo's MCP gateway traffic (issue 25), through the real services: the policies of the
demo workspace server's tools (deploy/mcp.yaml, demo/mcp_server.py), a read that went through
with its outcome, and a write that waits for a person in the inbox, as the gateway leaves them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.models import Agent
from approvals import services as approvals
from controls import outcomes
from guardrails import policies, policyfile
from guardrails import services as guardrails
from guardrails.models import Policy

# The workspace server's tools, by the action the gateway checks them as. `run_shell` has no
# policy: unknown actions are denied, so the gateway does not even list it.
POLICIES: list[dict[str, Any]] = [
    {
        "name": "mcp.workspace.list_files",
        "description": "List the demo workspace's files (MCP gateway).",
        "category": "read",
        "risk_level": "low",
    },
    {
        "name": "mcp.workspace.read_file",
        "description": "Read a file of the demo workspace (MCP gateway).",
        "category": "read",
        "risk_level": "low",
        "forbidden_patterns": [r"\.env\b", "secrets?/"],
    },
    {
        "name": "mcp.workspace.write_file",
        "description": "Write a file of the demo workspace (MCP gateway): a person decides.",
        "category": "write",
        "risk_level": "medium",
        "requires_approval": True,
    },
    {
        "name": "mcp.workspace.delete_file",
        "description": "Delete a file of the demo workspace (MCP gateway): a person decides.",
        "category": "write",
        "risk_level": "high",
        "requires_approval": True,
    },
]
JUSTIFICATION = "MCP tool call {tool} through the Oversight gateway."  # as the gateway writes it


def seed(say: Callable[[str], None]) -> None:
    if Policy.objects.filter(name__startswith="mcp.").exists():
        return
    for raw in POLICIES:
        fields, problems = policyfile.check_fields(raw, agent_names=set())
        assert not problems, problems
        policies.save_policy(fields=fields, source="demo")
    assistant = Agent.objects.get(name="desktop-assistant")
    read = {"path": "welcome.md"}
    checked = guardrails.check_action(
        agent=assistant, action="mcp.workspace.read_file", params=read
    )
    if checked.decision == "allow":
        outcomes.report_outcome(
            agent=assistant,
            action="mcp.workspace.read_file",
            params=read,
            success=True,
            duration_ms=3,
        )
    approvals.create_request(
        agent=assistant,
        action="mcp.workspace.write_file",
        params={"path": "release-notes.md", "content": "# 2.14.0\n\n- Fixes double charges."},
        justification=JUSTIFICATION.format(tool="workspace.write_file"),
    )
    say(
        "Demo MCP gateway: policies for the workspace server's tools; desktop-assistant's write "
        "waits in the inbox (make run's last lines name the gateway's address)."
    )
