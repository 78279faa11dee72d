"""Outcomes and execution receipts (SPEC §3, §6): a receipt must carry the approved arguments
(the approver's changed ones where they changed them); other arguments, or a request that was
not approved, are a critical failure: recorded, `409 execution_mismatch`, a security event, the
managers alerted and the agent disabled (two people re-enable it)."""

from __future__ import annotations

from typing import Any

import pytest

from agents import services as agents
from agents.models import AgentStatus
from approvals import services as approvals
from approvals.binding import params_sha256
from audit.models import AuditEvent
from controls.models import AgentAlert, AlertKind, Outcome, Receipt

pytestmark = pytest.mark.django_db

OUTCOMES = "/api/v1/outcomes"
PARAMS = {"service": "api", "version": "1.2.3"}


@pytest.fixture
def agent(make_agent):
    return make_agent()


@pytest.fixture
def approved(agent, new_request, approvers):
    """A medium-risk request of `agent`, approved by a team lead as asked."""
    request = new_request(agent=agent.agent, params=PARAMS)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    request.refresh_from_db()
    assert request.status == "approved"
    return request


def report(api, agent, **body: Any) -> Any:
    headers = body.pop("headers", None)
    return api(agent.key).post(OUTCOMES, {"success": True, **body}, headers=headers)


def test_an_outcome_is_recorded_audited_and_answered(api, agent) -> None:
    answer = report(api, agent, action="read_file", params={"path": "/srv/a"}, duration_ms=12)

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["receipt"] == "none"
    assert body["params_sha256"] == params_sha256("read_file", {"path": "/srv/a"})
    assert body["consecutive_failures"] == 0
    outcome = Outcome.objects.get(pk=body["id"])
    assert (outcome.risk_level, outcome.category, outcome.duration_ms) == ("low", "read", 12)
    (event,) = AuditEvent.objects.filter(event_type="outcome.reported")
    assert (event.payload["success"], event.payload["receipt"]) == (True, "none")


def test_a_receipt_for_the_approved_arguments_passes(api, agent, approved) -> None:
    answer = report(
        api, agent, action=approved.action, params=PARAMS, approval_request_id=str(approved.pk)
    )

    assert answer.status_code == 201, answer.json()
    assert answer.json()["receipt"] == Receipt.MATCHED
    assert approved.receipt.receipt == Receipt.MATCHED
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.ACTIVE


def test_a_receipt_by_hash_passes_too(api, agent, approved) -> None:
    answer = report(
        api,
        agent,
        action=approved.action,
        params_sha256=approved.approved_params_sha256,
        approval_request_id=str(approved.pk),
    )
    assert (answer.status_code, answer.json()["receipt"]) == (201, "matched")


def test_a_receipt_for_the_approvers_changed_arguments_passes(api, agent, new_request, approvers):
    request = new_request(agent=agent.agent, params=PARAMS)
    changed = {**PARAMS, "version": "1.2.4"}
    approvals.approve_request(
        request_id=request.pk, reviewer=approvers["lead"], modified_params=changed
    )

    original = report(
        api, agent, action=request.action, params=changed, approval_request_id=str(request.pk)
    )

    assert (original.status_code, original.json()["receipt"]) == (201, "matched")


def test_other_arguments_than_approved_disable_the_agent(api, agent, approved) -> None:
    other = {**PARAMS, "version": "9.9.9"}

    answer = report(
        api, agent, action=approved.action, params=other, approval_request_id=str(approved.pk)
    )

    assert answer.status_code == 409
    error = answer.json()["error"]
    assert error["code"] == "execution_mismatch"
    assert error["outcome"]["receipt"] == Receipt.MISMATCH
    assert error["outcome"]["approved_params_sha256"] == approved.approved_params_sha256
    outcome = Outcome.objects.get(approval_request=approved)
    assert outcome.critical
    assert outcome.receipt == Receipt.MISMATCH
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.DISABLED
    assert agent.agent.status_reason.startswith("execution_mismatch")
    (security,) = AuditEvent.objects.filter(event_type="execution.mismatch")
    assert security.payload["executed_params_sha256"] == params_sha256(approved.action, other)
    (alert,) = AgentAlert.objects.filter(kind=AlertKind.EXECUTION_MISMATCH)
    assert alert.email is not None
    # Disabled: every further call is refused, and re-enabling takes two people.
    assert report(api, agent, action="read_file", params={}).status_code == 403
    with pytest.raises(Exception, match="second person"):
        agents.set_agent_status(agent=agent.agent, status="active", reason="oops")


def test_executing_a_request_that_was_not_approved_is_a_mismatch(api, agent, new_request):
    pending = new_request(agent=agent.agent, params=PARAMS)

    answer = report(
        api, agent, action=pending.action, params=PARAMS, approval_request_id=str(pending.pk)
    )

    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "execution_mismatch")
    assert Outcome.objects.get(approval_request=pending).receipt == Receipt.NOT_APPROVED
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.DISABLED


def test_idempotent_like_create(api, agent) -> None:
    body = {"action": "read_file", "params": {"path": "/srv/a"}, "success": False}
    first = report(api, agent, **body, headers={"Idempotency-Key": "exec-1"})
    again = report(api, agent, **body, headers={"Idempotency-Key": "exec-1"})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Outcome.objects.count() == 1
    assert again.json()["consecutive_failures"] == 1, "counted once"
    other = report(api, agent, action="x", params={}, headers={"Idempotency-Key": "exec-1"})
    assert other.status_code == 422


