"""`POST /api/v1/guardrails/check`, `GET /api/v1/policies`, and the check inside every create
(SPEC §3, §6): the seed document's own examples, the create's effective risk, every status code."""

from __future__ import annotations

from typing import Any

import pytest
from django.test.utils import CaptureQueriesContext

from agents import services as agents
from approvals.models import ApprovalRequest
from audit.models import AuditEvent
from guardrails import counters, selectors, services
from guardrails import policies as policy_changes
from guardrails.models import Policy, Violation
from guardrails.policyfile import snapshot
from tests.conftest import redis_unreachable

CHECK = "/api/v1/guardrails/check"
CREATE = "/api/v1/approval-requests"


@pytest.fixture
def agent(make_agent):
    return make_agent()


def check(api, agent, **body):
    response = api(agent.key).post(CHECK, body)
    assert response.status_code == 200, response.content
    return response.json()


# --- the seed document's examples (its GuardrailSystem's own test calls) ----------------------


def test_reading_a_data_file_is_allowed(db, api, agent):
    answer = check(api, agent, action="read_file", params={"path": "/app/data/test.txt"})
    assert answer["decision"] == "allow"
    assert answer["reasons"] == []
    assert answer["risk_level"] == "low"
    assert answer["category"] == "read"
    assert answer["policy"] == {"name": "read_file", "version": 1, "scope": "global"}
    assert answer["violation_id"] is None
    assert not Violation.objects.exists()


def test_reading_credentials_is_denied_as_a_forbidden_pattern(db, api, agent):
    answer = check(api, agent, action="read_file", params={"path": "/app/.env"})
    assert answer["decision"] == "deny"
    [reason] = answer["reasons"]
    assert reason["code"] == "forbidden_pattern"
    assert (reason["param"], reason["pattern"]) == ("path", r"\.env$")
    violation = Violation.objects.get(pk=answer["violation_id"])
    assert (violation.code, violation.agent, violation.severity) == (
        "forbidden_pattern",
        agent.agent,
        "critical",
    )
    assert "/app/.env" not in violation.excerpt, "never the whole value"
    event = AuditEvent.objects.get(event_type="guardrail.violation")
    assert event.payload["code"] == "forbidden_pattern"
    assert event.subject_id == str(violation.pk)


def test_a_destructive_command_is_denied(db, api, agent):
    answer = check(api, agent, action="run_command", params={"command": "rm -rf /"})
    assert answer["decision"] == "deny"
    assert [r["code"] for r in answer["reasons"]] == [
        "forbidden_pattern",
        "policy_requires_approval",
    ], "every reason that applied, in the order of the steps"


def test_an_expensive_api_call_is_denied_as_over_the_cost_limit(db, api, agent):
    answer = check(
        api,
        agent,
        action="external_api_call",
        params={"endpoint": "https://api.example.com/expensive"},
        estimated_cost_cents=200,
    )
    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == "cost_limit"


def test_the_51st_command_in_an_hour_is_rate_limited(db, api, agent, make_agent):
    client = api(agent.key)
    for n in range(50):
        answer = client.post(CHECK, {"action": "run_command", "params": {"n": n}}).json()
        assert answer["decision"] == "require_approval", (n, answer)
    answer = client.post(CHECK, {"action": "run_command", "params": {"n": 50}}).json()
    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == "rate_limited"
    other = api(make_agent().key).post(CHECK, {"action": "run_command"}).json()
    assert other["decision"] == "require_approval", "per agent"


def test_an_unknown_action_is_denied(db, api, agent):
    answer = check(api, agent, action="launch_missiles", params={})
    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == "unknown_action"
    assert answer["policy"] is None
    assert answer["risk_level"] is None


def test_unknown_actions_may_go_to_a_person_at_high_risk_instead(db, api, agent, settings):
    settings.OVERSIGHT_UNKNOWN_ACTIONS = "require_approval"
    answer = check(api, agent, action="launch_missiles")
    assert answer["decision"] == "require_approval"
    assert answer["risk_level"] == "high"
    created = (
        api(agent.key).post(CREATE, {"action": "launch_missiles", "justification": "drill"}).json()
    )
    assert (created["risk_level"], created["current_tier"]) == ("high", "engineering_manager")


# --- the rest of the check ---------------------------------------------------------------------


def test_medium_risk_needs_a_person_at_autonomy_level_two(db, api, agent):
    answer = check(api, agent, action="database_query", params={"sql": "select 1"})
    assert answer["decision"] == "require_approval"
    assert [r["code"] for r in answer["reasons"]] == ["autonomy_level"]


