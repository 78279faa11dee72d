"""The weekly fairness report (SPEC §12): written once per week by beat with the week's figures,
emailed to the managers through the outbox, flagged groups first."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitoring import tasks
from monitoring.models import FairnessReport
from oversight.outbox import DeliveryStatus
from tests.monitoring.test_fairness import END, START, agent, decided, person

pytestmark = pytest.mark.django_db

MONDAY_AFTER = END + timedelta(hours=1)


@pytest.fixture
def week() -> None:
    """support-bot's 12 of 24 approved against deploy-bot's 22 of 24: a ratio of 0.55."""
    lead = person("lead")
    decided(agent(team="platform", prefix="deploy-bot"), lead, approved=22, rejected=2)
    decided(agent(team="support", prefix="support-bot"), lead, approved=12, rejected=12)


def test_the_report_is_written_once_per_week_with_that_weeks_figures(week):
    report = tasks.queue_fairness_report(now=MONDAY_AFTER)

    assert report is not None
    assert (report.week_start, report.week_end) == (START, END)
    assert tasks.queue_fairness_report(now=MONDAY_AFTER + timedelta(minutes=10)) is None
    assert FairnessReport.objects.count() == 1
    flagged = [
        (kind["kind"], group)
        for kind in report.figures["rates"]["kinds"]
        for group in kind["groups"]
        if group["flagged"]
    ]
    assert {(kind, group["decided"], group["approved"]) for kind, group in flagged} == {
        ("agent", 24, 12),
        ("team", 24, 12),
    }


def test_the_report_goes_to_the_managers_flagged_groups_first(week, make_user, smtp_sink):
    manager = make_user("max", roles=("manager",))
    manager.email = "max@example.com"
    manager.save(update_fields=["email"])
    compliance = make_user("carl", roles=("compliance",))  # not a manager: not told
    compliance.email = "carl@example.com"
    compliance.save(update_fields=["email"])
    report = tasks.queue_fairness_report(now=MONDAY_AFTER)
    assert report is not None

    assert tasks.sweep_fairness_reports() == 1

    report.refresh_from_db()
    assert report.status == DeliveryStatus.DELIVERED
    assert "max@example.com" in report.sent_to
    assert "carl@example.com" not in report.sent_to
    (message,) = smtp_sink.to("max@example.com")
    assert message["Subject"] == "[Oversight] Fairness report, week of 2026-03-02"
    body = message.get_content()
    assert body.index("support-bot") < body.index("deploy-bot")
    assert "/monitoring/#fairness" in body
    assert tasks.sweep_fairness_reports() == 0
