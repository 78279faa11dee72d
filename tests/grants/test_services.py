"""Making and revoking grants (`grants.services`): with the approval that decides the request,
both or neither; never wider than the granter may decide; audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from approvals import services as approvals
from approvals.models import ApprovalRequest, Status
from audit.models import AuditEvent
from grants import services
from grants.models import Grant
from grants.services import GrantTerms
from tests.grants.conftest import ACTION, PARAMS

HOUR = timedelta(hours=1)


def test_approving_with_a_grant_approves_and_grants_in_one_go(db, make_grant, granter):
    grant = make_grant(kind="pinned", pins={"path": "/srv/app", "content": ""}, max_uses=3)
    request = grant.made_from
    assert request.status == Status.APPROVED
    assert (grant.agent_id, grant.action, grant.kind, grant.risk_level) == (
        request.agent_id,
        ACTION,
        "pinned",
        "medium",
    )
    assert grant.pins == {"path": {"prefix": "/srv/app"}, "content": {"equals": "hello"}}
    assert grant.policy_version_id == request.policy_version_id is not None
    assert (grant.max_uses, grant.uses, grant.granted_by) == (3, 0, granter)
    assert grant.expires_at - grant.created_at == HOUR
    event = AuditEvent.objects.get(event_type="grant.created")
    assert (event.actor_name, event.subject_type, event.subject_id) == (
        granter.audit_name,
        "grant",
        str(grant.pk),
    )
    assert event.payload["pins"]["path"] == {"prefix": "/srv/app"}
    assert "hello" not in str(event.payload), "a pinned value is audited by its hash only"
    assert event.payload["request_id"] == str(request.pk)


def test_an_exact_grant_binds_the_approved_arguments_edits_included(db, new_request, granter):
    request = new_request(action=ACTION, params=dict(PARAMS))
    edited = {**PARAMS, "content": "edited by a person"}
    _, grant = services.approve_and_grant(
        request_id=request.pk,
        reviewer=granter,
        modified_params=edited,
        terms=GrantTerms(kind="exact", lifetime=HOUR),
    )
    from approvals.binding import params_sha256

    assert grant.params_sha256 == params_sha256(ACTION, edited)


def _refused(request: ApprovalRequest, reviewer, terms: GrantTerms, match: str) -> None:
    with pytest.raises(approvals.ApprovalError, match=match):
        services.approve_and_grant(request_id=request.pk, reviewer=reviewer, terms=terms)
    request.refresh_from_db()
    assert request.status == Status.PENDING, "a refused grant refuses its approval too"
    assert not Grant.objects.exists()
    assert not AuditEvent.objects.filter(event_type__in=["grant.created", "request.voted"]).exists()


def test_a_lifetime_over_seven_days_is_refused(db, new_request, granter):
    request = new_request(action=ACTION, params=dict(PARAMS))
    terms = GrantTerms(kind="exact", lifetime=timedelta(days=7, hours=1))
    _refused(request, granter, terms, "at most 7 days")


def test_a_grant_wider_than_the_granter_may_decide_is_refused(db, new_request, make_user):
    lead = make_user(roles=("approver",), tier="team_lead")
    request = new_request(action="run_command", params={"cmd": "ls"}, risk_level="high")
    _refused(request, lead, GrantTerms(kind="exact", lifetime=HOUR), "engineering manager")


def test_a_pin_on_an_argument_the_edit_removed_refuses_the_grant_and_the_edit(
    db, new_request, granter
):
    request = new_request(action=ACTION, params=dict(PARAMS), risk_level="medium")
    with pytest.raises(services.GrantRefused, match="not among"):
        services.approve_and_grant(
            request_id=request.pk,
            reviewer=granter,
            modified_params={"content": "no path now"},
            terms=GrantTerms(kind="pinned", pins={"path": ""}, lifetime=HOUR),
        )
    request.refresh_from_db()
    assert (request.status, request.modified_params) == (Status.PENDING, None)


def test_no_grant_for_a_critical_request(db, new_request, approvers):
    request = new_request(risk_level="critical")
    _refused(request, approvers["director"], GrantTerms(kind="exact", lifetime=HOUR), "Critical")


def test_no_grant_once_the_policy_changed_since_the_request(db, new_request, granter):
    from guardrails import policies
    from guardrails.models import Policy
    from guardrails.policyfile import snapshot

    request = new_request(action=ACTION, params=dict(PARAMS))
    policy = Policy.objects.get(name=ACTION)
    policies.save_policy(fields={**snapshot(policy), "description": "changed"}, policy=policy)
    _refused(request, granter, GrantTerms(kind="exact", lifetime=HOUR), "changed since")


def test_a_prefix_on_an_argument_that_is_not_a_path_is_refused(db, new_request, granter):
    request = new_request(action=ACTION, params=dict(PARAMS))
    terms = GrantTerms(kind="pinned", pins={"content": "hel"}, lifetime=HOUR)
    _refused(request, granter, terms, "path-like")


def test_an_expired_request_stays_expired_and_grants_nothing(db, new_request, granter):
    from tests.conftest import shift_into_past

    request = new_request(action=ACTION, params=dict(PARAMS))
    shift_into_past(request.pk, 5 * 3600)
    with pytest.raises(approvals.RequestExpired):
        services.approve_and_grant(
            request_id=request.pk, reviewer=granter, terms=GrantTerms(kind="exact", lifetime=HOUR)
        )
    request.refresh_from_db()
    assert request.status == Status.EXPIRED, "the vote's own expiry is kept"
    assert not Grant.objects.exists()


def test_revoking_is_audited_once_and_only_for_those_who_may(db, make_grant, granter, make_user):
    grant = make_grant()
    other = make_user(roles=("approver",), tier="director")
    with pytest.raises(services.RevokeNotAllowed):
        services.revoke_grant(grant=grant, revoked_by=other)
    assert services.revoke_grant(grant=grant, revoked_by=granter, reason="done with it")
    assert not services.revoke_grant(grant=grant, revoked_by=granter)
    grant.refresh_from_db()
    assert (grant.revoked_by, grant.revoke_reason) == (granter, "done with it")
    [event] = AuditEvent.objects.filter(event_type="grant.revoked")
    assert event.payload["reason"] == "done with it"
    manager = make_user(roles=("manager",))
    second = make_grant()
    assert services.revoke_grant(grant=second, revoked_by=manager)
