"""The provisioning commands of SPEC §11."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from agents.models import Agent
from approvals.models import ApprovalRequest
from demo.people import DEMO_AGENTS


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_user_with_roles_and_tier(db):
    out, _ = run(
        "create_user",
        "alice",
        "--password",
        "a-long-passphrase-42",
        "--role",
        "approver",
        "--role",
        "manager",
        "--tier",
        "director",
    )
    assert out.strip() == "Created user alice (approver, manager, tier director)."
    alice = User.objects.get(username="alice")
    assert alice.check_password("a-long-passphrase-42")
    assert alice.has_role("approver")
    assert alice.has_role("manager")
    assert not alice.has_role("compliance")
    assert alice.tier == "director"


def test_create_user_refuses_an_approver_without_a_tier(db):
    with pytest.raises(CommandError, match="An approver needs a tier"):
        run("create_user", "bob", "--password", "a-long-passphrase-42", "--role", "approver")
    assert not User.objects.filter(username="bob").exists()


def test_create_user_refuses_a_weak_password(db):
    with pytest.raises(CommandError, match="password"):
        run("create_user", "carol", "--password", "1234", "--role", "compliance")


def test_create_user_refuses_a_taken_username(db, make_user):
    make_user("dave")
    with pytest.raises(CommandError, match="taken"):
        run("create_user", "Dave", "--password", "a-long-passphrase-42")


def test_create_agent_prints_the_key_alone_on_the_last_line(db, make_user, api):
    make_user("owner1")
    out, err = run("create_agent", "release-bot", "--owner", "owner1", "--team", "platform")
    key = out.strip().splitlines()[-1]
    assert key.startswith("ovs_")
    assert " " not in key
    assert "shown once" in err
    agent = Agent.objects.get(name="release-bot")
    assert agent.owner is not None
    assert agent.owner.username == "owner1"
    assert agent.team == "platform"
    assert api(key).get("/api/v1/agents/me").json()["name"] == "release-bot"


def test_create_agent_refuses_an_unknown_owner_and_a_duplicate_name(db, make_agent):
    with pytest.raises(CommandError, match="No user named"):
        run("create_agent", "x-bot", "--owner", "nobody")
    make_agent("taken-bot")
    with pytest.raises(CommandError, match="exists already"):
        run("create_agent", "taken-bot")
    with pytest.raises(CommandError, match="letters, digits"):
        run("create_agent", "has spaces")


def test_seed_demo_creates_every_role_and_tier_once(db):
    run("seed_demo", "--if-empty")
    roles = {name for user in User.objects.all() for name in user.role_names}
    assert roles == {"approver", "manager", "compliance", "admin"}
    tiers = set(User.objects.exclude(tier="").values_list("tier", flat=True))
    assert tiers == {"team_lead", "engineering_manager", "director", "vp_engineering"}
    assert Agent.objects.count() == len(DEMO_AGENTS)
    out, _ = run("seed_demo", "--if-empty")
    assert "not seeding" in out
    assert "create_agent NAME" in out  # where a key comes from, now that none is printed
    assert Agent.objects.count() == len(DEMO_AGENTS)


def test_seed_demo_shows_every_agent_control_state_through_the_services(db):
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import AuditEvent
    from controls.models import AgentAlert, AutonomyRecommendation, Outcome, Receipt
    from guardrails.models import Violation

    started = time.monotonic()
    out, _ = run("seed_demo")
    assert time.monotonic() - started < 20
    assert "Demo agent controls:" in out
    assert "a loop detected" in out
    agents = {agent.name: agent for agent in Agent.objects.all()}
    alerts = {
        (alert.kind, alert.agent.name if alert.agent else alert.team)
        for alert in AgentAlert.objects.select_related("agent")
    }

    etl = agents["etl-runner"]  # 3 failures in a row: a person decides each call
    assert (etl.status, etl.consecutive_failures, etl.breaker_state) == ("active", 3, "open")
    retry = ApprovalRequest.objects.get(agent=etl)
    assert retry.status == "pending"
    assert "consecutive_failures" in [reason["code"] for reason in retry.check_reasons]

    billing = agents["billing-sync"]  # 5: paused by its breaker, the managers alerted
    assert (billing.status, billing.breaker_state) == ("paused", "tripped")
    assert billing.status_reason.startswith("circuit_breaker")
    assert ("circuit_breaker", "billing-sync") in alerts

    research = agents["research-agent"]  # a receipt for other arguments: the kill switch
    assert research.status == "disabled"
    assert research.status_reason.startswith("execution_mismatch")
    assert Outcome.objects.get(agent=research).receipt == Receipt.MISMATCH
    assert ("execution_mismatch", "research-agent") in alerts
    assert AuditEvent.objects.filter(event_type="execution.mismatch").count() == 1

    loader = agents["warehouse-loader"]  # a critical failure: lowered at once, restorable
    assert loader.autonomy_level == 2
    assert loader.autonomy_restorable == {"level": 3, "categories": {}}
    lowered = Agent.objects.filter(autonomy_restorable__isnull=False)
    assert [agent.name for agent in lowered] == ["warehouse-loader"]  # deploy-bot keeps its level
    assert agents["deploy-bot"].autonomy_level is None
    assert ("autonomy_lowered", "warehouse-loader") in alerts
    assert ("cascade", "data") in alerts  # three agents of team data failed within minutes

    triage = agents["triage-bot"]  # a record that recommends a raise from level 3
    assert triage.autonomy_level == 3
    raise_ = AutonomyRecommendation.objects.get(agent=triage)
    assert (raise_.direction, raise_.level) == ("raise", 3)
    assert raise_.outcomes >= 50
    assert raise_.successes == raise_.outcomes
    assert raise_.decided >= 5
    assert raise_.overridden == 0

    docs = agents["docs-bot"]  # the same record at level 2, applied by a manager: a trial
    assert (docs.autonomy_level, docs.autonomy_trial_from) == (3, 2)
    assert docs.autonomy_trial_until is not None
    assert docs.autonomy_trial_until - timezone.now() > timedelta(days=29)

    assert agents["support-agent"].autonomy_by_category == {"external_api": 1}

    executed = ApprovalRequest.objects.filter(receipt__receipt=Receipt.MATCHED)
    assert executed.count() >= 7
    changed = executed.get(modified_params__isnull=False)  # executed with the approver's changes
    assert Outcome.objects.get(approval_request=changed).params_sha256 == (
        changed.approved_params_sha256
    )
    assert Violation.objects.filter(code="loop_detected", agent=agents["support-agent"]).exists()

    # Beat's refresh (every 30 s under make run) keeps the picture: nothing more is lowered.
    from controls.services import refresh_autonomy

    assert refresh_autonomy() == {"lowered": 0, "trials_ended": 0}
    assert AutonomyRecommendation.objects.get(agent=triage).direction == "raise"

    # Seeding again adds nothing.
    counts = (Outcome.objects.count(), AgentAlert.objects.count(), AuditEvent.objects.count())
    run("seed_demo")
    assert (
        Outcome.objects.count(),
        AgentAlert.objects.count(),
        AuditEvent.objects.count(),
    ) == counts
