"""`/metrics` (SPEC §12): the token, the exposition's format, counters moved where events
happen (across processes), and the database's gauges equal to what the database says."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from django.db.models import Count, Max
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from approvals import services
from approvals.models import ApprovalRequest, CallbackDelivery, EmailDelivery, Status
from audit import checkpoints
from audit.models import AuditEvent
from budgets.models import Budget, BudgetWindow
from guardrails import checklog
from guardrails.counters import CHECK_LOG
from guardrails.models import Violation
from monitoring.prometheus import outbox_models
from oversight.redis_clients import quick_client
from tests.conftest import shift_into_past
from tests.support import live

TOKEN = "scrape-" + "t" * 32
CREATE = "/api/v1/approval-requests"
CHECK = "/api/v1/guardrails/check"


@pytest.fixture
def token(settings: Any) -> str:
    settings.OVERSIGHT_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client: Client | None = None) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics: {sample name: {sorted labels: value}}."""
    response = (client or Client()).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content.decode())


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found: dict[str, Any], name: str, **labels: str) -> float:
    return float(found.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


# --- the token -------------------------------------------------------------------------------


def test_without_a_configured_token_there_is_no_metrics_endpoint(db, settings):
    settings.OVERSIGHT_METRICS_TOKEN = ""
    assert Client().get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 404


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", TOKEN])
def test_no_or_a_malformed_authorization_is_401(db, token, header):
    headers = {} if header is None else {"Authorization": header}
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("given", ["wrong", TOKEN[:-1], TOKEN + "x", TOKEN.upper()])
def test_a_wrong_token_is_403(db, token, given):
    response = Client().get("/metrics", headers={"Authorization": f"Bearer {given}"})
    assert response.status_code == 403


def test_the_right_token_gets_the_exposition_without_a_login(db, token):
    found = scrape()
    assert value(found, "oversight_metrics_database_up") == 1
    for name in (
        "oversight_approval_requests_by_status",
        "oversight_audit_head_sequence",
    ):
        assert name in found, name


# --- counters, in this process --------------------------------------------------------------


def test_creates_decisions_and_timers_move_their_series(
    db, token, new_request, approvers, django_capture_on_commit_callbacks
):
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        approved = new_request(risk_level="medium")
        late = new_request(risk_level="high")
        services.approve_request(request_id=approved.pk, reviewer=approvers["lead"])
        shift_into_past(late.pk, 48 * 3600)
        assert services.expire_request(request_id=late.pk)
    after = scrape()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("oversight_approval_requests_created_total", risk="medium") == 1
    assert moved("oversight_approval_requests_created_total", risk="high") == 1
    decisions = "oversight_approval_decision_seconds_count"
    assert moved(decisions, risk="medium", outcome="approved") == 1
    assert moved(decisions, risk="high", outcome="expired") == 1
    # Expired 48 h late: lands above the last finite bucket (a day).
    assert moved("oversight_timer_lateness_seconds_count", timer="expiry") == 1
    lateness = "oversight_timer_lateness_seconds_bucket"
    assert moved(lateness, timer="expiry", le="300.0") == 0
    assert moved(lateness, timer="expiry", le="+Inf") == 1


def test_violations_are_counted_where_written_and_checks_where_the_log_is_drained(
    db, token, api, make_agent, django_capture_on_commit_callbacks
):
    agent = make_agent()
    quick_client().delete(CHECK_LOG)
    checklog.drain()
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True):
        denied = api(agent.key).post(CHECK, {"action": "write_file", "params": {"path": "/etc/x"}})
        allowed = api(agent.key).post(
            CHECK, {"action": "read_file", "params": {"path": "/srv/reports/q3.csv"}}
        )
    assert denied.json()["decision"] == "deny"
    assert allowed.json()["decision"] == "allow"
    middle = scrape()
    violation = Violation.objects.get(pk=denied.json()["violation_id"])
    code, severity = violation.code, violation.severity
    violations = "oversight_guardrail_violations_total"
    moved = value(middle, violations, code=code, severity=severity) - value(
        before, violations, code=code, severity=severity
    )
    assert moved == 1
    checks = "oversight_guardrail_checks_total"
    # Not on the check's path: nothing counted until the log is drained.
    assert value(middle, checks, purpose="check", decision="deny") == value(
        before, checks, purpose="check", decision="deny"
    )
    assert checklog.drain() >= 2
    after = scrape()
    for decision in ("deny", "allow"):
        moved = value(after, checks, purpose="check", decision=decision) - value(
            before, checks, purpose="check", decision=decision
        )
        assert moved == 1, decision
    codes = "oversight_guardrail_check_codes_total"
    assert value(after, codes, decision="deny", code=code) > value(
        before, codes, decision="deny", code=code
    )


