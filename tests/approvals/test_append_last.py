"""The audit append comes after every other write of a change (approvals.services): from the
first append to COMMIT the chain's lock is held, and every audited change in the system waits
for it. Measured, not taken on trust: the statements each change sends after its first
`audit_append` are appends only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services
from approvals.models import ApprovalRequest, CallbackDelivery
from audit.models import AuditEvent
from tests.conftest import shift_into_past

CALLBACK = "https://agent.example.com/hook"


def statements_after_first_append(change: Callable[[], Any]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        change()
    sql = [q["sql"] for q in captured.captured_queries]
    first = next(n for n, s in enumerate(sql) if "audit_append(" in s)
    return [s[:80] for s in sql[first:]
            if "audit_append(" not in s and "SAVEPOINT" not in s]  # fmt: skip


@pytest.fixture
def pending(new_request: Callable[..., ApprovalRequest]) -> ApprovalRequest:
    # A callback and a budget hold: the final state writes a callback row and gives the
    # reservation back.
    return new_request(risk_level="low", callback_url=CALLBACK, estimated_cost_cents=120)


def test_a_create_through_the_api_writes_its_idempotency_record_before_the_append(make_agent, api):
    agent = make_agent()
    body = {"action": "read_file", "params": {"path": "/srv/app/README"},
            "justification": "Read the docs.", "callback_url": CALLBACK}  # fmt: skip
    client = api(agent.key)
    after = statements_after_first_append(
        lambda: client.post("/api/v1/approval-requests", body, headers={"Idempotency-Key": "k-1"})
    )
    assert after == []


@pytest.mark.parametrize("vote", ["approve", "reject"])
def test_a_deciding_vote_writes_everything_before_the_append(pending, approvers, vote):
    if vote == "approve":
        change = lambda: services.approve_request(request_id=pending.pk, reviewer=approvers["lead"])  # noqa: E731
    else:
        change = lambda: services.reject_request(  # noqa: E731
            request_id=pending.pk, reviewer=approvers["lead"], reason="Not today."
        )
    assert statements_after_first_append(change) == []
    assert CallbackDelivery.objects.filter(request=pending).count() == 1


def test_a_cancel_writes_everything_before_the_append(pending):
    after = statements_after_first_append(
        lambda: services.cancel_request(request_id=pending.pk, agent=pending.agent)
    )
    assert after == []


def test_an_escalation_and_an_expiry_write_everything_before_the_append(pending):
    shift_into_past(pending.pk, pending.escalates_at.timestamp() - pending.created_at.timestamp())
    assert (
        statements_after_first_append(lambda: services.escalate_request(request_id=pending.pk))
        == []
    )
    other = ApprovalRequest.objects.get(pk=pending.pk)
    shift_into_past(other.pk, other.expires_at.timestamp() - other.escalates_at.timestamp() + 1)
    assert statements_after_first_append(lambda: services.expire_request(request_id=other.pk)) == []


def test_an_expiry_that_catches_up_its_escalation_appends_both_last(new_request):
    request = new_request(risk_level="low", callback_url=CALLBACK, estimated_cost_cents=120)
    shift_into_past(request.pk, 24 * 3600)
    after = statements_after_first_append(lambda: services.expire_request(request_id=request.pk))
    assert after == []
    trail = AuditEvent.objects.filter(subject_id=str(request.pk)).order_by("sequence")
    assert list(trail.values_list("event_type", flat=True)) == [
        "request.created", "request.escalated", "request.expired"]  # fmt: skip
