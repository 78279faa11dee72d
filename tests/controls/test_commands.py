"""The agent-control commands of SPEC §11: `set_autonomy` and `set_agent_status`, thin doors to
the same services as the agent's page (audited the same way)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import AgentStatus
from approvals.models import Status
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def events(event_type: str, agent) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(event_type=event_type, subject_id=str(agent.pk)).order_by(
            "sequence"
        )
    )


@pytest.fixture
def managers(make_user):
    return (
        make_user("mona", roles=("manager",)),
        make_user("dara", roles=("manager",)),
    )


# --- set_autonomy ---------------------------------------------------------------------------


def test_set_autonomy_sets_the_overall_level_and_audits_from_and_to(make_agent, managers):
    agent = make_agent("ops-bot").agent
    out = run("set_autonomy", "ops-bot", "4", "--by", "mona", "--reason", "steady for months")
    assert out.strip() == "ops-bot is now at autonomy level 4 (high) overall."
    agent.refresh_from_db()
    assert agent.autonomy_level == 4
    [event] = events("autonomy.changed", agent)
    assert (event.actor_type, event.actor_id) == ("user", str(managers[0].pk))
    assert event.payload["from"] == 2  # the admin's default until now
    assert event.payload["own_from"] is None
    assert (event.payload["to"], event.payload["own_to"]) == (4, 4)
    assert event.payload["category"] is None
    assert event.payload["why"] == "steady for months"
    assert event.payload["source"] == "manual"


def test_set_autonomy_for_a_category_leaves_the_overall_level(make_agent):
    agent = make_agent("ops-bot").agent
    run("set_autonomy", "ops-bot", "3")
    out = run("set_autonomy", "OPS-BOT", "1", "--category", "deploy")
    assert out.strip() == "ops-bot is now at autonomy level 1 (assisted) for deploy."
    agent.refresh_from_db()
    assert agent.autonomy_level == 3
    assert agent.autonomy_by_category == {"deploy": 1}
    assert agent.autonomy_for("deploy") == 1
    assert agent.autonomy_for("write") == 3
    last = events("autonomy.changed", agent)[-1]
    assert (last.payload["category"], last.payload["from"], last.payload["to"]) == (
        "deploy",
        3,  # it followed the overall level
        1,
    )
    assert (last.payload["own_from"], last.payload["own_to"]) == (None, 1)


def test_default_hands_a_level_back_to_the_default(make_agent, settings):
    settings.OVERSIGHT_DEFAULT_AUTONOMY_LEVEL = 2
    agent = make_agent("ops-bot").agent
    run("set_autonomy", "ops-bot", "4")
    run("set_autonomy", "ops-bot", "0", "--category", "delete")
    run("set_autonomy", "ops-bot", "default", "--category", "delete")
    agent.refresh_from_db()
    assert agent.autonomy_by_category == {}
    assert agent.autonomy_for("delete") == 4
    out = run("set_autonomy", "ops-bot", "default")
    assert out.strip() == "ops-bot is now at autonomy level 2 (partial) overall."
    agent.refresh_from_db()
    assert agent.autonomy_level is None
    assert agent.overall_autonomy == 2
    last = events("autonomy.changed", agent)[-1]
    assert (last.payload["from"], last.payload["to"]) == (4, 2)
    assert (last.payload["own_from"], last.payload["own_to"]) == (4, None)


def test_setting_the_same_level_again_changes_and_audits_nothing(make_agent):
    agent = make_agent("ops-bot").agent
    run("set_autonomy", "ops-bot", "2")
    out = run("set_autonomy", "ops-bot", "2")
    assert "was already at autonomy level 2" in out
    assert len(events("autonomy.changed", agent)) == 1


@pytest.mark.parametrize("level", ["6", "-1", "high", "2.5", ""])
def test_set_autonomy_refuses_a_bad_level(make_agent, level):
    agent = make_agent("ops-bot").agent
    with pytest.raises(CommandError, match="LEVEL is 0-5, or default"):
        run("set_autonomy", "ops-bot", level)
    agent.refresh_from_db()
    assert agent.autonomy_level is None
    assert not events("autonomy.changed", agent)


def test_set_autonomy_refuses_an_unknown_agent_category_or_person(make_agent, make_user):
    make_agent("ops-bot")
    with pytest.raises(CommandError, match="No agent named 'nobody-bot'"):
        run("set_autonomy", "nobody-bot", "3")
    with pytest.raises(CommandError, match="category"):
        run("set_autonomy", "ops-bot", "3", "--category", "astrology")
    with pytest.raises(CommandError, match="No active user named 'ghost'"):
        run("set_autonomy", "ops-bot", "3", "--by", "ghost")
    make_user("appr", roles=("approver",), tier="team_lead")
    with pytest.raises(CommandError, match="manager or an admin"):
        run("set_autonomy", "ops-bot", "3", "--by", "appr")
    assert not AuditEvent.objects.filter(event_type="autonomy.changed").exists()


# --- set_agent_status -------------------------------------------------------------------------


def test_pause_and_resume(make_agent, managers):
    agent = make_agent("ops-bot").agent
    agent.consecutive_failures = 3
    agent.save(update_fields=["consecutive_failures"])
    out = run("set_agent_status", "ops-bot", "paused", "--by", "mona", "--reason", "odd spend")
    assert out.strip() == "ops-bot is paused."
    agent.refresh_from_db()
    assert (agent.status, agent.status_reason) == (AgentStatus.PAUSED, "odd spend")
    out = run("set_agent_status", "ops-bot", "paused", "--by", "mona", "--reason", "again")
    assert out.strip() == "ops-bot was paused already."
    run("set_agent_status", "ops-bot", "active", "--by", "dara", "--reason", "spend explained")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert agent.consecutive_failures == 0  # a manager's resume closes the circuit breaker
    changes = [(e.payload["from"], e.payload["to"]) for e in events("agent.status_changed", agent)]
    assert changes == [("active", "paused"), ("paused", "active")]


def test_the_kill_switch_disables_the_agent_and_cancels_its_pending_requests(
    make_agent, managers, new_request
):
    agent = make_agent("ops-bot").agent
    pending = new_request(agent)
    out = run("set_agent_status", "ops-bot", "disabled", "--by", "mona", "--reason", "leaking")
    assert out.strip() == "ops-bot is disabled."
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DISABLED
    pending.refresh_from_db()
    assert pending.status == Status.CANCELLED


def test_re_enabling_a_disabled_agent_takes_a_second_person(make_agent, managers):
    agent = make_agent("ops-bot").agent
    run("set_agent_status", "ops-bot", "disabled", "--by", "mona", "--reason", "leaking")

    out = run("set_agent_status", "ops-bot", "active", "--by", "mona", "--reason", "key rotated")
    assert "a second person confirms with the same command" in out
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DISABLED
    assert agent.reenable_requested_by is not None
    assert agent.reenable_requested_by.username == "mona"
    assert len(events("agent.reenable_requested", agent)) == 1

    with pytest.raises(CommandError, match="second person must confirm"):
        run("set_agent_status", "ops-bot", "active", "--by", "mona", "--reason", "please")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DISABLED

    out = run("set_agent_status", "ops-bot", "active", "--by", "dara", "--reason", "agreed")
    assert out.strip() == "ops-bot is active again."
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert agent.reenable_requested_by is None
    last = events("agent.status_changed", agent)[-1]
    assert (last.payload["from"], last.payload["to"]) == ("disabled", "active")
    assert last.payload["requested_by"] == "mona"


def test_set_agent_status_refuses_a_person_who_is_not_a_manager(make_agent, make_user):
    agent = make_agent("ops-bot").agent
    make_user("appr", roles=("approver",), tier="director")
    with pytest.raises(CommandError, match="not a manager or an admin"):
        run("set_agent_status", "ops-bot", "paused", "--by", "appr", "--reason", "x")
    with pytest.raises(CommandError, match="No active user named 'ghost'"):
        run("set_agent_status", "ops-bot", "paused", "--by", "ghost", "--reason", "x")
    with pytest.raises(CommandError, match="No agent named 'nobody-bot'"):
        run("set_agent_status", "nobody-bot", "paused", "--by", "appr", "--reason", "x")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE
    assert not events("agent.status_changed", agent)


def test_stopping_needs_a_reason_and_a_known_status(make_agent, managers):
    agent = make_agent("ops-bot").agent
    with pytest.raises(CommandError, match="Say why"):
        run("set_agent_status", "ops-bot", "paused", "--by", "mona", "--reason", " ")
    with pytest.raises(CommandError, match="invalid choice"):
        run("set_agent_status", "ops-bot", "sleeping", "--by", "mona", "--reason", "x")
    agent.refresh_from_db()
    assert agent.status == AgentStatus.ACTIVE


def test_pausing_a_disabled_agent_is_refused_not_a_re_enable(make_agent, managers):
    agent = make_agent("ops-bot").agent
    run("set_agent_status", "ops-bot", "disabled", "--by", "mona", "--reason", "leaking")
    with pytest.raises(CommandError, match="re-enable it first"):
        run("set_agent_status", "ops-bot", "paused", "--by", "mona", "--reason", "calmer")
    agent.refresh_from_db()
    assert agent.reenable_requested_by is None
