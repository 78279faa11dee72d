"""Issue 18, item 3: the Django admin goes through the services (SPEC §7).

Before: the two-person re-enable could be defeated by editing `reenable_requested_by` in the
admin, and role, tier, active and superuser changes, agent creation, owner changes and price
deletions wrote no audit event.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from agents import services as agents
from agents.models import Agent
from audit.models import AuditEvent
from budgets.models import ModelPrice
from tests.conftest import client_for


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "a-long-passphrase-1")


def _events(event_type: str, subject_id: object) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(event_type=event_type, subject_id=str(subject_id))
    return list(events.order_by("pk"))


def test_the_admin_cannot_forge_the_first_person_of_a_re_enable(
    db, superuser, make_agent, make_user
):
    accomplice = make_user("accomplice", roles=("manager",))
    agent = make_agent(owner=None).agent
    agents.set_agent_status(agent=agent, status="disabled", reason="incident")
    admin = client_for(superuser)
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    form = admin.get(url).content.decode()
    assert 'name="reenable_requested_by"' not in form

    response = admin.post(
        url,
        {
            "owner": "",
            "team": agent.team,
            "self_approval_reason": "",
            "reenable_requested_by": accomplice.pk,  # ignored: read-only
            "reenable_reason": "forged",
            "api_keys-TOTAL_FORMS": "1",
            "api_keys-INITIAL_FORMS": "1",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
            "api_keys-0-id": agent.api_keys.get().pk,
            "api_keys-0-agent": agent.pk,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    agent.refresh_from_db()
    assert agent.reenable_requested_by is None
    # So the superuser alone still cannot bring it back.
    with pytest.raises(Exception, match="Nobody has asked"):
        agents.confirm_reenable(agent=agent, actor=superuser)


def test_creating_an_agent_and_changing_its_owner_in_the_admin_is_audited(db, superuser, make_user):
    owner = make_user("owner")
    admin = client_for(superuser)
    response = admin.post(
        reverse("admin:agents_agent_add"),
        {
            "name": "made-in-admin",
            "owner": "",
            "team": "ops",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    agent = Agent.objects.get(name="made-in-admin")
    (created,) = _events("agent.created", agent.pk)
    assert created.actor_id == str(superuser.pk)

    response = admin.post(
        reverse("admin:agents_agent_change", args=[agent.pk]),
        {
            "owner": owner.pk,
            "team": "platform",
            "self_approval_reason": "",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302
    (changed,) = _events("agent.changed", agent.pk)
    assert changed.payload == {
        "before": {"owner": None, "team": "ops"},
        "after": {"owner": "owner", "team": "platform"},
    }


def _user_form(user: User, **changes: object) -> dict[str, object]:
    form: dict[str, object] = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "groups": [group.pk for group in user.groups.all()],
        "tier": user.tier,
    }
    if user.is_active:
        form["is_active"] = "on"
    if user.is_superuser:
        form["is_superuser"] = "on"
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def test_role_tier_active_and_superuser_changes_in_the_admin_are_audited(db, superuser, make_user):
    from django.contrib.auth.models import Group

    person = make_user("person", roles=("approver",), tier="team_lead")
    manager = Group.objects.get(name="manager")
    approver = Group.objects.get(name="approver")
    admin = client_for(superuser)
    url = reverse("admin:accounts_user_change", args=[person.pk])
    response = admin.post(
        url,
        _user_form(person, groups=[approver.pk, manager.pk], tier="director", is_superuser="on"),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    (event,) = _events("user.changed", person.pk)
    assert event.actor_id == str(superuser.pk)
    assert event.payload["before"] == {
        "is_superuser": False,
        "roles": ["approver"],
        "tier": "team_lead",
    }
    assert event.payload["after"] == {
        "is_superuser": True,
        "roles": ["approver", "manager"],
        "tier": "director",
    }

    response = admin.post(url, _user_form(User.objects.get(pk=person.pk), is_active=None))
    assert response.status_code == 302
    assert not User.objects.get(pk=person.pk).is_active
    assert _events("user.changed", person.pk)[-1].payload["after"] == {"is_active": False}


def test_an_admin_who_is_not_a_superuser_cannot_make_one_and_bad_access_is_a_form_error(
    db, make_user
):
    from django.contrib.auth.models import Permission

    admin_person = make_user("admin-person", roles=("admin",))
    admin_person.user_permissions.set(
        Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    person = make_user("person", roles=("approver",), tier="team_lead")
    browser = client_for(admin_person)
    url = reverse("admin:accounts_user_change", args=[person.pk])
    assert 'name="is_superuser"' not in browser.get(url).content.decode()
    browser.post(url, _user_form(person, is_superuser="on"))
    assert not User.objects.get(pk=person.pk).is_superuser

    response = browser.post(url, _user_form(person, tier=""))  # an approver needs a tier
    assert response.status_code == 200
    assert "An approver needs a tier." in response.content.decode()
    assert not _events("user.changed", person.pk)


def test_deleting_a_price_not_yet_in_force_is_audited(db, superuser):
    future = ModelPrice.objects.create(
        model="future-model",
        effective_from=timezone.now() + timedelta(days=3),
        input_cents_per_mtok=100,
        output_cents_per_mtok=200,
    )
    admin = client_for(superuser)
    response = admin.post(
        reverse("admin:budgets_modelprice_delete", args=[future.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not ModelPrice.objects.filter(pk=future.pk).exists()
    (event,) = _events("price.deleted", future.pk)
    assert event.payload["model"] == "future-model"
    assert event.actor_id == str(superuser.pk)
