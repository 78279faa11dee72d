"""POST /api/v1/costs and the budgets in GET /api/v1/agents/me (SPEC §3, §5)."""

from __future__ import annotations

import pytest

from agents import services as agents
from audit.models import AuditEvent
from budgets import services
from budgets.models import CostRecord

URL = "/api/v1/costs"
BODY = {"model": "gpt-4", "input_tokens": 3000, "output_tokens": 1500}

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_prices")]


@pytest.fixture
def agent(make_agent):
    return make_agent(team="platform")


def test_a_report_returns_201_with_the_exact_cost_and_the_budget_states(agent, api):
    services.set_budget(scope="team", team="platform", period="daily", limit_cents=100)
    response = api(agent.key).post(URL, {**BODY, "task_id": "t-1", "success": False})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["cost_cents"] == "18.00000000"  # a decimal string, never a float
    assert body["unknown_model"] is False
    assert body["price_effective_from"].startswith("2024-10-01")
    (budget,) = body["budgets"]
    assert budget["scope"] == "team"
    assert budget["spent_cents"] == "18.00000000"
    assert budget["percent_used"] == 18.0
    assert budget["status"] == "ok"
    assert budget["blocks_new_requests"] is False
    record = CostRecord.objects.get()
    assert (record.task_id, record.success, record.agent_id) == ("t-1", False, agent.agent.pk)


def test_an_unknown_model_is_recorded_not_refused(agent, api):
    response = api(agent.key).post(URL, {**BODY, "model": "mystery-model"})
    assert response.status_code == 201
    assert response.json()["unknown_model"] is True
    assert response.json()["cost_cents"] == "0.00000000"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_tokens": "3000"}, "input_tokens"),
        ({"input_tokens": 1.5}, "input_tokens"),
        ({"output_tokens": True}, "output_tokens"),
        ({"output_tokens": -1}, "output_tokens"),
        ({"cached_input_tokens": 10**13}, "cached_input_tokens"),
        ({"model": ""}, "model"),
        ({"model": 4}, "model"),
        ({"model": "x" * 201}, "model"),
        ({"success": "yes"}, "success"),
        ({"task_id": 7}, "task_id"),
        ({"tokens": 1}, "tokens"),
    ],
)
def test_wrong_types_and_values_are_400_per_field(agent, api, change, field):
    response = api(agent.key).post(URL, {**BODY, **change})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]
    assert not CostRecord.objects.exists()


def test_a_long_unknown_model_name_is_recorded_and_alerted_not_a_500(agent, api):
    """Found by fuzzing: the unknown-model alert's audit subject is the model's name, and a
    name over the audit subject's 128 characters failed the report with a 500. The money was
    spent, so the report is recorded (SPEC §5); the audit subject carries the name cut to fit,
    the event's details the whole of it."""
    model = "ft:mystery-model:" + "x" * 183  # 200 characters: the most the schema allows
    response = api(agent.key).post(URL, {**BODY, "model": model})
    assert response.status_code == 201, response.content
    assert response.json()["unknown_model"] is True
    assert CostRecord.objects.get().model == model
    (event,) = AuditEvent.objects.filter(event_type="budget.alert")
    assert (event.subject_type, event.subject_id) == ("model", model[:128])
    assert event.payload["model"] == model


@pytest.mark.parametrize("model", ["gpt-4\nBcc: x@example.com", "gpt\u20284", "gpt\x00-4"])
def test_a_model_name_with_a_control_character_or_line_break_is_400(agent, api, model):
    """The name is quoted in the unknown-model alert's email subject (as `action` is in a
    request's): the same rule as for actions."""
    response = api(agent.key).post(URL, {**BODY, "model": model})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["model"]
    assert not CostRecord.objects.exists()


def test_a_missing_field_and_a_non_object_body_are_400(agent, api):
    assert api(agent.key).post(URL, {"model": "gpt-4"}).status_code == 400
    assert api(agent.key).post(URL, [1, 2]).status_code == 400
    assert api(agent.key).post(URL, "{nope").json()["error"]["code"] == "malformed_json"


