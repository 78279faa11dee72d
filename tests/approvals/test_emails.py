"""Emails to the tier's people (SPEC §8) through the outbox, mostly with Django's locmem mailer;
one through a real SMTP server (`smtp_sink`). The real worker is in test_timers_live.py."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone

from approvals import emails, services, tasks
from approvals.models import ApprovalRequest, EmailDelivery, EmailKind
from oversight.outbox import DeliveryStatus
from tests.support.peers import Peer, soft_time_limit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people(make_user):
    return {
        "lead": make_user("lead-a", roles=("approver",), tier="team_lead"),
        "lead2": make_user("lead-b", roles=("approver",), tier="team_lead"),
        "em": make_user("em-a", roles=("approver",), tier="engineering_manager"),
        "former": make_user("former-a", roles=("approver",), tier="team_lead"),
    }


@pytest.fixture(autouse=True)
def _distinct_addresses(people):
    for user in people.values():
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    people["former"].groups.clear()  # lost the approver role, kept the tier field


def test_a_new_request_emails_its_first_tier_with_a_link_to_its_page(
    new_request, people, mailoutbox, settings
):
    settings.OVERSIGHT_BASE_URL = "https://oversight.example.com"
    request = new_request(risk_level="medium")
    assert tasks.sweep_emails() == 1
    assert sorted(m.to[0] for m in mailoutbox) == ["lead-a@example.com", "lead-b@example.com"]
    message = mailoutbox[0]
    link = f"https://oversight.example.com/requests/{request.pk}/"
    assert "Approval needed: write_file" in message.subject
    assert link in message.body
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    assert f'href="{link}"' in html
    delivery = EmailDelivery.objects.get(request=request)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.sent_to == ["lead-a@example.com", "lead-b@example.com"]
    assert tasks.sweep_emails() == 0, "sent once"


def test_escalation_emails_the_tier_it_adds(new_request, people, mailoutbox):
    request = new_request(risk_level="medium", timeout_seconds=600)
    tasks.sweep_emails()
    mailoutbox.clear()
    ApprovalRequest.objects.filter(pk=request.pk).update(
        escalates_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.escalate_request(request_id=request.pk)
    assert tasks.sweep_emails() == 1
    assert [m.to for m in mailoutbox] == [["em-a@example.com"]]
    assert "Escalated" in mailoutbox[0].subject
    assert "escalated to Engineering manager" in mailoutbox[0].body
    assert EmailDelivery.objects.get(request=request, kind=EmailKind.ESCALATED).tier == (
        "engineering_manager"
    )


def test_a_rolled_back_request_sends_nothing(make_agent, people, mailoutbox):
    agent = make_agent().agent
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_request(
            agent=agent,
            action="deploy_to_production",
            params={},
            risk_level="low",
            justification="x",
        )
        raise RuntimeError("rolled back")
    assert tasks.sweep_emails() == 0
    assert mailoutbox == []


def test_the_agents_owner_is_not_emailed_unless_self_approval_is_allowed(
    new_request, make_agent, people, mailoutbox, settings
):
    agent = make_agent(owner=people["lead"]).agent
    new_request(agent=agent, risk_level="low")
    tasks.sweep_emails()
    assert [m.to for m in mailoutbox] == [["lead-b@example.com"]]
    settings.OVERSIGHT_ALLOW_SELF_APPROVAL = True
    mailoutbox.clear()
    new_request(agent=agent, risk_level="low")
    tasks.sweep_emails()
    assert sorted(m.to[0] for m in mailoutbox) == ["lead-a@example.com", "lead-b@example.com"]


def test_inactive_people_and_other_roles_are_not_emailed(new_request, people, mailoutbox):
    people["lead2"].is_active = False
    people["lead2"].save(update_fields=["is_active"])
    request = new_request(risk_level="low")
    assert emails.recipients(request, "team_lead") == ["lead-a@example.com"]


def test_a_request_decided_before_its_email_went_out_is_not_emailed(
    new_request, people, mailoutbox
):
    request = new_request(risk_level="low")
    services.approve_request(request_id=request.pk, reviewer=people["lead"])
    tasks.sweep_emails()
    assert mailoutbox == []
    assert EmailDelivery.objects.get(request=request).status == DeliveryStatus.SKIPPED


def test_an_unreachable_mail_server_is_retried_with_backoff(new_request, people, settings):
    from tools.services import free_port

    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": free_port(), "timeout": 2},
        }
    }
    request = new_request(risk_level="low")
    assert tasks.sweep_emails() == 1
    delivery = EmailDelivery.objects.get(request=request)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert "ConnectionRefused" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now()
    assert tasks.sweep_emails() == 0, "not due again before its backoff"


def _mailer_at(settings: Any, port: int, timeout: float) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": timeout},
        }
    }


@pytest.mark.timeout(60)
def test_a_mail_server_that_accepts_and_stalls_is_given_up_at_the_mail_timeout(
    new_request, people, settings
):
    """Already held before issue 19 (`EMAIL_TIMEOUT`, 10 s by default, bounds each socket
    operation); kept as the guard of SPEC §9.6's stalled SMTP."""
    stalled = Peer("hang")  # accepts, never greets
    try:
        _mailer_at(settings, stalled.port, timeout=1)
        request = new_request(risk_level="low")
        started = time.monotonic()
        assert tasks.sweep_emails() == 1
        assert time.monotonic() - started < 2
    finally:
        stalled.close()
    delivery = EmailDelivery.objects.get(request=request)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert "timed out" in delivery.last_error


@pytest.mark.timeout(60)
def test_a_time_limit_in_mid_send_leaves_the_email_counted_and_stops_the_sweep(
    new_request, people, settings
):
    stalled = Peer("hang")
    try:
        _mailer_at(settings, stalled.port, timeout=10)  # the task's limit comes first
        request = new_request(risk_level="low")
        with pytest.raises(SoftTimeLimitExceeded), soft_time_limit(0.5):
            tasks.sweep_emails()
    finally:
        stalled.close()
    delivery = EmailDelivery.objects.get(request=request)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
    assert delivery.last_error == "stopped at the task's time limit"
    assert delivery.lease_until is None
    assert delivery.next_attempt_at > timezone.now()


def test_a_request_whose_action_holds_a_line_break_still_reaches_its_approvers(
    new_request, people, smtp_sink
):
    """Rows stored before the API refused line breaks in `action` (and any other text the
    subject quotes) must not silence the approvers: a header may not hold a line break, and
    the mailer refused the whole message on every attempt until the outbox gave up."""
    request = new_request(risk_level="low")
    ApprovalRequest.objects.filter(pk=request.pk).update(action="deploy\nnow\r\n\u2028please")
    assert tasks.sweep_emails() == 1
    delivery = EmailDelivery.objects.get(request=request)
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.DELIVERED, "")
    for address in ("lead-a@example.com", "lead-b@example.com"):
        (message,) = smtp_sink.to(address)
        assert message["Subject"].startswith("[Oversight] Approval needed: deploy now please (")
