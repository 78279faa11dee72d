"""The existing state changes and logins write their audit events."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from accounts import services as people
from agents import services as agents
from agents.models import AgentStatus, ApiKey
from audit.integrity import verify_chain
from audit.models import AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("sequence"))


def test_a_successful_login_is_recorded(make_user):
    erin = make_user("erin")
    response = Client(REMOTE_ADDR="203.0.113.7").post(
        "/login/", {"username": "erin", "password": PASSWORD}
    )
    assert response.status_code == 302
    (event,) = events("login.succeeded")
    assert (event.actor_type, event.actor_id, event.actor_name) == ("user", str(erin.pk), "erin")
    assert (event.subject_type, event.subject_id) == ("user", str(erin.pk))
    assert event.payload == {"remote_addr": "203.0.113.7"}


def test_failed_logins_are_recorded_once_as_a_lockout_without_the_password(make_user):
    # One event per lockout, none per failure (SPEC §7); tests/accounts/test_throttle.py has
    # the rest of the throttle's behaviour.
    client = Client(REMOTE_ADDR="198.51.100.4")
    for _ in range(7):  # the fifth reaches the limit; the last two are refused unchecked
        client.post("/login/", {"username": "nobody", "password": "wrong-guess-456"})
    (lockout,) = events("login.locked_out")
    assert lockout.actor_type == "system"
    assert (lockout.subject_type, lockout.subject_id) == ("", "")  # no such person
    assert lockout.payload == {
        "username": "nobody",
        "remote_addr": "198.51.100.4",
        "limits": ["account_and_address"],
    }
    assert not events("login.failed")
    stored = " ".join(str(row) for row in AuditEvent.objects.values_list())
    assert "wrong-guess" not in stored
    assert not events("login.succeeded")


def test_creating_a_person_is_recorded_with_who_did_it(make_user):
    admin = make_user("root", roles=("admin",))
    user = people.create_user(
        username="ivan",
        password=PASSWORD,
        roles=["compliance", "approver"],
        tier="director",
        actor=admin,
    )
    event = events("user.created")[-1]
    assert (event.actor_type, event.actor_id) == ("user", str(admin.pk))
    assert (event.subject_type, event.subject_id) == ("user", str(user.pk))
    assert event.payload == {
        "username": "ivan",
        "roles": ["approver", "compliance"],
        "tier": "director",
    }
    # A command or the seed creates people as the system.
    assert events("user.created")[0].actor_type == "system"


def test_creating_an_agent_is_recorded(make_user):
    owner = make_user("olga")
    agent, _ = agents.create_agent(name="release-bot", owner=owner, team="platform", actor=owner)
    (event,) = events("agent.created")
    assert (event.actor_type, event.actor_id) == ("user", str(owner.pk))
    assert (event.subject_type, event.subject_id) == ("agent", str(agent.pk))
    assert event.payload == {"name": "release-bot", "team": "platform", "owner": "olga"}


def test_issuing_and_revoking_a_key_is_recorded_without_the_secret(make_user):
    admin = make_user("root", roles=("admin",))
    agent, _ = agents.create_agent(name="release-bot")
    key, plaintext = agents.issue_api_key(agent=agent, created_by=admin, label="ci")
    (created,) = events("api_key.created")
    assert (created.actor_id, created.subject_type, created.subject_id) == (
        str(admin.pk),
        "api_key",
        str(key.pk),
    )
    assert created.payload == {
        "agent_id": agent.pk,
        "agent": "release-bot",
        "prefix": key.prefix,
        "label": "ci",
        "shown_to": admin.username,
    }
    secret = plaintext.rsplit("_", 1)[1]
    stored = " ".join(str(row) for row in AuditEvent.objects.values_list())
    assert secret not in stored
    assert ApiKey.objects.get(pk=key.pk).secret_hash not in stored

    assert agents.revoke_api_key(api_key=key, revoked_by=admin) is True
    assert agents.revoke_api_key(api_key=key, revoked_by=admin) is False  # no second event
    (revoked,) = events("api_key.revoked")
    assert (revoked.actor_id, revoked.subject_id) == (str(admin.pk), str(key.pk))
    assert revoked.payload == {"agent_id": agent.pk, "prefix": key.prefix}


def test_agent_status_changes_are_recorded_from_and_to(make_user):
    manager = make_user("maria", roles=("manager",))
    agent, _ = agents.create_agent(name="release-bot")
    agents.set_agent_status(
        agent=agent, status=AgentStatus.PAUSED, reason=" 3 rejections ", actor=manager
    )
    agents.set_agent_status(agent=agent, status=AgentStatus.PAUSED, reason="again")  # no change
    agents.set_agent_status(agent=agent, status=AgentStatus.ACTIVE)
    paused, resumed = events("agent.status_changed")
    assert (paused.actor_type, paused.actor_id, paused.subject_id) == (
        "user",
        str(manager.pk),
        str(agent.pk),
    )
    assert paused.payload == {"from": "active", "to": "paused", "reason": "3 rejections"}
    assert resumed.actor_type == "system"
    assert resumed.payload == {"from": "paused", "to": "active", "reason": ""}


def test_a_refused_change_writes_no_event(make_user):
    people.create_user(username="dup", password=PASSWORD)
    with pytest.raises(ValidationError, match="taken"):
        people.create_user(username="dup", password=PASSWORD)
    assert len(events("user.created")) == 1
    assert verify_chain().intact
