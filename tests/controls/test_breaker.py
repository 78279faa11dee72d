"""The circuit breaker, loop and cascade detection (SPEC §6)."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from agents import services as agents
from agents.models import AgentStatus
from approvals import services as approvals
from audit.models import AuditEvent
from controls import breaker
from controls.models import AgentAlert, AlertKind
from guardrails import services as guardrails
from guardrails.models import Violation

OUTCOMES = "/api/v1/outcomes"


def fail(api: Any, agent: Any, n: int = 0) -> Any:
    body = {"action": "read_file", "params": {"n": n}, "success": False, "error": "boom"}
    return api(agent.key).post(OUTCOMES, body)


def check(agent: Any, params: dict[str, Any], action: str = "read_file") -> Any:
    return guardrails.check_action(agent=agent, action=action, params=params)


@pytest.mark.django_db
def test_three_failures_make_every_check_ask_a_person_a_success_closes(api, make_agent):
    agent = make_agent()
    for n in range(2):
        fail(api, agent, n)
    agent.agent.refresh_from_db()
    assert check(agent.agent, {"path": "/a"}).decision == "allow"
    fail(api, agent, 2)
    agent.agent.refresh_from_db()

    answer = api(agent.key).post(
        "/api/v1/guardrails/check", {"action": "read_file", "params": {"path": "/b"}}
    )

    assert answer.json()["decision"] == "require_approval"
    assert [r["code"] for r in answer.json()["reasons"]] == ["consecutive_failures"]
    assert AuditEvent.objects.filter(event_type="agent.breaker_opened").count() == 1
    assert agent.agent.breaker_state == "open"
    api(agent.key).post(OUTCOMES, {"action": "read_file", "params": {}, "success": True})
    again = api(agent.key).post(
        "/api/v1/guardrails/check", {"action": "read_file", "params": {"path": "/c"}}
    )
    assert again.json()["decision"] == "allow"
    assert AuditEvent.objects.filter(event_type="agent.breaker_closed").count() == 1


@pytest.mark.django_db
def test_people_rejecting_count_as_failures(make_agent, new_request, approvers):
    agent = make_agent().agent
    for n in range(3):
        request = new_request(agent=agent, params={"n": n})
        approvals.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    agent.refresh_from_db()
    assert agent.consecutive_failures == 3
    event = AuditEvent.objects.get(event_type="agent.breaker_opened")
    assert event.payload == {"consecutive_failures": 3, "cause": "rejection"}


@pytest.mark.django_db
def test_a_managers_resume_closes_a_tripped_breaker(api, make_agent, make_user):
    agent = make_agent()
    for n in range(5):
        fail(api, agent, n)
    agent.agent.refresh_from_db()
    assert (agent.agent.status, agent.agent.breaker_state) == (AgentStatus.PAUSED, "tripped")
    assert agent.agent.status_reason.startswith("circuit_breaker")
    manager = make_user(roles=("manager",))

    agents.set_agent_status(agent=agent.agent, status=AgentStatus.ACTIVE, actor=manager)

    agent.agent.refresh_from_db()
    assert (agent.agent.consecutive_failures, agent.agent.breaker_opened_at) == (0, None)
    closed = AuditEvent.objects.get(event_type="agent.breaker_closed")
    assert closed.payload == {"consecutive_failures": 5, "cause": "resumed"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_failures_reported_at_once_pause_the_agent_exactly_once(web_server, make_agent):
    """Eight failures reported at the same moment through the server: the agent's row lock
    counts them one after another, the fifth pauses it (once: one status change, one alert),
    and the ones after the pause are refused, not counted."""
    agent = make_agent()
    barrier = threading.Barrier(8)
    answers: list[int] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        response = httpx.post(
            web_server.url + OUTCOMES,
            json={"action": "read_file", "params": {"n": n}, "success": False},
            headers={"Authorization": f"Bearer {agent.key}"},
            timeout=30,
        )
        with lock:
            answers.append(response.status_code)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [201] * 5 + [403] * 3
    agent.agent.refresh_from_db()
    assert (agent.agent.status, agent.agent.consecutive_failures) == (AgentStatus.PAUSED, 5)
    paused = AuditEvent.objects.filter(event_type="agent.status_changed")
    assert [e.payload["to"] for e in paused] == ["paused"]
    assert AgentAlert.objects.filter(kind=AlertKind.CIRCUIT_BREAKER).count() == 1
    assert AuditEvent.objects.filter(event_type="agent.breaker_opened").count() == 1


# --- loop detection ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_third_identical_call_in_a_row_is_a_loop(make_agent):
    agent = make_agent().agent
    same = {"path": "/srv/report.csv"}
    assert check(agent, same).decision == "allow"
    assert check(agent, same).decision == "allow"

    third = check(agent, same)

    assert (third.decision, third.verdict.codes) == ("require_approval", ["loop_detected"])
    violation = Violation.objects.get(pk=third.violation_id)
    assert (violation.code, violation.severity) == ("loop_detected", "medium")


@pytest.mark.django_db
def test_an_alternation_a_b_a_b_is_a_loop_a_b_c_a_is_not(make_agent):
    agent = make_agent().agent
    a, b, c = ({"path": f"/srv/{name}"} for name in "abc")
    assert [check(agent, p).decision for p in (a, b, c, a)] == ["allow"] * 4
    assert check(agent, b).decision == "allow"  # c-a-b: no loop
    assert check(agent, a).decision == "allow"  # a-b-a: not yet
    fourth = check(agent, b)  # a-b-a-b
    assert fourth.verdict.codes == ["loop_detected"]


@pytest.mark.django_db
def test_a_success_in_between_ends_the_loop(api, make_agent, django_capture_on_commit_callbacks):
    agent = make_agent()
    same = {"path": "/srv/report.csv"}
    check(agent.agent, same)
    check(agent.agent, same)
    done = {"action": "read_file", "params": same, "success": True}
    with django_capture_on_commit_callbacks(execute=True):
        assert api(agent.key).post(OUTCOMES, done).status_code == 201
    assert check(agent.agent, same).decision == "allow"


@pytest.mark.django_db
def test_the_create_after_its_own_check_is_the_same_call(make_agent, new_request):
    """An agent that checks, is told to ask, and asks, has asked once: only a third check of
    the same call is a loop."""
    agent = make_agent().agent
    params = {"path": "/srv/notes.txt", "content": "x"}
    first = check(agent, params, "write_file")
    assert first.decision == "require_approval"
    new_request(agent=agent, action="write_file", params=params)
    second = check(agent, params, "write_file")
    assert "loop_detected" not in second.verdict.codes


@pytest.mark.django_db
def test_the_simulator_neither_counts_nor_detects(make_agent):
    agent = make_agent().agent
    same = {"path": "/srv/x"}
    for _ in range(4):
        outcome = guardrails.simulate(agent=agent, action="read_file", params=same)
        assert outcome.decision == "allow"
    assert check(agent, same).decision == "allow"


# --- cascade --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_failures_from_three_agents_of_a_team_alert_once_per_hour(api, make_agent):
    team = [make_agent(team="payments") for _ in range(4)]
    loner = make_agent(team="search")
    fail(api, team[0])
    fail(api, team[1])
    fail(api, loner)
    assert not AgentAlert.objects.filter(kind=AlertKind.CASCADE).exists()

    fail(api, team[2])
    fail(api, team[3])

    (alert,) = AgentAlert.objects.filter(kind=AlertKind.CASCADE)
    assert alert.team == "payments"
    assert "3 agents of team payments" in alert.message
    assert AuditEvent.objects.filter(event_type="agent.alert").count() == 1


def test_breaker_thresholds_are_the_specs() -> None:
    from django.conf import settings

    assert (settings.OVERSIGHT_BREAKER_OPEN_AFTER, settings.OVERSIGHT_BREAKER_PAUSE_AFTER) == (3, 5)
    assert breaker.CASCADE_AGENTS == 3
