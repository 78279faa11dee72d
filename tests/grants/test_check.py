"""The check answers in a person's place when a grant covers the call (issue 24): allow, reason
`standing_approval`, the grant's id; never for a wider call; revocation and policy changes
honoured by the very next check; each use counted and audited."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from agents import services as agents
from audit.models import AuditEvent
from grants import services
from grants.models import Grant
from guardrails import counters, policies
from guardrails import services as guardrails
from guardrails.models import Policy
from guardrails.policyfile import snapshot
from tests.grants.conftest import ACTION, PARAMS

CHECK = "/api/v1/guardrails/check"


def check(agent, params=PARAMS, action=ACTION, **kw):
    return guardrails.check_action(agent=agent, action=action, params=dict(params), **kw)


def test_the_api_answers_allow_with_the_grants_reason_and_id(db, api, make_agent, make_grant):
    agent = make_agent()
    grant = make_grant(agent=agent.agent, max_uses=2)
    response = api(agent.key).post(CHECK, {"action": ACTION, "params": PARAMS})
    assert response.status_code == 200
    answer = response.json()
    assert answer["decision"] == "allow"
    assert answer["grant_id"] == grant.pk
    assert [r["code"] for r in answer["reasons"]] == [
        "policy_requires_approval",
        "standing_approval",
    ]
    assert answer["reasons"][-1]["effect"] == "allow"
    assert "1 use left" in answer["reasons"][-1]["message"]
    grant.refresh_from_db()
    assert grant.uses == 1
    [used] = AuditEvent.objects.filter(event_type="grant.used")
    assert (used.actor_type, used.actor_name, used.subject_id) == (
        "agent",
        agent.agent.name,
        str(grant.pk),
    )
    assert (used.payload["use"], used.payload["max_uses"]) == (1, 2)


def test_an_answer_without_a_grant_says_so(db, api, make_agent):
    agent = make_agent()
    answer = api(agent.key).post(CHECK, {"action": ACTION, "params": PARAMS}).json()
    assert (answer["decision"], answer["grant_id"]) == ("require_approval", None)


def test_a_grant_never_matches_a_wider_call(db, make_agent, make_grant):
    mine, other = make_agent().agent, make_agent().agent
    pinned = make_grant(agent=mine, kind="pinned", pins={"path": "/srv/app"})
    assert check(mine, {"path": "/srv/app/other.txt", "content": "x"}).grant_id == pinned.pk
    # A different pin value, another agent, another action:
    assert check(mine, {"path": "/srv/elsewhere/x.txt", "content": "x"}).grant_id is None
    assert check(mine, {"content": "no path"}).grant_id is None
    assert check(other, {"path": "/srv/app/x.txt", "content": "x"}).grant_id is None
    # database_mutation: high risk, requires approval, like write_file a waivable reason only.
    assert check(mine, {"path": "/srv/app/x.txt"}, action="database_mutation").grant_id is None
    exact = make_grant(agent=mine)
    assert check(mine, PARAMS).grant_id == exact.pk, "the exact one comes first"
    assert check(mine, {**PARAMS, "content": "hello!"}).grant_id == pinned.pk
    assert Grant.objects.get(pk=exact.pk).uses == 1


def test_a_raised_risk_is_never_covered(db, make_agent, make_grant):
    """An agent's own policy at a higher risk: the grant's policy changed (void), and its risk
    is lower than the call's."""
    agent = make_agent().agent
    grant = make_grant(agent=agent)
    fields = {**snapshot(Policy.objects.get(name=ACTION)), "scope": "agent", "agent": agent.name}
    policies.save_policy(fields={**fields, "risk_level": "high"})
    outcome = check(agent)
    assert (outcome.decision, outcome.grant_id) == ("require_approval", None)
    assert outcome.verdict.risk_level == "high"
    grant.refresh_from_db()
    assert grant.uses == 0


def test_revocation_is_honoured_by_the_very_next_check(db, make_agent, make_grant, granter):
    agent = make_agent().agent
    grant = make_grant(agent=agent, kind="pinned", pins={"path": ""})
    assert check(agent).decision == "allow"
    services.revoke_grant(grant=grant, revoked_by=granter)
    outcome = check(agent, {**PARAMS, "content": "again"})
    assert (outcome.decision, outcome.grant_id) == ("require_approval", None)


def test_a_policy_change_voids_the_grant_once(db, make_agent, make_grant):
    agent = make_agent().agent
    grant = make_grant(agent=agent, kind="pinned", pins={"path": ""})
    assert check(agent).decision == "allow"
    policy = Policy.objects.get(name=ACTION)
    policies.save_policy(fields={**snapshot(policy), "description": "reworded"}, policy=policy)
    for content in ("one", "two"):
        outcome = check(agent, {**PARAMS, "content": content})
        assert (outcome.decision, outcome.grant_id) == ("require_approval", None)
    grant.refresh_from_db()
    assert grant.voided_at is not None
    assert grant.uses == 1
    [voided] = AuditEvent.objects.filter(event_type="grant.voided")
    assert voided.payload["reason"] == "policy_changed"


