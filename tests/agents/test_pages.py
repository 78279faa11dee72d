"""The managers' agent pages: list, keys shown once and revoked, pause / kill / two-person
re-enable — all through agents.services and audited."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from agents import services
from agents.models import Agent, AgentStatus, ApiKey
from audit.models import AuditEvent
from tests.conftest import client_for

ME = "/api/v1/agents/me"


@pytest.fixture
def managers(make_user):
    return (
        make_user("mgr-one", roles=("manager",)),
        make_user("mgr-two", roles=("manager",)),
    )


def test_the_list_shows_status_owner_team_and_last_activity(
    db, make_agent, make_user, managers, new_request
):
    owner = make_user("owner-x")
    busy = make_agent("busy-bot", owner=owner, team="platform").agent
    make_agent("idle-bot")
    new_request(agent=busy)
    html = client_for(managers[0]).get("/agents/").content.decode()
    row = html[html.index("busy-bot") : html.index("idle-bot")]
    for shown in ("Active", "owner-x", "platform"):
        assert shown in row
    assert "ago" in row, "its last request is its last activity"
    idle = html[html.index("idle-bot") :]
    assert "never" in idle[: idle.index("</tr>")]


def test_agent_pages_are_for_managers_and_admins_only(db, make_agent, approvers, make_user):
    agent = make_agent("some-bot")
    for path in ("/agents/", "/agents/some-bot/"):
        assert client_for(approvers["vp"]).get(path).status_code == 403
        assert client_for(make_user(roles=("admin",))).get(path).status_code == 200
        assert Client().get(path).status_code == 302
    posts = (
        "/agents/some-bot/keys",
        "/agents/some-bot/status",
        f"/agents/some-bot/keys/{agent.agent.api_keys.get().pk}/revoke",
    )
    for path in posts:
        assert client_for(approvers["vp"]).post(path, {"action": "pause"}).status_code == 403
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
    assert Agent.objects.get().status == AgentStatus.ACTIVE


def test_a_new_key_is_shown_once_and_works(db, make_agent, managers, api):
    make_agent("key-bot")
    client = client_for(managers[0])
    response = client.post("/agents/key-bot/keys", {"label": "runner"})
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    found = re.search(r'value="(ovs_[a-z0-9]+_[A-Za-z0-9]+)"', response.content.decode())
    assert found, "the new key is on the page"
    key = found[1]
    assert api(key).get(ME).status_code == 200
    again = client.get("/agents/key-bot/").content.decode()
    assert key not in again
    assert key.split("_")[1] in again, "the prefix still identifies it"
    event = AuditEvent.objects.filter(event_type="api_key.created").latest("sequence")
    assert event.actor_name == "mgr-one"
    assert key.split("_")[2] not in str(event.payload)


def test_revoking_a_key_stops_it_and_another_agents_key_is_not_found(db, make_agent, managers, api):
    mine, other = make_agent("mine-bot"), make_agent("other-bot")
    client = client_for(managers[0])
    other_key = other.agent.api_keys.get()
    assert client.post(f"/agents/mine-bot/keys/{other_key.pk}/revoke").status_code == 404
    assert api(other.key).get(ME).status_code == 200
    key = mine.agent.api_keys.get()
    response = client.post(f"/agents/mine-bot/keys/{key.pk}/revoke", follow=True)
    assert "is revoked" in response.content.decode()
    assert api(mine.key).get(ME).status_code == 401


def test_pause_and_kill_need_a_reason_and_resume_lets_the_agent_in(db, make_agent, managers, api):
    created = make_agent("ctl-bot")
    client = client_for(managers[0])
    response = client.post("/agents/ctl-bot/status", {"action": "pause"}, follow=True)
    assert "Say why the agent is being stopped." in response.content.decode()
    assert api(created.key).get(ME).status_code == 200
    client.post("/agents/ctl-bot/status", {"action": "pause", "reason": "odd spend"})
    assert api(created.key).get(ME).json()["error"]["code"] == "agent_paused"
    client.post("/agents/ctl-bot/status", {"action": "resume"})
    assert api(created.key).get(ME).status_code == 200
    response = client.post("/agents/ctl-bot/status", {"action": "disable"}, follow=True)
    assert "Say why" in response.content.decode()
    client.post("/agents/ctl-bot/status", {"action": "disable", "reason": "leaked key"})
    assert api(created.key).get(ME).json()["error"]["code"] == "agent_disabled"


def test_re_enabling_a_disabled_agent_takes_two_different_people(db, make_agent, managers, api):
    created = make_agent("kill-bot")
    first, second = (client_for(m) for m in managers)
    first.post("/agents/kill-bot/status", {"action": "disable", "reason": "runaway loop"})
    response = first.post("/agents/kill-bot/status", {"action": "resume"}, follow=True)
    assert "only when a second person confirms" in response.content.decode()
    first.post("/agents/kill-bot/status", {"action": "request_reenable", "reason": "loop fixed"})
    page = first.get("/agents/kill-bot/").content.decode()
    assert "A second person must confirm." in page
    assert "Confirm: re-enable" not in page
    response = first.post("/agents/kill-bot/status", {"action": "confirm_reenable"}, follow=True)
    assert "a second person must confirm" in response.content.decode()
    assert api(created.key).get(ME).status_code == 403
    assert "Confirm: re-enable" in second.get("/agents/kill-bot/").content.decode()
    second.post("/agents/kill-bot/status", {"action": "confirm_reenable"})
    assert api(created.key).get(ME).status_code == 200
    events = AuditEvent.objects.filter(subject_id=str(created.agent.pk)).order_by("sequence")
    trail = [(e.event_type, e.actor_name) for e in events if e.event_type.startswith("agent.")]
    assert trail[-3:] == [
        ("agent.status_changed", "mgr-one"),
        ("agent.reenable_requested", "mgr-one"),
        ("agent.status_changed", "mgr-two"),
    ]
    assert events.reverse()[0].payload["requested_by"] == "mgr-one"


def test_the_list_query_count_does_not_grow_with_agents(
    db, make_agent, managers, new_request, django_assert_max_num_queries
):
    client = client_for(managers[0])
    for _ in range(2):
        new_request(agent=make_agent().agent)
    with django_assert_max_num_queries(6) as few:
        client.get("/agents/")
    for _ in range(20):
        new_request(agent=make_agent().agent)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get("/agents/")
    assert response.content.count(b'href="/agents/agent-') == 22


def test_services_refuse_a_one_person_re_enable(db, make_agent, managers):
    agent = make_agent().agent
    with pytest.raises(Exception, match="not disabled"):
        services.request_reenable(agent=agent, actor=managers[0], reason="x")
    services.set_agent_status(agent=agent, status=AgentStatus.DISABLED, reason="stop")
    with pytest.raises(Exception, match="Nobody has asked"):
        services.confirm_reenable(agent=agent, actor=managers[1])
    with pytest.raises(Exception, match="safe to run again"):
        services.request_reenable(agent=agent, actor=managers[0], reason=" ")
    services.request_reenable(agent=agent, actor=managers[0], reason="fixed")
    with pytest.raises(Exception, match="already asked"):
        services.request_reenable(agent=agent, actor=managers[1], reason="me too")
    # Disabling a disabled agent changes nothing: the request stands for a second person.
    assert not services.set_agent_status(agent=agent, status=AgentStatus.DISABLED, reason="again")
    services.confirm_reenable(agent=agent, actor=managers[1])
    assert agent.status == AgentStatus.ACTIVE


def test_the_agent_page_title_is_its_name_and_the_keys_appear_once(db, make_agent, managers):
    make_agent("titled-bot")
    html = client_for(managers[0]).get("/agents/titled-bot/").content.decode()
    title = html[html.index("<title>") + len("<title>") : html.index("</title>")]
    assert title == "titled-bot · Oversight"
    assert html.count('id="keys-heading"') == 1