# --- gauges of the database -----------------------------------------------------------------


def test_the_database_gauges_equal_what_the_database_says(
    db, token, new_request, make_agent, approvers, django_assert_max_num_queries
):
    agent = make_agent(team="payments")
    for risk in ("low", "medium", "medium", "high", "critical"):
        new_request(agent=agent.agent, risk_level=risk)
    decided = new_request(agent=agent.agent)
    services.reject_request(request_id=decided.pk, reviewer=approvers["lead"], reason="no")
    old = timezone.now() - timedelta(minutes=7)
    CallbackDelivery.objects.create(request=decided, url="https://example.com/cb", body="{}")
    EmailDelivery.objects.filter(request=decided).update(created_at=old)
    budget = Budget.objects.create(scope="team", team="payments", period="daily", limit_cents=500)
    now = timezone.now()
    BudgetWindow.objects.create(
        budget=budget,
        window_start=now - timedelta(hours=1),
        window_end=now + timedelta(hours=1),
        spent_cents=Decimal("123.5"),
        reserved_cents=Decimal(40),
    )
    BudgetWindow.objects.create(  # a past window: not the current spend
        budget=budget,
        window_start=now - timedelta(days=2),
        window_end=now - timedelta(days=1),
        spent_cents=Decimal(999),
    )
    checkpoint = checkpoints.make(force=True)
    assert checkpoint is not None

    with django_assert_max_num_queries(7):  # fixed, whatever the tables hold
        found = scrape()

    statuses = dict(
        ApprovalRequest.objects.order_by().values_list("status").annotate(n=Count("pk"))
    )
    for status in Status.values:
        assert value(found, "oversight_approval_requests_by_status", status=status) == (
            statuses.get(status, 0)
        ), status
    tiers = dict(
        ApprovalRequest.objects.filter(status=Status.PENDING)
        .order_by()
        .values_list("current_tier")
        .annotate(n=Count("pk"))
    )
    assert tiers
    for tier, n in tiers.items():
        assert value(found, "oversight_approval_requests_pending", tier=tier) == n, tier

    labels = {"budget": str(budget.pk), "scope": "team", "target": "payments", "period": "daily"}
    assert value(found, "oversight_budget_spent_cents", **labels) == 123.5
    assert value(found, "oversight_budget_reserved_cents", **labels) == 40
    assert value(found, "oversight_budget_limit_cents", **labels) == 500

    for model in outbox_models():
        pending = model._default_manager.filter(status="pending")
        label = model._meta.label_lower
        assert value(found, "oversight_outbox_backlog", outbox=label) == pending.count(), label
    assert {"approvals.callbackdelivery", "approvals.emaildelivery", "budgets.alertemail"} <= {
        model._meta.label_lower for model in outbox_models()
    }
    age = value(found, "oversight_outbox_oldest_age_seconds", outbox="approvals.emaildelivery")
    assert 7 * 60 <= age < 9 * 60

    head = AuditEvent.objects.aggregate(head=Max("sequence"))["head"]
    assert value(found, "oversight_audit_head_sequence") == head
    assert value(found, "oversight_audit_checkpoint_size") == checkpoint.size
    assert 0 <= value(found, "oversight_audit_checkpoint_age_seconds") < 60


# --- across processes -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_counters_move_with_traffic_across_two_web_processes(make_agent, tmp_path):
    """Two web servers writing to one multiprocess directory (as `make run` and compose start
    them): a scrape of either counts the requests both served."""
    env = {"OVERSIGHT_METRICS_TOKEN": TOKEN}
    first = live.start_web(tmp_path, **env)
    second = live.start_web(tmp_path, **env)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def created(server: live.Server) -> float:
            response = httpx.get(server.url + "/metrics", headers=headers, timeout=30)
            assert response.status_code == 200, response.text
            found = samples(response.text)
            return value(found, "oversight_approval_requests_created_total", risk="low")

        before = created(first)
        assert created(second) == before
        agent = make_agent()
        body = {"action": "read_file", "params": {"path": "/srv/a"}, "justification": "x"}
        for server, times in ((first, 2), (second, 3)):
            for _ in range(times):
                response = httpx.post(
                    server.url + CREATE,
                    json={**body, "risk_level": "low"},
                    headers={"Authorization": f"Bearer {agent.key}"},
                    timeout=30,
                )
                assert response.status_code == 201, response.text
        assert created(first) - before == 5
        assert created(second) - before == 5
    finally:
        first.proc.stop()
        second.proc.stop()
