"""The LangChain / LangGraph adapter: a real `create_agent` graph with HumanInTheLoopMiddleware
and a scripted chat model (no network), against the real ASGI server, with an approver deciding
in another thread."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from approvals import services
from approvals.models import ApprovalRequest
from controls.models import Outcome, Receipt
from oversight_client import Oversight
from oversight_client.adapters.langgraph import OversightReviewer, run_with_oversight
from tests.test_client import decide_when_asked

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

threads = itertools.count()


@pytest.fixture(autouse=True)
def _quiet_httpx(caplog):
    caplog.set_level("WARNING", logger="httpx")


class ScriptedChatModel(GenericFakeChatModel):
    """Answers from a script and keeps the messages of each call."""

    calls: list[list[BaseMessage]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def scripted(*calls: tuple[str, dict[str, Any]]) -> ScriptedChatModel:
    """A model that makes `calls` in one turn, then says "Done."."""
    tool_calls = [
        {"name": name, "args": args, "id": f"call_{number}"}
        for number, (name, args) in enumerate(calls, 1)
    ]
    return ScriptedChatModel(
        messages=iter([AIMessage(content="", tool_calls=tool_calls), AIMessage(content="Done.")]),
        calls=[],
    )


def ops_agent(model: ScriptedChatModel, reviewer: OversightReviewer, ran: list[str], **hitl: Any):
    """A graph with a shell tool (the `run_command` action: a person decides) and a file reader
    (`read_file`: the seeded policy allows it), both under Oversight."""

    @tool
    def shell(command: str) -> str:
        """Run a shell command."""
        ran.append(command)
        return f"ran: {command}"

    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        ran.append(path)
        return "hello"

    return create_agent(
        model,
        tools=[shell, read_file],
        middleware=reviewer.middleware(["shell", "read_file"], **hitl),
        checkpointer=InMemorySaver(),
    )


def tool_answers(model: ScriptedChatModel) -> list[str]:
    """What the model was told its tool calls answered, in its last call."""
    return [str(m.content) for m in model.calls[-1] if isinstance(m, ToolMessage)]


def ask(task: str) -> tuple[dict[str, Any], Any]:
    return {"messages": [{"role": "user", "content": task}]}, {
        "configurable": {"thread_id": f"t{next(threads)}"}
    }


def test_an_approval_with_changes_runs_the_tool_with_the_approved_arguments(
    web_server, make_agent, approvers
):
    agent = make_agent()
    changed = {"command": "du -sh /var/log"}
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["em"], modified_params=changed
        ),
    )
    model = scripted(("shell", {"command": "du -sh /"}))
    ran: list[str] = []
    with Oversight(web_server.url, agent.key) as oversight:
        reviewer = OversightReviewer(oversight, actions={"shell": "run_command"})
        result = run_with_oversight(
            ops_agent(model, reviewer, ran), *ask("How full is the disk?"), oversight=reviewer
        )
    approver.join()

    assert ran == ["du -sh /var/log"]
    [answer] = tool_answers(model)
    # The middleware tells the model what ran in its name.
    assert 'Executed instead: shell with arguments {"command": "du -sh /var/log"}' in answer
    assert answer.endswith("ran: du -sh /var/log")
    assert result["messages"][-1].content == "Done."
    request = ApprovalRequest.objects.get(agent=agent.agent)
    assert (request.action, request.params) == ("run_command", {"command": "du -sh /"})
    assert "How full is the disk?" in request.justification
    receipt = Outcome.objects.get(approval_request=request)
    assert (receipt.receipt, receipt.success) == (Receipt.MATCHED, True)


def test_a_rejection_is_the_tool_answer_and_the_tool_never_runs(web_server, make_agent, approvers):
    agent = make_agent()
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.reject_request(
            request_id=r.pk, reviewer=approvers["em"], reason="Change freeze until Monday."
        ),
    )
    model = scripted(("shell", {"command": "systemctl restart nginx"}))
    ran: list[str] = []
    with Oversight(web_server.url, agent.key) as oversight:
        reviewer = OversightReviewer(oversight, actions={"shell": "run_command"})
        graph = ops_agent(model, reviewer, ran, interrupt_mode="per_call")
        run_with_oversight(graph, *ask("Restart nginx."), oversight=reviewer)
    approver.join()

    assert ran == []
    [answer] = tool_answers(model)
    assert "Change freeze until Monday." in answer
    assert not Outcome.objects.filter(agent=agent.agent).exists()


def test_changes_the_review_cannot_take_are_refused_with_the_approved_arguments(
    web_server, make_agent, approvers
):
    agent = make_agent()
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["em"], modified_params={"command": "uptime"}
        ),
    )
    model = scripted(("shell", {"command": "service web restart"}))
    ran: list[str] = []
    with Oversight(web_server.url, agent.key) as oversight:
        reviewer = OversightReviewer(oversight, actions={"shell": "run_command"})
        graph = ops_agent(model, reviewer, ran, allowed_decisions=["approve", "reject"])
        run_with_oversight(graph, *ask("Check the load."), oversight=reviewer)
    approver.join()

    assert ran == []
    [answer] = tool_answers(model)
    assert 'call shell again with exactly these arguments: {"command":"uptime"}' in answer


def test_an_allowed_call_runs_without_pausing_and_a_denied_one_never_runs(web_server, make_agent):
    agent = make_agent()
    model = scripted(("read_file", {"path": "/srv/app/README"}), ("shell", {"command": "rm -rf /"}))
    ran: list[str] = []
    with Oversight(web_server.url, agent.key) as oversight:
        reviewer = OversightReviewer(oversight, actions={"shell": "run_command"})
        graph = ops_agent(model, reviewer, ran)
        task, config = ask("Tidy up.")
        paused = graph.invoke(task, config)
        # Only the denied call is held: the middleware pauses before any tool of the turn runs.
        [interrupt] = paused["__interrupt__"]
        assert [r["name"] for r in interrupt.value["action_requests"]] == ["shell"]
        assert ran == []
        graph.invoke(reviewer.resume(paused["__interrupt__"]), config)

    assert ran == ["/srv/app/README"]
    answers = tool_answers(model)
    assert "hello" in answers
    [refusal] = [answer for answer in answers if answer != "hello"]
    assert "guardrails refused" in refusal
    assert not ApprovalRequest.objects.filter(agent=agent.agent).exists()  # nobody was asked
    [outcome] = Outcome.objects.filter(agent=agent.agent)
    assert (outcome.action, outcome.receipt, outcome.success) == ("read_file", Receipt.NONE, True)