@pytest.mark.parametrize(
    ("confidence", "decision", "code"),
    [
        (0.05, "deny", "confidence_too_low"),
        (0.2, "require_approval", "confidence_very_low"),
        (0.45, "require_approval", "confidence_low"),
        (0.9, "allow", None),
    ],
)
def test_the_seeds_confidence_triggers(db, api, agent, confidence, decision, code):
    answer = check(api, agent, action="read_file", params={"path": "/srv/x"}, confidence=confidence)
    assert answer["decision"] == decision
    assert [r["code"] for r in answer["reasons"]] == ([code] if code else [])


def test_an_allowed_check_writes_nothing_to_the_database(db, api, agent):
    client = api(agent.key)
    client.post(CHECK, {"action": "read_file", "params": {"path": "/srv/x"}})  # warm the caches
    from django.db import connection

    with CaptureQueriesContext(connection) as queries:
        answer = client.post(CHECK, {"action": "read_file", "params": {"path": "/srv/y"}}).json()
    assert answer["decision"] == "allow"
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert writes == [], writes


def test_a_paused_agent_gets_403(db, api, agent):
    agents.set_agent_status(agent=agent.agent, status="paused", reason="circuit breaker")
    response = api(agent.key).post(CHECK, {"action": "read_file"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "agent_paused"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"action": 5}, "action"),
        ({"action": "read_file\nBcc: x"}, "action"),
        ({"action": "x" * 201}, "action"),
        ({"action": "read_file", "params": []}, "params"),
        ({"action": "read_file", "confidence": 1.5}, "confidence"),
        ({"action": "read_file", "confidence": True}, "confidence"),
        ({"action": "read_file", "estimated_cost_cents": -1}, "estimated_cost_cents"),
        ({"action": "read_file", "estimated_cost_cents": "5"}, "estimated_cost_cents"),
        ({"action": "read_file", "risk_level": "low"}, "risk_level"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(db, api, agent, body, field):
    response = api(agent.key).post(CHECK, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]


def test_the_checks_other_status_codes(db, api, agent):
    client = api(agent.key)
    assert api(None).post(CHECK, {"action": "read_file"}).status_code == 401
    assert api("ovs_nope_nope").post(CHECK, {"action": "read_file"}).status_code == 401
    malformed = client.post(CHECK, "{nope")
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "malformed_json")
    deep = client.post(CHECK, '{"action": "x", "params": ' + "[" * 100 + "]" * 100 + "}")
    assert deep.status_code == 400
    big = client.post(CHECK, {"action": "read_file", "params": {"x": "y" * 300_000}})
    assert (big.status_code, big.json()["error"]["code"]) == (413, "payload_too_large")
    wrong_method = client.get(CHECK)
    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
    plain = client.api_client.post(
        CHECK,
        data="action=read_file",
        content_type="text/plain",
        headers={"Authorization": f"Bearer {agent.key}"},
    )
    assert (plain.status_code, plain.json()["error"]["code"]) == (415, "unsupported_media_type")


