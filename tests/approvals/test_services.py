"""The domain rules of SPEC §2, through the services every caller uses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import rules, services
from approvals.binding import params_sha256
from approvals.models import ApprovalRequest, EscalationRoute, Status
from audit.models import AuditEvent


def test_a_new_request_is_pending_routed_and_bound_to_its_arguments(db, new_request):
    request = new_request(risk_level="high", urgency="high")
    assert request.status == Status.PENDING
    assert request.route == ["engineering_manager", "director"]
    assert request.current_tier == "engineering_manager"
    assert request.required_approvals == 1
    assert request.params_sha256 == params_sha256(
        "run_command", {"service": "api", "version": "1.2.3"}
    )
    assert request.expires_at - request.created_at == timedelta(hours=1)
    assert request.escalates_at - request.created_at == timedelta(minutes=30)
    assert (
        AuditEvent.objects.filter(event_type="request.created", subject_id=str(request.pk)).count()
        == 1
    )


@pytest.mark.parametrize(
    ("urgency", "limit"),
    [("low", 24 * 3600), ("normal", 4 * 3600), ("high", 3600), ("critical", 900)],
)
def test_urgency_sets_the_default_time_limit(db, new_request, urgency, limit):
    request = new_request(urgency=urgency)
    assert (request.expires_at - request.created_at).total_seconds() == limit


def test_an_agent_may_shorten_its_time_limit_but_not_lengthen_it(db, new_request):
    short = new_request(urgency="critical", timeout_seconds=60)
    assert (short.expires_at - short.created_at).total_seconds() == 60
    assert (short.escalates_at - short.created_at).total_seconds() == 30
    with pytest.raises(services.Invalid, match="never lengthen"):
        new_request(urgency="critical", timeout_seconds=901)


def test_params_nested_too_deeply_are_refused_by_create_and_by_approve_with_changes(
    db, new_request, approvers
):
    deep: object = 1
    for _ in range(2_000):  # deeper than Python's recursion limit: no RecursionError either
        deep = [deep]
    with pytest.raises(services.Invalid, match="deeper than 64 levels"):
        new_request(params={"a": deep})
    request = new_request()
    with pytest.raises(services.Invalid, match="deeper than 64 levels"):
        services.approve_request(
            request_id=request.pk, reviewer=approvers["lead"], modified_params={"a": deep}
        )
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_routes_are_read_from_the_admin_editable_table(db, new_request):
    EscalationRoute.objects.filter(risk_level="low").update(tiers=["engineering_manager"])
    rules.forget_routes()
    assert new_request(risk_level="low").route == ["engineering_manager"]


def test_critical_requests_need_two_distinct_approvers(db, new_request, approvers):
    request = new_request(risk_level="critical")
    first = services.approve_request(request_id=request.pk, reviewer=approvers["director"])
    assert not first.decided
    with pytest.raises(services.AlreadyVoted):
        services.approve_request(request_id=request.pk, reviewer=approvers["director"])
    second = services.approve_request(request_id=request.pk, reviewer=approvers["vp"])
    assert second.decided
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.approved_params_sha256 == request.params_sha256


def test_one_approval_decides_a_medium_request(db, new_request, approvers):
    request = new_request(risk_level="medium")
    outcome = services.approve_request(
        request_id=request.pk, reviewer=approvers["lead"], comment="ok"
    )
    assert outcome.decided
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.decided_by == approvers["lead"]
    assert (
        AuditEvent.objects.filter(event_type="request.decided", subject_id=str(request.pk)).count()
        == 1
    )


def test_any_rejection_rejects_even_after_an_approval(db, new_request, approvers):
    request = new_request(risk_level="critical")
    services.approve_request(request_id=request.pk, reviewer=approvers["director"])
    services.reject_request(
        request_id=request.pk, reviewer=approvers["vp"], reason="Not during the freeze."
    )
    request.refresh_from_db()
    assert request.status == Status.REJECTED
    assert request.decision_reason == "Not during the freeze."


def test_a_rejection_needs_a_reason(db, new_request, approvers):
    request = new_request()
    with pytest.raises(services.Invalid, match="Say why"):
        services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="  ")
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_an_approver_below_the_routes_first_tier_may_not_decide(db, new_request, approvers):
    request = new_request(risk_level="high")
    with pytest.raises(services.NotAllowed, match="engineering manager level or above"):
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert services.approve_request(request_id=request.pk, reviewer=approvers["vp"]).decided


def test_people_without_the_approver_role_may_not_decide(db, new_request, make_user):
    request = new_request()
    manager = make_user("just-a-manager", roles=("manager",))
    with pytest.raises(services.NotAllowed, match="Only approvers"):
        services.approve_request(request_id=request.pk, reviewer=manager)


def test_the_agents_owner_may_not_approve_its_requests(db, new_request, make_agent, approvers):
    owned = make_agent(owner=approvers["em"]).agent
    request = new_request(agent=owned, risk_level="medium")
    with pytest.raises(services.NotAllowed, match="You own this agent"):
        services.approve_request(request_id=request.pk, reviewer=approvers["em"])


def test_self_approval_when_allowed_is_audited_as_such(
    db, settings, new_request, make_agent, approvers
):
    settings.OVERSIGHT_ALLOW_SELF_APPROVAL = True
    request = new_request(agent=make_agent(owner=approvers["em"]).agent)
    outcome = services.approve_request(request_id=request.pk, reviewer=approvers["em"])
    assert outcome.decided
    assert outcome.vote is not None
    assert outcome.vote.is_self_approval
    assert (
        AuditEvent.objects.filter(
            event_type="request.self_approved", subject_id=str(request.pk)
        ).count()
        == 1
    )


def test_approve_with_changes_binds_the_decision_to_the_new_arguments(db, new_request, approvers):
    request = new_request()
    changed = {"service": "api", "version": "1.2.4"}
    services.approve_request(
        request_id=request.pk, reviewer=approvers["lead"], modified_params=changed
    )
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.modified_params == changed
    assert request.approved_params_sha256 == params_sha256(request.action, changed)
    assert request.approved_params_sha256 != request.params_sha256


def test_a_change_voids_earlier_approvals_on_a_multi_party_request(db, new_request, approvers):
    request = new_request(risk_level="critical")
    services.approve_request(request_id=request.pk, reviewer=approvers["director"])
    outcome = services.approve_request(
        request_id=request.pk,
        reviewer=approvers["vp"],
        modified_params={"service": "api", "version": "2"},
    )
    assert not outcome.decided, "the first approval was for other arguments"
    # The first director may approve again, now for the changed arguments.
    assert services.approve_request(request_id=request.pk, reviewer=approvers["director"]).decided
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.votes.filter(voided_at__isnull=False).count() == 1


def test_final_states_never_change(db, new_request, approvers):
    request = new_request()
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    with pytest.raises(services.NotPending):
        services.approve_request(request_id=request.pk, reviewer=approvers["em"])
    assert services.expire_request(request_id=request.pk) is False
    with pytest.raises(services.NotPending):
        services.cancel_request(request_id=request.pk, agent=request.agent)


def test_no_vote_is_accepted_after_expires_at_even_before_any_sweep(db, new_request, approvers):
    request = new_request()
    ApprovalRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - timedelta(hours=5),
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    with pytest.raises(services.RequestExpired):
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    request.refresh_from_db()
    assert request.status == Status.EXPIRED
    assert not request.votes.exists()
    assert (
        AuditEvent.objects.filter(event_type="request.expired", subject_id=str(request.pk)).count()
        == 1
    )


def test_expire_and_escalate_are_idempotent_and_wait_for_their_time(db, new_request):
    request = new_request(risk_level="high")
    assert services.escalate_request(request_id=request.pk) is False  # not half-time yet
    assert services.expire_request(request_id=request.pk) is False
    now = timezone.now()
    ApprovalRequest.objects.filter(pk=request.pk).update(
        created_at=now - timedelta(minutes=40),
        escalates_at=now - timedelta(minutes=10),
        expires_at=now + timedelta(minutes=20),
    )
    assert services.escalate_request(request_id=request.pk) is True
    assert services.escalate_request(request_id=request.pk) is False
    request.refresh_from_db()
    assert request.current_tier == "director"
    assert request.escalation_level == 1
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=now - timedelta(seconds=1))
    assert services.expire_request(request_id=request.pk) is True
    assert services.expire_request(request_id=request.pk) is False
    events = AuditEvent.objects.filter(subject_id=str(request.pk))
    assert events.filter(event_type="request.escalated").count() == 1
    assert events.filter(event_type="request.expired").count() == 1


def test_escalation_keeps_earlier_tiers_able_to_decide(db, new_request, approvers):
    request = new_request(risk_level="medium")
    now = timezone.now()
    ApprovalRequest.objects.filter(pk=request.pk).update(escalates_at=now - timedelta(seconds=1))
    services.escalate_request(request_id=request.pk)
    assert services.approve_request(request_id=request.pk, reviewer=approvers["lead"]).decided


@pytest.mark.parametrize(
    ("route", "target", "flagged"),
    [(["team_lead"], "engineering_manager", False), (["vp_engineering"], "vp_engineering", True)],
)
def test_one_tier_routes_escalate_up_the_ranking_or_stay_flagged_at_the_top(
    db, new_request, route, target, flagged
):
    EscalationRoute.objects.filter(risk_level="low").update(tiers=route)
    rules.forget_routes()
    request = new_request(risk_level="low")
    ApprovalRequest.objects.filter(pk=request.pk).update(
        escalates_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.escalate_request(request_id=request.pk)
    request.refresh_from_db()
    assert request.current_tier == target
    assert request.escalation_flagged is flagged


def test_a_paused_agent_cannot_create_requests(db, new_request, make_agent):
    from agents import services as agents

    agent = make_agent().agent
    agents.set_agent_status(agent=agent, status="paused", reason="circuit breaker")
    with pytest.raises(services.AgentStopped) as caught:
        new_request(agent=agent)
    assert caught.value.code == "agent_paused"


def test_a_rolled_back_decision_leaves_no_trace(db, new_request, approvers):
    from django.db import transaction

    request = new_request()
    events_before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        raise RuntimeError("boom")
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert AuditEvent.objects.count() == events_before


def test_a_route_changed_through_the_admin_service_applies_to_the_next_request(
    db, new_request, make_user, django_capture_on_commit_callbacks
):
    from approvals.routes import save_route

    new_request(risk_level="low")  # warms this process's route cache
    route = EscalationRoute.objects.get(risk_level="low")
    route.tiers = ["director"]
    with django_capture_on_commit_callbacks(execute=True):
        save_route(route=route, actor=make_user("route-admin", roles=("admin",)))
    assert new_request(risk_level="low").route == ["director"]
    assert AuditEvent.objects.filter(event_type="route.changed").count() == 1
