"""Autonomy levels (SPEC §6): the table as the real check applies it to an agent's own level,
per category and by default; recommendations at the seed's thresholds, computed from the record
in SQL; a raise applied as a trial that reverts by itself; a lowering applied at once, audited,
alerted and restorable."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents.models import Agent
from approvals.models import ApprovalRequest, Status
from audit.models import AuditEvent
from controls import autonomy, services
from controls.autonomy import Evidence, recommend
from controls.models import AgentAlert, AlertKind, AutonomyRecommendation, Direction, Outcome
from guardrails import policies as policy_changes
from guardrails import services as guardrails
from guardrails.models import Violation
from tests.guardrails.policies import policy_fields

pytestmark = pytest.mark.django_db

# One policy per risk, nothing else set, so that only the level and the confidence decide.
ACTION_AT = {"low": "probe_low", "medium": "probe_medium", "high": "probe_high"}


@pytest.fixture
def probes() -> None:
    for risk, name in ACTION_AT.items():
        policy_changes.save_policy(
            fields=policy_fields(name=name, risk_level=risk, category="write")
        )


def decide(agent: Agent, risk: str, confidence: float | None, nonce: list[int] = [0]) -> Any:  # noqa: B006
    nonce[0] += 1  # another argument each time: the same call thrice would be a loop
    return guardrails.check_action(
        agent=agent, action=ACTION_AT[risk], params={"n": nonce[0]}, confidence=confidence
    )


TABLE = [
    (0, "low", 1.0, "deny", ["autonomy_manual"]),
    (1, "low", 1.0, "require_approval", ["autonomy_level"]),
    (2, "low", None, "allow", []),
    (2, "medium", 1.0, "require_approval", ["autonomy_level"]),
    (3, "medium", 0.7, "allow", []),
    (3, "medium", 0.69, "require_approval", ["autonomy_level"]),
    (3, "medium", None, "require_approval", ["autonomy_level"]),
    (3, "high", 1.0, "require_approval", ["autonomy_level"]),
    (4, "medium", 0.85, "allow", []),
    (4, "medium", 0.84, "require_approval", ["autonomy_level"]),
    (4, "high", 1.0, "require_approval", ["autonomy_level"]),
    (5, "medium", None, "allow", []),
    (5, "high", 0.95, "allow", []),
    (5, "high", 0.94, "require_approval", ["autonomy_level"]),
    (5, "high", None, "require_approval", ["autonomy_level"]),
]


@pytest.mark.parametrize(("level", "risk", "confidence", "decision", "codes"), TABLE)
def test_each_row_of_the_table_at_each_boundary_through_the_check(
    probes, make_agent, level, risk, confidence, decision, codes
) -> None:
    agent = make_agent().agent
    services.set_autonomy(agent=agent, level=level, why="test")

    outcome = decide(agent, risk, confidence)

    assert (outcome.decision, outcome.verdict.codes) == (decision, codes)


def test_a_categorys_level_overrides_the_agents(probes, make_agent) -> None:
    agent = make_agent().agent
    services.set_autonomy(agent=agent, level=5, category="write", why="trusted writer")
    assert decide(agent, "medium", None).decision == "allow"
    services.set_autonomy(agent=agent, level=None, category="write", why="back to overall")
    assert decide(agent, "medium", None).decision == "require_approval"


def test_agents_without_a_level_follow_the_admins_default(probes, make_agent, settings) -> None:
    agent = make_agent().agent
    settings.OVERSIGHT_DEFAULT_AUTONOMY_LEVEL = 1
    assert decide(agent, "low", 1.0).verdict.codes == ["autonomy_level"]
    settings.OVERSIGHT_DEFAULT_AUTONOMY_LEVEL = 2
    assert decide(agent, "low", 1.0).decision == "allow"


def test_a_change_is_audited_with_who_why_from_and_to(make_agent, make_user) -> None:
    agent = make_agent().agent
    manager = make_user(roles=("manager",))

    assert services.set_autonomy(agent=agent, level=4, why="clean record", actor=manager)
    assert not services.set_autonomy(agent=agent, level=4, why="again", actor=manager)

    (event,) = AuditEvent.objects.filter(event_type="autonomy.changed")
    assert event.actor_id == str(manager.pk)
    assert event.payload == {
        "category": None,
        "from": 2,  # the default
        "to": 4,
        "own_from": None,
        "own_to": 4,
        "why": "clean record",
        "source": "manual",
        "trial_until": None,
    }


def test_only_managers_and_admins_change_a_level(make_agent, make_user) -> None:
    agent = make_agent().agent
    with pytest.raises(PermissionDenied):
        services.set_autonomy(agent=agent, level=4, actor=make_user(roles=("compliance",)))
    with pytest.raises(ValidationError):
        services.set_autonomy(agent=agent, level=6)
    with pytest.raises(ValidationError):
        services.set_autonomy(agent=agent, level=3, category="teleport")


# --- recommendations at the thresholds ------------------------------------------------------


@pytest.mark.parametrize(
    ("evidence", "direction"),
    [
        # raise: > 95 % success, < 5 % override, no critical failure, at least 50 outcomes
        (Evidence(outcomes=100, successes=96, decided=100, overridden=4), Direction.RAISE),
        (Evidence(outcomes=100, successes=95, decided=100, overridden=4), Direction.KEEP),
        (Evidence(outcomes=100, successes=96, decided=100, overridden=5), Direction.KEEP),
        (Evidence(outcomes=49, successes=49), Direction.KEEP),
        (Evidence(outcomes=50, successes=50), Direction.RAISE),
        (Evidence(outcomes=100, successes=100, critical_failures=1), Direction.LOWER),
        # lower: < 85 % success, > 20 % override, or any critical failure
        (Evidence(outcomes=100, successes=84), Direction.LOWER),
        (Evidence(outcomes=100, successes=85), Direction.KEEP),
        (Evidence(outcomes=100, successes=90, decided=100, overridden=21), Direction.LOWER),
        (Evidence(outcomes=100, successes=90, decided=100, overridden=20), Direction.KEEP),
    ],
)
def test_the_recommendation_flips_at_the_seeds_thresholds(evidence, direction) -> None:
    assert recommend(3, evidence, min_evidence=10)[0] == direction


def test_a_rate_lowers_only_over_enough_evidence_a_critical_failure_always() -> None:
    assert recommend(3, Evidence(outcomes=2, successes=0), min_evidence=10)[0] == Direction.KEEP
    assert recommend(3, Evidence(critical_failures=1), min_evidence=10)[0] == Direction.LOWER
    assert recommend(0, Evidence(critical_failures=1), min_evidence=10)[0] == Direction.KEEP
    assert recommend(5, Evidence(outcomes=60, successes=60))[0] == Direction.KEEP


def record(agent: Agent, ok: int, failed: int = 0, **fields: Any) -> None:
    now = timezone.now()
    Outcome.objects.bulk_create(
        [
            Outcome(
                agent=agent,
                action="probe_low",
                params_sha256="0" * 64,
                success=n < ok,
                created_at=now - timedelta(minutes=n),
                **fields,
            )
            for n in range(ok + failed)
        ]
    )


def decided(agent: Agent, new_request, approved: int, rejected: int, changed: int = 0) -> None:
    """Requests decided by people: approved, rejected, approved with changed arguments."""
    for n in range(approved + rejected + changed):
        request = new_request(agent=agent, params={"n": n})
        status = Status.REJECTED if n >= approved and n < approved + rejected else Status.APPROVED
        ApprovalRequest.objects.filter(pk=request.pk).update(
            status=status,
            decided_at=timezone.now(),
            decided_by=request.agent.owner or _someone(),
            modified_params={"n": -n} if n >= approved + rejected else None,
        )


def _someone():
    from accounts.models import User

    return User.objects.create(username=f"decider-{User.objects.count()}")


@pytest.mark.parametrize(
    ("ok", "failed", "approved", "rejected", "changed", "direction"),
    [
        (96, 4, 20, 0, 0, Direction.RAISE),
        (95, 5, 20, 0, 0, Direction.KEEP),
        (84, 16, 0, 0, 0, Direction.LOWER),
        (85, 15, 0, 0, 0, Direction.KEEP),
        (96, 4, 20, 0, 1, Direction.RAISE),  # 1 of 21 changed: 4.8 %
        (96, 4, 19, 0, 1, Direction.KEEP),  # 1 of 20 changed: 5 % is not below 5 %
        (90, 10, 79, 21, 0, Direction.LOWER),
        (90, 10, 80, 10, 10, Direction.KEEP),  # 20 % overridden: not above 20 %
    ],
)
def test_the_record_in_the_database_gives_the_recommendation(
    make_agent, new_request, ok, failed, approved, rejected, changed, direction
) -> None:
    agent = make_agent().agent
    services.set_autonomy(agent=agent, level=3, why="start")
    Agent.objects.filter(pk=agent.pk).update(
        autonomy_changed_at=timezone.now() - timedelta(days=40)
    )
    record(agent, ok, failed)
    decided(agent, new_request, approved, rejected, changed)

    autonomy.refresh()

    got = AutonomyRecommendation.objects.get(agent=agent)
    assert got.direction == direction, got.reasons
    assert (got.outcomes, got.successes) == (ok + failed, ok)
    assert (got.decided, got.overridden) == (approved + rejected + changed, rejected + changed)


def aged(agent: Agent, level: int) -> Agent:
    """`agent` at `level` for 40 days: its whole 30-day record counts."""
    services.set_autonomy(agent=agent, level=level, why="start")
    Agent.objects.filter(pk=agent.pk).update(
        autonomy_changed_at=timezone.now() - timedelta(days=40)
    )
    agent.refresh_from_db()
    return agent


def test_a_lowering_applies_at_once_audited_alerted_and_restorable(make_agent, make_user):
    agent = aged(make_agent().agent, 4)
    services.set_autonomy(agent=agent, level=5, category="read", why="reads are safe")
    Agent.objects.filter(pk=agent.pk).update(
        autonomy_changed_at=timezone.now() - timedelta(days=40)
    )
    record(agent, 80, 20)

    assert services.refresh_autonomy() == {"lowered": 1, "trials_ended": 0}

    agent.refresh_from_db()
    assert agent.autonomy_level == 3
    assert agent.autonomy_by_category == {"read": 3}, "a category above the new level is capped"
    event = AuditEvent.objects.filter(event_type="autonomy.changed").latest("sequence")
    assert event.actor_type == "system"
    assert (event.payload["from"], event.payload["to"], event.payload["source"]) == (
        4,
        3,
        "lowered",
    )
    assert "Success rate 80 %" in event.payload["why"]
    (alert,) = AgentAlert.objects.filter(kind=AlertKind.AUTONOMY_LOWERED)
    assert alert.agent == agent
    assert alert.email is not None

    # The record starts again at the new level: the same evidence does not lower it twice.
    assert services.refresh_autonomy()["lowered"] == 0
    assert AutonomyRecommendation.objects.get(agent=agent).direction == Direction.KEEP

    assert services.restore_autonomy(agent=agent, actor=make_user(roles=("manager",)))
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_by_category) == (4, {"read": 5})
    assert not services.restore_autonomy(agent=agent, actor=None), "restored once"


def test_a_raise_is_one_click_a_trial_that_reverts_by_itself(make_agent, make_user):
    agent = aged(make_agent().agent, 2)
    manager = make_user(roles=("manager",))
    record(agent, 60)
    services.refresh_autonomy()
    assert AutonomyRecommendation.objects.get(agent=agent).direction == Direction.RAISE

    assert services.apply_recommendation(agent=agent, actor=manager) == 3

    agent.refresh_from_db()
    assert agent.autonomy_level == 3
    assert agent.autonomy_trial_from == 2
    assert agent.autonomy_trial_until is not None
    assert agent.autonomy_trial_until > timezone.now() + timedelta(days=29)
    with pytest.raises(ValidationError):
        services.apply_recommendation(agent=agent, actor=manager)  # used up

    # During the trial the agent fails: the trial reverts to where it came from, on its own.
    record(agent, 0, 1, critical=True)
    services.refresh_autonomy()
    agent.refresh_from_db()
    assert agent.autonomy_level == 2
    assert agent.autonomy_trial_until is None
    event = AuditEvent.objects.filter(event_type="autonomy.changed").latest("sequence")
    assert (event.payload["from"], event.payload["to"]) == (3, 2)
    assert event.payload["source"] == "trial_reverted"


def test_a_trial_without_a_lowering_condition_keeps_its_level(make_agent, make_user):
    agent = aged(make_agent().agent, 2)
    record(agent, 60)
    services.refresh_autonomy()
    services.apply_recommendation(agent=agent, actor=make_user(roles=("manager",)))
    Agent.objects.filter(pk=agent.pk).update(
        autonomy_trial_until=timezone.now() - timedelta(seconds=1)
    )

    assert services.refresh_autonomy()["trials_ended"] == 1

    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_trial_until) == (3, None)


def test_critical_failures_count_mismatches_critical_violations_and_critical_actions(
    make_agent,
):
    agent = aged(make_agent().agent, 3)
    record(agent, 60)
    guardrails.check_action(agent=agent, action="read_file", params={"path": "/app/.env"})
    assert Violation.objects.get(agent=agent).severity == "critical"

    found = autonomy.evidence(timezone.now(), [agent.pk])[agent.pk]

    assert found.critical_failures == 1
    assert recommend(3, found)[0] == Direction.LOWER


def test_the_record_is_at_most_30_days_old(make_agent) -> None:
    agent = aged(make_agent().agent, 3)
    Outcome.objects.create(
        agent=agent,
        action="probe_low",
        params_sha256="0" * 64,
        success=False,
        critical=True,
        cost_cents=Decimal("1"),
        created_at=timezone.now() - timedelta(days=31),
    )
    assert autonomy.evidence(timezone.now(), [agent.pk]) == {}


def test_no_raise_with_a_critical_failure_anywhere_in_the_30_days(make_agent) -> None:
    """The record for a lowering starts at the last change; a raise needs no critical failure
    in the whole 30 days, changes or not."""
    agent = aged(make_agent().agent, 3)
    record(agent, 0, 1, critical=True)
    services.refresh_autonomy()  # lowered to 2: its record starts again
    record(agent, 60)  # 60 clean outcomes since (within the minute)
    Outcome.objects.filter(agent=agent, success=True).update(created_at=timezone.now())

    autonomy.refresh()

    got = AutonomyRecommendation.objects.get(agent=agent)
    assert got.direction == Direction.KEEP
    assert any("critical failure(s) within 30 days" in reason for reason in got.reasons)


def test_a_categorys_own_level_leaves_a_trial_running(make_agent, make_user) -> None:
    agent = aged(make_agent().agent, 2)
    manager = make_user(roles=("manager",))
    record(agent, 60)
    services.refresh_autonomy()
    services.apply_recommendation(agent=agent, actor=manager)
    services.set_autonomy(agent=agent, level=1, category="deploy", why="careful", actor=manager)
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_trial_from) == (3, 2)


def test_a_lowering_is_not_applied_when_the_level_changed_since_the_record_was_read(
    make_agent,
) -> None:
    agent = aged(make_agent().agent, 3)
    read_at = agent.autonomy_changed_at
    services.set_autonomy(agent=agent, level=4, why="x")
    services.set_autonomy(agent=agent, level=3, why="and back")
    lowered = services.lower_autonomy(
        agent=agent, reasons=["stale"], expected_level=3, expected_changed_at=read_at
    )
    assert lowered is None
