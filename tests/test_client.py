"""The Python client (oversight_client) against the real ASGI server."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, Status
from oversight_client import ApprovalDenied, ApprovalTimeout, Oversight, params_sha256
from tests.support import live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _quiet_httpx(caplog):
    caplog.set_level("WARNING", logger="httpx")


def decide_when_asked(agent, decide) -> threading.Thread:
    """An approver in another thread who decides the agent's next request once it appears."""

    def run() -> None:
        try:
            request = live.wait_until(
                lambda: ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING).first(),
                timeout=15,
            )
            decide(request)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_require_approval_runs_the_block_with_the_approved_changes(
    web_server, make_agent, approvers
):
    agent = make_agent()
    changed = {"service": "api", "version": "1.2.4"}
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["em"], modified_params=changed
        ),
    )
    with (
        Oversight(web_server.url, agent.key) as oversight,
        oversight.require_approval(
            "run_command",  # high risk (guardrails' seed): an engineering manager decides
            {"service": "api", "version": "1.2.3"},
            justification="Roll out the fix.",
        ) as approval,
    ):
        executed = approval.params
    approver.join()
    assert executed == changed
    assert approval.request.decision is not None
    assert approval.request.decision["approved_params_sha256"] == params_sha256(
        "run_command", changed
    )


def test_a_rejection_raises_and_the_block_never_runs(web_server, make_agent, approvers):
    agent = make_agent()
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.reject_request(
            request_id=r.pk, reviewer=approvers["em"], reason="freeze"
        ),
    )
    ran = False
    with (
        Oversight(web_server.url, agent.key) as oversight,
        pytest.raises(ApprovalDenied, match="freeze"),
        oversight.require_approval(
            "run_command", {"cmd": "ls /tmp/x"}, risk_level="low", justification="x"
        ),
    ):
        ran = True
    approver.join()
    assert not ran


def test_the_decorator_passes_the_approved_keyword_arguments(web_server, make_agent, approvers):
    agent = make_agent()
    oversight = Oversight(web_server.url, agent.key)

    @oversight.requires_approval(
        "write_file", risk_level="medium", justification=lambda **kw: f"drop {kw['name']}"
    )
    def delete(*, name: str) -> str:
        return f"deleted {name}"

    approver = decide_when_asked(
        agent.agent, lambda r: services.approve_request(request_id=r.pk, reviewer=approvers["lead"])
    )
    assert delete(name="tmp-bucket") == "deleted tmp-bucket"
    approver.join()
    assert ApprovalRequest.objects.get(agent=agent.agent).justification == "drop tmp-bucket"


def test_giving_up_withdraws_the_request(web_server, make_agent):
    agent = make_agent()
    with (
        Oversight(web_server.url, agent.key) as oversight,
        pytest.raises(ApprovalTimeout),
        oversight.require_approval(
            "read_file", {"path": "/etc/hosts"}, risk_level="low", justification="x", timeout=1
        ),
    ):
        pass
    assert ApprovalRequest.objects.get(agent=agent.agent).status == Status.CANCELLED