def test_a_retried_report_with_the_same_key_is_recorded_once(agent, api):
    client = api(agent.key)
    first = client.post(URL, BODY, headers={"Idempotency-Key": "call-1"})
    again = client.post(URL, BODY, headers={"Idempotency-Key": "call-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = client.post(URL, {**BODY, "output_tokens": 1}, headers={"Idempotency-Key": "call-1"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert CostRecord.objects.count() == 1


def test_a_used_key_with_an_invalid_report_is_422_not_a_validation_error(agent, api):
    client = api(agent.key)
    client.post(URL, BODY, headers={"Idempotency-Key": "call-2"})
    broken = {**BODY, "output_tokens": -1}
    response = client.post(URL, broken, headers={"Idempotency-Key": "call-2"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert client.post(URL, broken, headers={"Idempotency-Key": "call-3"}).status_code == 400
    assert CostRecord.objects.count() == 1


def test_keys_are_per_agent(agent, make_agent, api):
    other = make_agent()
    api(agent.key).post(URL, BODY, headers={"Idempotency-Key": "same"})
    assert api(other.key).post(URL, BODY, headers={"Idempotency-Key": "same"}).status_code == 201
    assert CostRecord.objects.count() == 2


def test_without_a_key_it_is_401_and_a_paused_agent_is_403(agent, api):
    assert api(None).post(URL, BODY).status_code == 401
    agents.set_agent_status(agent=agent.agent, status="paused", reason="test")
    response = api(agent.key).post(URL, BODY)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "agent_paused"


def test_over_the_limit_requests_are_refused_but_costs_still_recorded_and_me_says_why(agent, api):
    services.set_budget(scope="agent", agent=agent.agent, period="monthly", limit_cents=20)
    client = api(agent.key)
    assert client.post(URL, BODY).status_code == 201  # 18 ¢
    assert client.post(URL, BODY).status_code == 201  # 36 ¢: past the limit, still recorded
    refused = client.post(
        "/api/v1/approval-requests",
        {"action": "run_command", "risk_level": "low", "justification": "tidy up"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "budget_exceeded"
    assert "Monthly budget of agent" in refused.json()["error"]["message"]
    me = client.get("/api/v1/agents/me").json()
    (budget,) = me["budgets"]
    assert budget["status"] == "exceeded"
    assert budget["blocks_new_requests"] is True
    assert budget["spent_cents"] == "36.00000000"
    assert CostRecord.objects.count() == 2


def test_me_lists_no_budgets_when_none_apply(agent, api):
    services.set_budget(scope="team", team="elsewhere", period="daily", limit_cents=100)
    assert api(agent.key).get("/api/v1/agents/me").json()["budgets"] == []


def test_the_schema_documents_the_costs_call(api):
    schema = api(None).get("/api/v1/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/costs"]["post"]
    assert operation["operationId"] == "report_cost"
    assert "201" in operation["responses"]
    me = schema["components"]["schemas"]["AgentMe"]
    assert "budgets" in me["properties"]


def test_a_window_at_the_most_its_total_can_hold_still_records_reports(agent, api):
    """Found by review: once a window's spend neared numeric(24,8)'s limit, every report in it
    failed with a 500 and its cost was lost. The total stops at the cap; the report is kept."""
    from decimal import Decimal

    from budgets.ledger import SPENT_CAP
    from budgets.models import BudgetWindow

    services.set_budget(scope="team", team="platform", period="daily", limit_cents=100)
    assert api(agent.key).post(URL, BODY).status_code == 201
    BudgetWindow.objects.update(spent_cents=Decimal("9999999999999990"))
    response = api(agent.key).post(URL, BODY)
    assert response.status_code == 201, response.content
    assert BudgetWindow.objects.get().spent_cents == Decimal(SPENT_CAP)
    assert CostRecord.objects.count() == 2
