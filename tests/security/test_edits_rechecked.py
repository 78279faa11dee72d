"""Issue 18, item 5: approve with changes is re-checked (SPEC §2).

Before: one lowest-tier approver could rewrite the arguments of any request they may decide
into anything (the guardrails never saw the edit), and an edit from `1` to `true` was silently
treated as unchanged.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from approvals import services
from approvals.binding import params_sha256
from approvals.models import ApprovalRequest, Status
from audit.models import AuditEvent
from guardrails import policies as policy_changes
from guardrails import policyfile
from guardrails.models import Policy
from tests.conftest import client_for


def test_a_forbidden_edit_is_refused_with_the_reason_and_nothing_changes(
    db, new_request, approvers
):
    request = new_request(risk_level="high", params={"command": "ls /srv/app"})
    with pytest.raises(services.EditRefused, match="forbidden") as refused:
        services.approve_request(
            request_id=request.pk,
            reviewer=approvers["em"],
            modified_params={"command": "rm -rf /"},
        )
    assert refused.value.code == "forbidden_pattern"
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert request.modified_params is None
    assert not request.votes.exists()


def test_the_page_keeps_a_refused_edit_and_says_why(db, new_request, approvers):
    request = new_request(risk_level="high", params={"command": "ls /srv/app"})
    response = client_for(approvers["em"]).post(
        reverse("approvals:approve", args=[request.pk]),
        {"modified_params": '{"command": "sudo shutdown -h now"}', "comment": ""},
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "The guardrails refuse the changed arguments" in page
    assert "shutdown -h now" in page  # the edit is still in the form
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_an_edit_from_1_to_true_is_a_change_and_binds_the_approval(db, new_request, approvers):
    request = new_request(params={"path": "/srv/app/flag.txt", "enabled": 1})
    browser = client_for(approvers["lead"])
    response = browser.post(
        reverse("approvals:approve", args=[request.pk]),
        {
            "modified_params": json.dumps({"path": "/srv/app/flag.txt", "enabled": True}),
            "comment": "",
            "seen_params_sha256": request.current_params_sha256,
        },
    )
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.modified_params == {"path": "/srv/app/flag.txt", "enabled": True}
    assert request.approved_params_sha256 == params_sha256(
        request.action, {"path": "/srv/app/flag.txt", "enabled": True}
    )
    assert request.approved_params_sha256 != request.params_sha256


def _raise_risk(action: str, risk: str) -> None:
    policy = Policy.objects.get(name=action, scope="global")
    fields = {**policyfile.snapshot(policy), "risk_level": risk}
    policy_changes.save_policy(fields=fields, policy=policy, source="test")


def test_an_edit_raising_the_risk_beyond_the_editor_stands_but_is_not_their_approval(
    db, new_request, approvers
):
    request = new_request(params={"path": "/srv/app/a.txt"})  # medium: a team lead decides
    _raise_risk("write_file", "critical")
    edited = {"path": "/srv/app/b.txt"}
    outcome = services.approve_request(
        request_id=request.pk, reviewer=approvers["lead"], modified_params=edited
    )
    assert outcome.vote is None
    assert not outcome.decided
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert request.risk_level == "critical"
    assert request.required_approvals == 2
    assert request.current_tier == "director"
    assert request.modified_params == edited
    assert not request.votes.exists()
    event = AuditEvent.objects.get(event_type="request.edited", subject_id=str(request.pk))
    assert event.payload["rerouted"]["before"]["risk_level"] == "medium"
    assert event.payload["counted_as_approval"] is False

    # Two directors now decide, on the edited arguments.
    assert not services.approve_request(
        request_id=request.pk,
        reviewer=approvers["director"],
        seen_params_sha256=request.current_params_sha256,
    ).decided
    assert services.approve_request(request_id=request.pk, reviewer=approvers["vp"]).decided
    request.refresh_from_db()
    assert request.approved_params_sha256 == params_sha256("write_file", edited)


def test_an_editor_who_may_decide_at_the_new_risk_counts_and_earlier_approvals_are_voided(
    db, new_request, approvers
):
    request = new_request(risk_level="critical", params={"env": "staging"})
    services.approve_request(request_id=request.pk, reviewer=approvers["director"])
    outcome = services.approve_request(
        request_id=request.pk, reviewer=approvers["vp"], modified_params={"env": "prod"}
    )
    assert outcome.vote is not None
    assert not outcome.decided  # the director's approval was for other arguments
    assert request.votes.filter(voided_at__isnull=False).count() == 1


def test_an_edit_raising_the_risk_within_the_editors_reach_re_routes_and_counts(
    db, new_request, approvers
):
    request = new_request(params={"path": "/srv/app/a.txt"})  # medium
    _raise_risk("write_file", "high")
    outcome = services.approve_request(
        request_id=request.pk,
        reviewer=approvers["director"],
        modified_params={"path": "/srv/app/c.txt"},
    )
    assert outcome.decided  # high needs one approval, and a director may give it
    request.refresh_from_db()
    assert request.risk_level == "high"
    assert request.route[0] == "engineering_manager"
    voted = AuditEvent.objects.get(event_type="request.voted", subject_id=str(request.pk))
    assert voted.payload["rerouted"]["after"]["risk_level"] == "high"
