"""Unknown-model alerts (SPEC §5, §8; issue 19): once per (agent, model) per day however many
reports, and at most a few models per agent and day, so an agent that invents model names
cannot flood the managers' mailboxes."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from budgets import tasks
from budgets.models import UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY as CAP
from budgets.models import Alert, AlertEmail, CostRecord
from tests.budgets.helpers import report, run_in_waves


def unknown_model_alerts(agent=None) -> list[Alert]:
    alerts = Alert.objects.filter(kind="unknown_model").order_by("ordinal")
    return list(alerts.filter(agent=agent) if agent is not None else alerts)


@pytest.mark.django_db
def test_each_agent_reporting_an_unknown_model_is_alerted_once_that_day(make_agent, make_user):
    owner = make_user()  # not a manager: told because the agent is theirs
    owner.email = "owner@example.com"
    owner.save()
    first, second = make_agent(owner=owner).agent, make_agent().agent
    for _ in range(3):
        report(first, "llama-99-mega")
        report(second, "llama-99-mega")
    alerts = unknown_model_alerts()
    assert {alert.agent_id for alert in alerts} == {first.pk, second.pk}
    assert {alert.model for alert in alerts} == {"llama-99-mega"}
    assert AlertEmail.objects.count() == 2
    assert AuditEvent.objects.filter(event_type="budget.alert").count() == 2
    # The mail about an agent's alert goes to its owner too.
    (mine,) = unknown_model_alerts(first)
    assert owner.email in tasks.alert_recipients(mine)


@pytest.mark.django_db
def test_past_the_daily_cap_an_agents_unknown_models_are_recorded_but_not_alerted(make_agent):
    agent = make_agent().agent
    for n in range(CAP + 3):
        outcome = report(agent, f"invented-model-{n}")
        assert outcome.record.unknown_model
    assert CostRecord.objects.filter(agent=agent, unknown_model=True).count() == CAP + 3
    alerts = unknown_model_alerts(agent)
    assert [alert.model for alert in alerts] == [f"invented-model-{n}" for n in range(CAP)]
    assert [alert.ordinal for alert in alerts] == list(range(1, CAP + 1))
    assert "further unknown models from this agent today are not alerted" in alerts[-1].message
    assert "not alerted" not in alerts[0].message
    assert AlertEmail.objects.count() == CAP
    # Another agent still gets its own alerts, and this one again the next day.
    report(make_agent().agent, "invented-model-0")
    report(agent, "invented-model-99", occurred_at=timezone.now() + timedelta(days=1))
    assert len(unknown_model_alerts()) == CAP + 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_reports_of_invented_models_never_pass_the_cap(make_agent):
    """Forty reports at once from one agent, from twenty threads with their own connections:
    ten of one model and thirty each of a new one. One alert for the repeated model, and the
    cap holds."""
    agent = make_agent().agent
    models = ["repeated-model"] * 10 + [f"invented-{n}" for n in range(30)]
    results = run_in_waves([functools.partial(report, agent, model) for model in models])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert CostRecord.objects.filter(agent=agent, unknown_model=True).count() == 40
    alerts = unknown_model_alerts(agent)
    assert len(alerts) == CAP
    assert [alert.ordinal for alert in alerts] == list(range(1, CAP + 1))
    assert len({alert.model for alert in alerts}) == CAP
    assert AlertEmail.objects.count() == CAP
    assert AuditEvent.objects.filter(event_type="budget.alert").count() == CAP


@pytest.mark.django_db(transaction=True)
def test_concurrent_reports_of_one_unknown_model_alert_it_once(make_agent):
    agent = make_agent().agent
    results = run_in_waves([functools.partial(report, agent, "brand-new") for _ in range(20)])
    assert not [r for r in results if isinstance(r, Exception)], results
    assert [alert.model for alert in unknown_model_alerts(agent)] == ["brand-new"]
    assert AlertEmail.objects.count() == 1
