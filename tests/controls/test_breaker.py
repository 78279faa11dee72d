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
def test_three_failures_make_every_check_ask_a_person_a_success_closes(
    api, make_agent, new_request, approvers
):
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
    # While it is open, only what can be checked closes it: a success of an approved request
    # executed as approved (every call now asks a person), not the agent's word alone.
    api(agent.key).post(OUTCOMES, {"action": "read_file", "params": {}, "success": True})
    still = api(agent.key).post(
        "/api/v1/guardrails/check", {"action": "read_file", "params": {"path": "/c"}}
    )
    assert still.json()["decision"] == "require_approval"
    request = new_request(agent=agent.agent, params={"n": 1})
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    receipt = {
        "action": request.action,
        "params": {"n": 1},
        "success": True,
        "approval_request_id": str(request.pk),
    }
    assert api(agent.key).post(OUTCOMES, receipt).json()["receipt"] == "matched"
    again = api(agent.key).post(
        "/api/v1/guardrails/check", {"action": "read_file", "params": {"path": "/d"}}
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


# --- walking around them (an adversarial review's findings) ----------------------------------


@pytest.mark.django_db
def test_requests_count_too_only_the_one_create_after_its_check_merges(make_agent, new_request):
    """'Checked or requested 3 times': three requests of one call are a loop; a check and the
    create that follows it are one call."""
    agent = make_agent().agent
    params = {"path": "/srv/notes.txt", "content": "x"}
    check(agent, params, "write_file")
    for _ in range(3):
        new_request(agent=agent, action="write_file", params=params)
    assert Violation.objects.filter(agent=agent, code="loop_detected").count() == 1


@pytest.mark.django_db
def test_changing_the_actions_case_does_not_dodge_it(make_agent):
    agent = make_agent().agent
    same = {"path": "/srv/report.csv"}
    answers = [check(agent, same, name) for name in ("read_file", "Read_File", "READ_FILE")]
    assert answers[2].verdict.codes == ["loop_detected"]


@pytest.mark.django_db
def test_the_create_after_a_looping_check_is_not_a_second_violation(make_agent, new_request):
    agent = make_agent().agent
    same = {"path": "/srv/report.csv"}
    for _ in range(3):
        last = check(agent, same)
    assert last.verdict.codes == ["loop_detected"]
    request = new_request(agent=agent, action="read_file", params=same, risk_level="low")
    assert "loop_detected" in [reason["code"] for reason in request.check_reasons]
    assert Violation.objects.filter(agent=agent, code="loop_detected").count() == 1


@pytest.mark.django_db
def test_a_loop_decides_before_the_autonomy_level_as_the_breaker_does(make_agent):
    from controls import services as controls

    agent = make_agent().agent
    controls.set_autonomy(agent=agent, level=0, why="manual only")
    same = {"path": "/srv/report.csv"}
    assert check(agent, same).verdict.codes == ["autonomy_manual"]
    check(agent, same)
    third = check(agent, same)
    assert (third.decision, third.verdict.codes) == ("require_approval", ["loop_detected"])


@pytest.mark.django_db
def test_a_made_up_success_does_not_close_the_breaker(api, make_agent):
    agent = make_agent()
    for n in range(3):
        fail(api, agent, n)
    made_up = {"action": "no_such_action", "params": {}, "success": True}
    assert api(agent.key).post(OUTCOMES, made_up).status_code == 201
    agent.agent.refresh_from_db()
    assert agent.agent.breaker_state == "open"
    plain = {"action": "read_file", "params": {}, "success": True}
    assert api(agent.key).post(OUTCOMES, plain).json()["consecutive_failures"] == 3


@pytest.mark.django_db
def test_before_it_opens_an_unknown_actions_success_does_not_reset_the_count(api, make_agent):
    agent = make_agent()
    fail(api, agent, 1)
    made_up = {"action": "no_such_action", "params": {}, "success": True}
    assert api(agent.key).post(OUTCOMES, made_up).json()["consecutive_failures"] == 1