class LoseFirstResponse(httpx.HTTPTransport):
    """Delivers the first POST to the server, then drops the answer, as a flaky network does."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and not self.dropped:
            self.dropped = True
            response.read()
            raise httpx.ReadError("connection reset", request=request)
        return response


def test_a_retried_create_after_a_lost_response_opens_one_request(web_server, make_agent):
    agent = make_agent()
    transport = LoseFirstResponse()
    with Oversight(web_server.url, agent.key, transport=transport, backoff=0.01) as oversight:
        request = oversight.request_approval(
            "read_file", {"path": "/etc/hosts"}, risk_level="low", justification="x"
        )
    assert transport.dropped
    assert ApprovalRequest.objects.filter(agent=agent.agent).count() == 1
    assert request.id == str(ApprovalRequest.objects.get(agent=agent.agent).pk)


def test_report_cost_is_recorded_once_across_a_retry_and_shows_the_budgets(
    web_server, make_agent, seeded_prices
):
    from decimal import Decimal

    from budgets import services as budgets
    from budgets.models import CostRecord

    agent = make_agent()
    budgets.set_budget(scope="agent", agent=agent.agent, period="daily", limit_cents=30)
    transport = LoseFirstResponse()
    with Oversight(web_server.url, agent.key, transport=transport, backoff=0.01) as oversight:
        # The server caches budgets for a few seconds: wait until it sees the new one.
        live.wait_until(lambda: oversight.me()["budgets"], timeout=15)
        report = oversight.report_cost("gpt-4", input_tokens=3000, output_tokens=1500)
    assert transport.dropped
    assert report.cost_cents == Decimal("18")
    assert not report.unknown_model
    assert report.budgets[0]["spent_cents"] == "18.00000000"
    assert not report.blocked
    assert CostRecord.objects.filter(agent=agent.agent).count() == 1


def test_a_key_held_by_a_dead_call_is_waited_out_then_taken_over(web_server, make_agent):
    # The first call with this key claimed it and died before answering (a web process
    # killed mid-create): the server answers 409 until the claim's lease runs out (60 s; 2 s
    # here), then lets a retry take the key over. The client waits for that instead of giving
    # up after its transport retries.
    from agents.models import ApiKey
    from approvals import idempotency
    from approvals.models import IdempotencyKey

    agent = make_agent()
    body = {
        "action": "read_file",
        "params": {"service": "billing"},
        "justification": "Quarterly rotation.",
        "urgency": "normal",
        "risk_level": "low",
    }
    IdempotencyKey.objects.create(
        api_key=ApiKey.objects.get(agent=agent.agent),
        key="died-mid-way",
        body_sha256=idempotency.body_digest(body),
        locked_until=timezone.now() + timedelta(seconds=2),
    )
    with Oversight(web_server.url, agent.key, max_retries=1, backoff=0.1) as oversight:
        created = oversight.request_approval(
            "read_file",
            {"service": "billing"},
            justification="Quarterly rotation.",
            risk_level="low",
            idempotency_key="died-mid-way",
        )
    assert created.status == Status.PENDING
    assert ApprovalRequest.objects.filter(agent=agent.agent).count() == 1


def test_a_long_poll_outlasts_a_short_client_timeout(web_server, make_agent):
    agent = make_agent()
    with Oversight(web_server.url, agent.key, timeout=1.0, max_retries=0) as oversight:
        created = oversight.request_approval(
            "read_file", justification="Quarterly rotation.", risk_level="low"
        )
        started = time.monotonic()
        # The server holds each poll up to the 3 s asked for; a 1 s read timeout used to cut
        # it off (httpx.ReadTimeout) instead of the caller's own deadline ending the wait.
        with pytest.raises(ApprovalTimeout):
            oversight.wait(created.id, timeout=3)
    assert time.monotonic() - started >= 3


# --- the guardrails: check() and guard() ------------------------------------------------------


def test_check_returns_a_typed_decision_with_every_reason(web_server, make_agent):
    from oversight_client import Decision

    agent = make_agent()
    with Oversight(web_server.url, agent.key) as oversight:
        allowed = oversight.check("read_file", {"path": "/srv/reports/q3.csv"})
        denied = oversight.check("run_command", {"command": "rm -rf /"})
    assert isinstance(allowed, Decision)
    assert allowed.allowed
    assert allowed.policy == {"name": "read_file", "version": 1, "scope": "global"}
    assert denied.denied
    assert denied.codes == ["forbidden_pattern", "policy_requires_approval"]
    assert denied.reasons[0].pattern == r"rm\s+-rf\s+/"
    assert denied.violation_id is not None


def test_a_stopped_agents_check_is_a_deny_with_its_status_as_the_reason(web_server, make_agent):
    from agents import services as agents

    agent = make_agent()
    agents.set_agent_status(agent=agent.agent, status="paused", reason="circuit breaker")
    with Oversight(web_server.url, agent.key) as oversight:
        decision = oversight.check("read_file", {"path": "/srv/x"})
    assert decision.denied
    assert decision.codes == ["agent_paused"]


def test_guard_runs_an_allowed_action_at_once_and_asks_nobody(web_server, make_agent):
    agent = make_agent()
    with (
        Oversight(web_server.url, agent.key) as oversight,
        oversight.guard("read_file", {"path": "/srv/reports/q3.csv"}) as go,
    ):
        ran = go.params
    assert ran == {"path": "/srv/reports/q3.csv"}
    assert go.request is None
    assert go.decision.allowed
    assert not ApprovalRequest.objects.filter(agent=agent.agent).exists()


def test_guard_raises_action_denied_and_the_block_never_runs(web_server, make_agent):
    from oversight_client import ActionDenied

    agent = make_agent()
    ran = False
    with (
        Oversight(web_server.url, agent.key) as oversight,
        pytest.raises(ActionDenied) as refused,
        oversight.guard("read_file", {"path": "/app/.env"}),
    ):
        ran = True
    assert not ran
    assert refused.value.codes == ["forbidden_pattern"]
    assert refused.value.violation_id is not None


def test_guard_asks_a_person_when_the_check_says_so_and_runs_with_their_changes(
    web_server, make_agent, approvers
):
    agent = make_agent()
    changed = {"path": "/srv/app/config.yml", "cache": "on"}
    approver = decide_when_asked(
        agent.agent,
        lambda r: services.approve_request(
            request_id=r.pk, reviewer=approvers["lead"], modified_params=changed
        ),
    )
    oversight = Oversight(web_server.url, agent.key)

    @oversight.guard("write_file", justification=lambda **kw: f"write {kw['path']}")
    def write(**kwargs: str) -> dict[str, str]:
        return kwargs

    assert write(path="/srv/app/config.yml", cache="off") == changed
    approver.join()
    request = ApprovalRequest.objects.get(agent=agent.agent)
    assert request.justification == "write /srv/app/config.yml"
    assert request.policy_version is not None
    assert request.policy_version.name == "write_file"
    oversight.close()


def test_a_create_the_guardrails_refuse_raises_action_denied(web_server, make_agent):
    from oversight_client import ActionDenied

    agent = make_agent()
    with (
        Oversight(web_server.url, agent.key) as oversight,
        pytest.raises(ActionDenied) as refused,
        oversight.require_approval(
            "write_file", {"path": "/etc/passwd"}, justification="edit the users"
        ),
    ):
        pass
    assert refused.value.codes == ["forbidden_pattern", "policy_requires_approval"]