def test_past_the_api_rate_limit_the_check_is_429_with_retry_after(db, api, agent, settings):
    settings.OVERSIGHT_API_RATE_LIMIT_PER_MINUTE = 2
    client = api(agent.key)
    statuses = [client.post(CHECK, {"action": "read_file"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    throttled = client.post(CHECK, {"action": "read_file"})
    assert throttled.json()["error"]["code"] == "rate_limited"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_with_redis_down_a_rate_limited_policy_asks_a_person_never_a_silent_allow(
    db, api, agent, settings
):
    fields = {**snapshot(Policy.objects.get(name="read_file")), "rate_limit_per_hour": 5}
    policy_changes.save_policy(fields=fields, policy=Policy.objects.get(name="read_file"))
    assert check(api, agent, action="read_file", params={"path": "/srv/x"})["decision"] == "allow"
    with redis_unreachable(settings):
        answer = check(api, agent, action="read_file", params={"path": "/srv/x"})
    assert answer["decision"] == "require_approval"
    assert [r["code"] for r in answer["reasons"]] == ["rate_limit_unavailable"]
    assert answer["policy"]["version"] == 2, "the policies come from the database meanwhile"


@pytest.mark.django_db(transaction=True)
def test_sixty_simultaneous_checks_against_a_limit_of_fifty_admit_exactly_fifty(agent):
    """Straight at the service from 60 threads, each with its own database connection."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(60)
    decisions: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            barrier.wait()
            outcome = services.check_action(
                agent=agent.agent, action="run_command", params={"n": n}
            )
            with lock:
                decisions.append(outcome.decision)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert decisions.count("require_approval") == 50
    assert decisions.count("deny") == 10


# --- GET /api/v1/policies -------------------------------------------------------------------------


def test_an_agent_reads_the_policies_that_apply_to_it_with_an_etag(db, api, agent, make_agent):
    client = api(agent.key)
    response = client.get("/api/v1/policies")
    assert response.status_code == 200
    names = [p["name"] for p in response.json()["policies"]]
    assert "read_file" in names
    assert len(names) == 8
    etag = response.headers["ETag"]
    assert client.get("/api/v1/policies", headers={"If-None-Match": etag}).status_code == 304
    fields = {**snapshot(Policy.objects.get(name="read_file")), "agent": agent.agent.name}
    policy_changes.save_policy(fields={**fields, "scope": "agent", "risk_level": "medium"})
    changed = client.get("/api/v1/policies", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    mine = next(p for p in changed.json()["policies"] if p["name"] == "read_file")
    assert (mine["scope"], mine["risk_level"]) == ("agent", "medium"), "its own overrides"
    other = api(make_agent().key).get("/api/v1/policies").json()["policies"]
    assert next(p for p in other if p["name"] == "read_file")["scope"] == "global"


# --- the check inside a create ----------------------------------------------------------------


def test_a_deploy_claimed_low_is_critical_with_two_approvals_from_directors(db, api, agent):
    created = (
        api(agent.key)
        .post(
            CREATE,
            {"action": "deploy_to_production", "risk_level": "low", "justification": "ship"},
        )
        .json()
    )
    assert created["risk_level"] == "critical"
    assert created["claimed_risk_level"] == "low"
    assert created["risk_source"] == "policy"
    assert created["current_tier"] == "director"
    assert created["required_approvals"] == 2
    assert created["policy"] == {"name": "deploy_to_production", "version": 1, "scope": "global"}
    assert {r["code"] for r in created["reasons"]} == {"policy_requires_approval", "critical_risk"}


def test_a_claim_above_the_policy_is_kept(db, api, agent):
    created = (
        api(agent.key)
        .post(CREATE, {"action": "write_file", "risk_level": "high", "justification": "hotfix"})
        .json()
    )
    assert (created["risk_level"], created["risk_source"]) == ("high", "claim")
    assert created["current_tier"] == "engineering_manager"


def test_without_a_claim_the_policy_sets_the_risk(db, api, agent):
    created = (
        api(agent.key)
        .post(CREATE, {"action": "database_mutation", "justification": "migrate"})
        .json()
    )
    assert (created["risk_level"], created["risk_source"]) == ("high", "policy")


def test_a_create_the_guardrails_deny_is_403_with_the_reasons_and_its_violation_kept(
    db, api, agent
):
    response = api(agent.key).post(
        CREATE,
        {"action": "write_file", "params": {"path": "/etc/passwd"}, "justification": "x"},
        headers={"Idempotency-Key": "deny-1"},
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "forbidden_pattern"
    assert error["reasons"][0]["pattern"] == "^/etc/"
    violation = Violation.objects.get(pk=error["violation_id"])
    assert violation.purpose == "create"
    assert not ApprovalRequest.objects.exists()


def test_low_confidence_starts_the_request_one_tier_higher(db, api, agent):
    created = (
        api(agent.key)
        .post(CREATE, {"action": "write_file", "confidence": 0.2, "justification": "unsure"})
        .json()
    )
    assert created["risk_level"] == "medium"
    assert created["current_tier"] == "engineering_manager", "medium starts at team lead"
    assert "confidence_very_low" in {r["code"] for r in created["reasons"]}


def test_a_check_then_its_create_count_once_against_the_rate_limit(db, api, agent):
    client = api(agent.key)
    body = {"action": "run_command", "params": {"cmd": "make"}}
    assert client.post(CHECK, body).json()["decision"] == "require_approval"
    assert client.post(CREATE, {**body, "justification": "build"}).status_code == 201
    answer = services.simulate(agent=agent.agent, action="run_command", params={})
    assert answer.rate is not None
    assert answer.rate.used == 1


def test_a_policy_change_applies_to_the_next_check_in_this_process(db, api, agent):
    assert check(api, agent, action="read_file", params={"path": "/srv/a"})["decision"] == "allow"
    policy = Policy.objects.get(name="read_file")
    fields = {**snapshot(policy), "forbidden_patterns": ["^/srv/"]}
    selectors.POLICIES.get()  # this process holds the old set
    policy_changes.save_policy(fields=fields, policy=policy)
    answer = check(api, agent, action="read_file", params={"path": "/srv/a"})
    assert answer["decision"] == "deny"
    assert answer["policy"]["version"] == 2


def test_the_check_log_keeps_each_checks_inputs_unless_turned_off(db, api, agent, settings):
    from oversight.redis_clients import quick_client

    client = api(agent.key)
    client.post(CHECK, {"action": "read_file", "params": {"path": "/srv/a"}})
    entries: Any = quick_client().xrange(counters.CHECK_LOG)
    [(_, fields)] = entries
    assert fields[b"params"] == b'{"path":"/srv/a"}'
    assert fields[b"decision"] == b"allow"
    settings.OVERSIGHT_CHECK_LOG = False
    client.post(CHECK, {"action": "read_file", "params": {"path": "/srv/b"}})
    assert quick_client().xlen(counters.CHECK_LOG) == 1