def test_a_retried_mismatch_learns_the_agent_is_disabled(api, agent, approved) -> None:
    body = {
        "action": approved.action,
        "params": {"version": "evil"},
        "approval_request_id": str(approved.pk),
    }
    first = report(api, agent, **body, headers={"Idempotency-Key": "exec-2"})
    again = report(api, agent, **body, headers={"Idempotency-Key": "exec-2"})

    assert first.status_code == 409
    assert (again.status_code, again.json()["error"]["code"]) == (403, "agent_disabled")
    assert Outcome.objects.count() == 1


def test_one_receipt_per_request(api, agent, approved) -> None:
    body = {"action": approved.action, "params": PARAMS, "approval_request_id": str(approved.pk)}
    assert report(api, agent, **body).status_code == 201
    again = report(api, agent, **body)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_reported")


def test_another_agents_request_is_not_found(api, agent, make_agent, approved) -> None:
    stranger = make_agent()
    body = {"action": approved.action, "params": PARAMS, "approval_request_id": str(approved.pk)}
    answer = report(api, stranger, **body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "read_file"}, "params"),
        ({"action": "read_file", "params": {}, "params_sha256": "0" * 64}, "params"),
        ({"action": "read_file", "params_sha256": "XYZ"}, "params_sha256"),
        ({"action": "read_file", "params": {}, "success": "yes"}, "success"),
        ({"action": "read_file", "params": {}, "duration_ms": -1}, "duration_ms"),
    ],
)
def test_bad_reports_get_a_clear_400(api, agent, body, field) -> None:
    answer = report(api, agent, **body)
    assert answer.status_code == 400
    assert field in answer.json()["error"]["fields"]


def test_a_success_closes_the_breaker_a_failure_counts(api, agent) -> None:
    for n in range(1, 3):
        answer = report(api, agent, action="read_file", params={"n": n}, success=False)
        assert answer.json()["consecutive_failures"] == n
    closed = report(api, agent, action="read_file", params={})
    assert closed.json()["consecutive_failures"] == 0


def test_a_failed_critical_action_is_a_critical_failure(api, agent) -> None:
    answer = report(api, agent, action="deploy_to_production", params={}, success=False)
    assert answer.json()["critical"] is True


# --- walking around receipts (an adversarial review's findings) ------------------------------


def test_a_receipt_by_hash_naming_another_action_is_a_mismatch(api, agent, approved) -> None:
    answer = report(
        api,
        agent,
        action="read_file",  # the approval was for write_file
        params_sha256=approved.approved_params_sha256,
        approval_request_id=str(approved.pk),
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "execution_mismatch")


def test_a_failed_receipt_of_a_critical_request_is_critical(
    api, agent, new_request, approvers
) -> None:
    request = new_request(agent=agent.agent, risk_level="critical", params={"service": "api"})
    for tier in ("director", "vp"):
        approvals.approve_request(request_id=request.pk, reviewer=approvers[tier])
    answer = report(
        api,
        agent,
        action=request.action,
        params={"service": "api"},
        approval_request_id=str(request.pk),
        success=False,
    )
    assert answer.json()["critical"] is True


def test_a_write_file_request_raised_to_critical_by_its_claim_fails_critically(
    api, agent, new_request, approvers
) -> None:
    request = new_request(agent=agent.agent, action="write_file", risk_level="critical")
    for tier in ("director", "vp"):
        approvals.approve_request(request_id=request.pk, reviewer=approvers[tier])
    answer = report(
        api,
        agent,
        action=request.action,
        params=PARAMS,
        approval_request_id=str(request.pk),
        success=False,
    )
    assert (answer.json()["receipt"], answer.json()["critical"]) == ("matched", True)


def test_a_second_receipt_with_other_arguments_is_a_mismatch_all_the_same(
    api, agent, approved
) -> None:
    body = {"action": approved.action, "approval_request_id": str(approved.pk)}
    assert report(api, agent, **body, params=PARAMS).status_code == 201
    again = report(api, agent, **body, params={**PARAMS, "version": "6.6.6"})

    assert (again.status_code, again.json()["error"]["code"]) == (409, "execution_mismatch")
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.DISABLED
    second = Outcome.objects.get(approval_request__isnull=True, named_request_id=approved.pk)
    assert second.receipt == Receipt.MISMATCH
    assert approved.receipt.receipt == Receipt.MATCHED, "the request's own receipt stays"


def test_a_paused_agent_still_reports_receipts_and_a_mismatch_disables_it(
    api, agent, new_request, make_user
) -> None:
    pending = new_request(agent=agent.agent, params=PARAMS)
    manager = make_user(roles=("manager",))
    agents.set_agent_status(agent=agent.agent, status="paused", reason="looking", actor=manager)
    plain = report(api, agent, action="read_file", params={})
    assert (plain.status_code, plain.json()["error"]["code"]) == (403, "agent_paused")

    answer = report(
        api, agent, action=pending.action, params=PARAMS, approval_request_id=str(pending.pk)
    )

    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "execution_mismatch")
    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.DISABLED


@pytest.mark.parametrize(
    "path", ["/api/v1/outcomes", "/api/v1/approval-requests"], ids=["outcome", "create"]
)
def test_an_infinite_number_with_an_idempotency_key_is_a_clear_422(api, agent, path) -> None:
    extra = (
        '"success": true'
        if path.endswith("outcomes")
        else '"risk_level": "low", "justification": "x"'
    )
    body = '{"action": "read_file", "params": {"a": 1e400}, ' + extra + "}"
    answer = api(agent.key).post(path, body, headers={"Idempotency-Key": "k1"})
    assert answer.status_code == 422, answer.content
