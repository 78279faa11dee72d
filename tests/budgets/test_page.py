"""The budgets page (managers): spend vs limit, burn, projection, chart, hints, alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from budgets import services
from budgets.models import Alert, AlertEmail
from budgets.tasks import deliver_alert_email
from oversight.outbox import DeliveryStatus
from tests.budgets.helpers import report

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(make_user) -> Client:
    client = Client()
    client.force_login(make_user("mona", roles=("manager",)))
    return client


def test_anonymous_visitors_log_in_and_approvers_are_refused(make_user):
    assert Client().get("/budgets/").status_code == 302
    client = Client()
    client.force_login(make_user(roles=("approver",), tier="director"))
    assert client.get("/budgets/").status_code == 403


def test_the_page_shows_each_budget_against_its_limit_with_projection_and_chart(
    manager, make_agent, make_budget, django_assert_max_num_queries
):
    agent = make_agent("writer-bot").agent
    make_budget(agent=agent, period="monthly", limit_cents=1000)
    make_budget(period="daily", limit_cents=50)
    for days_ago in range(5):
        report(agent, occurred_at=timezone.now() - timedelta(days=days_ago))
    report(agent, model="claude-3-haiku", success=False)
    with django_assert_max_num_queries(14):
        response = manager.get("/budgets/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Monthly · agent writer-bot" in html
    assert "Daily · everything" in html
    assert '<svg class="chart"' in html
    assert html.count('<rect class="bar"') == 30  # one per day, empty days included
    assert "<code>claude-3-haiku</code>" in html
    assert "style=" not in html  # CSP: no inline styles
    assert 'href="/budgets/"' in html  # the nav link for managers


def test_the_seed_hints_appear_when_they_apply(manager, make_agent):
    agent = make_agent().agent
    # $30 of gpt-4 today: over $10 on an expensive model, and $1.25/hour over the last 24 h.
    report(agent, "gpt-4", 1_000_000, 0)
    for _ in range(3):
        report(agent, "gpt-4o-mini", 1000, 0, success=False)
    html = manager.get("/budgets/").content.decode()
    assert "Expensive models take" in html
    assert "High burn rate" in html
    assert "spent on failed calls" in html


def test_alerts_list_refreshes_as_a_fragment(manager, make_agent, make_budget):
    agent = make_agent().agent
    make_budget(period="daily", limit_cents=3)
    report(agent)
    response = manager.get(
        "/budgets/", headers={"HX-Request": "true", "HX-Target": "budget-alerts"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="budget-alerts"')
    assert "Daily budget of everything reached 100%" in html
    assert "<header" not in html


def test_an_alert_emails_managers_admins_and_the_agent_owner_through_the_outbox(
    make_user, make_agent, mailoutbox
):
    people = {
        name: make_user(name, roles=roles, tier=tier)
        for name, roles, tier in [
            ("owner", ("approver",), "team_lead"),
            ("boss", ("manager",), ""),
            ("root", ("admin",), ""),
            ("bystander", ("approver",), "team_lead"),
        ]
    }
    for name, person in people.items():
        person.email = f"{name}@example.com"
        person.save()
    agent = make_agent(owner=people["owner"]).agent
    services.set_budget(scope="agent", agent=agent, period="daily", limit_cents=3)
    report(agent)  # 3 ¢: 80 %, 95 % and 100 % at once
    assert AlertEmail.objects.count() == 3  # one email per alert, in the outbox
    alert = Alert.objects.get(threshold=100)
    assert deliver_alert_email(alert.email.pk) == DeliveryStatus.DELIVERED
    (email,) = mailoutbox
    assert sorted(email.to) == ["boss@example.com", "owner@example.com", "root@example.com"]
    assert "reached 100%" in email.subject


def test_an_alert_about_a_team_whose_name_holds_a_line_break_is_still_emailed(
    make_user, make_agent, smtp_sink
):
    """The alert's subject quotes the budget's name, and a team's name is whatever an admin or
    `set_budget --team` typed: a line break in it made every alert of that budget unsendable
    (a header may not hold one), through a real SMTP conversation here."""
    boss = make_user("boss", roles=("manager",))
    boss.email = "boss@example.com"
    boss.save()
    services.set_budget(scope="team", team="plat\nform\u2028x", period="daily", limit_cents=3)
    report(make_agent(team="plat\nform\u2028x").agent)  # 3 ¢: 80 %, 95 % and 100 % at once
    alert = Alert.objects.get(threshold=100)
    assert deliver_alert_email(alert.email.pk) == DeliveryStatus.DELIVERED
    (message,) = smtp_sink.to("boss@example.com")
    assert message["Subject"].startswith(
        "[Oversight] Budget alert: Daily budget of team plat form x reached 100%"
    )
