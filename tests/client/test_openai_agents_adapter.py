"""The OpenAI Agents SDK adapter: a real SDK agent with a scripted model (no network), against the
real ASGI server, with an approver deciding in another thread. The agent runs in a worker process
(openai_agents_worker.py says why)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from approvals import services
from approvals.models import ApprovalRequest
from controls.models import Outcome, Receipt
from tests.test_client import decide_when_asked

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKER = Path(__file__).with_name("openai_agents_worker.py")


class Worker:
    """The worker process: one scenario in, what happened out."""

    def __init__(self, tmp: Path) -> None:
        self.log = tmp / "worker.log"
        self.process = subprocess.Popen(
            [sys.executable, "-P", str(WORKER)],
            cwd=tmp,  # not the project: its `agents` app would shadow the SDK
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            text=True,
        )

    def run(self, url: str, key: str, task: str, calls: list[Any], loop: bool = False) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        asked = {"url": url, "key": key, "task": task, "calls": calls, "loop": loop}
        self.process.stdin.write(json.dumps(asked) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the worker died:\n{self.log.read_text()}"
        answer = json.loads(line)
        assert "error" not in answer, f"{answer['error']}\n{self.log.read_text()}"
        return answer

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> Iterator[Worker]:
    started = Worker(tmp_path_factory.mktemp("openai-agents"))
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def _quiet_httpx(caplog):
    caplog.set_level("WARNING", logger="httpx")


def test_an_approval_with_changes_runs_the_tool_with_the_approved_arguments(
    web_server, make_agent, approvers, worker
):
    agent = make_agent()
    changed = {"command": "du -sh /var/log"}
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["em"], modified_params=changed
        ),
    )
    done = worker.run(
        web_server.url, agent.key, "How full is the disk?", [["shell", {"command": "du -sh /"}]]
    )
    approver.join()

    assert done["paused"] == ["shell"]
    assert done["ran_before_resume"] == []
    assert done["ran"] == ["du -sh /var/log"]
    [answer] = done["answers"]
    assert '{"command":"du -sh /var/log"}' in answer  # the model is told what ran in its name
    assert answer.endswith("ran: du -sh /var/log")
    assert done["final_output"] == "Done."
    request = ApprovalRequest.objects.get(agent=agent.agent)
    assert (request.action, request.params) == ("run_command", {"command": "du -sh /"})
    assert "How full is the disk?" in request.justification
    receipt = Outcome.objects.get(approval_request=request)
    assert (receipt.receipt, receipt.success) == (Receipt.MATCHED, True)


def test_a_rejection_is_the_tool_answer_and_the_tool_never_runs(
    web_server, make_agent, approvers, worker
):
    agent = make_agent()
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.reject_request(
            request_id=r.pk, reviewer=approvers["em"], reason="Change freeze until Monday."
        ),
    )
    done = worker.run(
        web_server.url,
        agent.key,
        "Restart nginx.",
        [["shell", {"command": "systemctl restart nginx"}]],
        loop=True,  # run_with_oversight
    )
    approver.join()

    assert done["ran"] == []
    [answer] = done["answers"]
    assert "rejected" in answer
    assert "Change freeze until Monday." in answer
    assert done["final_output"] == "Done."
    assert not Outcome.objects.filter(agent=agent.agent).exists()


def test_an_allowed_call_runs_without_pausing_and_a_denied_one_never_runs(
    web_server, make_agent, worker
):
    agent = make_agent()
    done = worker.run(
        web_server.url,
        agent.key,
        "Tidy up.",
        [["read_file", {"path": "/srv/app/README"}], ["shell", {"command": "rm -rf /"}]],
    )

    # The read ran at once; the denied call was held (the SDK can only hold a call) and refused.
    assert done["paused"] == ["shell"]
    assert done["ran_before_resume"] == done["ran"] == ["/srv/app/README"]
    read, refusal = done["answers"]
    assert read == "hello"
    assert "guardrails refused" in refusal
    assert "rm" in refusal  # the forbidden pattern's reason
    assert not ApprovalRequest.objects.filter(agent=agent.agent).exists()  # nobody was asked
    [outcome] = Outcome.objects.filter(agent=agent.agent)
    assert (outcome.action, outcome.receipt, outcome.success) == ("read_file", Receipt.NONE, True)