def test_uses_and_lifetime_run_out(db, make_agent, make_grant):
    agent = make_agent().agent
    make_grant(agent=agent, kind="pinned", pins={"path": ""}, max_uses=2)
    decisions = [check(agent, {**PARAMS, "content": str(n)}).decision for n in range(3)]
    assert decisions == ["allow", "allow", "require_approval"]
    later = make_grant(agent=agent, kind="pinned", pins={"path": ""})
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Grant.objects.filter(pk=later.pk).update(
        created_at=an_hour_ago, expires_at=an_hour_ago + timedelta(minutes=59)
    )
    assert check(agent, {**PARAMS, "content": "late"}).grant_id is None


def test_reasons_a_grant_may_not_waive_still_need_a_person(db, make_agent, make_grant):
    agent = make_agent().agent
    make_grant(agent=agent, kind="pinned", pins={"path": ""})
    low = check(agent, {**PARAMS, "content": "a"}, confidence=0.45)
    assert (low.decision, low.grant_id) == ("require_approval", None)
    assert "confidence_low" in low.verdict.codes
    type(agent).objects.filter(pk=agent.pk).update(breaker_opened_at=timezone.now())
    agent.refresh_from_db()
    broken = check(agent, {**PARAMS, "content": "b"})
    assert (broken.decision, broken.grant_id) == ("require_approval", None)
    assert "consecutive_failures" in broken.verdict.codes


def test_a_loop_is_not_waived(db, make_agent, make_grant):
    agent = make_agent().agent
    make_grant(agent=agent, max_uses=10)
    decisions = [check(agent).decision for _ in range(3)]
    assert decisions == ["allow", "allow", "require_approval"]


def test_a_create_asks_a_person_even_with_a_grant(db, make_agent, make_grant, new_request):
    agent = make_agent().agent
    grant = make_grant(agent=agent, kind="pinned", pins={"path": ""})
    request = new_request(agent=agent, action=ACTION, params={**PARAMS, "content": "ask"})
    assert request.status == "pending"
    grant.refresh_from_db()
    assert grant.uses == 0


def test_a_grant_of_someone_who_may_no_longer_decide_is_not_used(
    db, make_agent, make_grant, granter
):
    agent = make_agent().agent
    make_grant(agent=agent, kind="pinned", pins={"path": ""})
    type(granter).objects.filter(pk=granter.pk).update(is_active=False)
    assert check(agent).grant_id is None


def test_a_paused_agent_is_refused_whatever_it_was_granted(db, make_agent, make_grant):
    agent = make_agent().agent
    make_grant(agent=agent, kind="pinned", pins={"path": ""})
    agents.set_agent_status(agent=agent, status="paused", reason="looking into it")
    agent.refresh_from_db()
    assert check(agent).decision == "deny"


def test_the_simulator_names_the_grant_and_uses_nothing(db, make_agent, make_grant):
    agent = make_agent().agent
    grant = make_grant(agent=agent, max_uses=1)
    answer = guardrails.simulate(agent=agent, action=ACTION, params=dict(PARAMS))
    assert (answer.decision, answer.grant_id) == ("allow", grant.pk)
    assert "would allow" in answer.verdict.reasons[-1].message
    grant.refresh_from_db()
    assert grant.uses == 0
    assert not AuditEvent.objects.filter(event_type="grant.used").exists()


def test_an_exact_grant_covers_its_action_however_the_name_is_spelt(db, make_agent, make_grant):
    agent = make_agent().agent
    grant = make_grant(agent=agent)
    assert check(agent, action="Write_File").grant_id == grant.pk
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in "write_file")
    assert check(agent, action=full_width).grant_id == grant.pk


def test_a_granter_who_comes_to_hold_the_agent_no_longer_allows_its_calls(
    db, make_agent, make_grant, granter
):
    """SPEC §2's separation of duties holds for a grant's every use, not only when it is made:
    a granter who has since created one of the agent's keys counts as its owner."""
    agent = make_agent().agent
    make_grant(agent=agent)
    agents.issue_api_key(agent=agent, created_by=granter)
    outcome = check(agent)
    assert outcome.grant_id is None
    assert outcome.decision == "require_approval"
    assert "loop_detected" not in outcome.verdict.codes


def test_an_owners_grant_stops_when_self_approval_is_turned_off(
    db, make_agent, make_user, new_request
):
    owner = make_user("own", roles=("approver",), tier="team_lead")
    agent = make_agent(owner=owner).agent
    admin = make_user("adm", roles=("admin",))
    agents.set_self_approval(agent=agent, allowed=True, reason="a team of one", actor=admin)
    request = new_request(agent=agent, action=ACTION, params=dict(PARAMS), risk_level="medium")
    services.approve_and_grant(
        request_id=request.pk,
        reviewer=owner,
        terms=services.GrantTerms(kind="exact", lifetime=timedelta(days=7)),
    )
    assert check(agent).grant_id is not None
    agents.set_self_approval(agent=agent, allowed=False, reason="no more", actor=admin)
    counters.forget_recent(agent.pk)  # not a loop: the grant alone decides
    outcome = check(agent)
    assert outcome.grant_id is None
    assert "loop_detected" not in outcome.verdict.codes
