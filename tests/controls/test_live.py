"""Agent controls with the real processes (SPEC §6): beat recomputes the recommendations and a
trial reverts on its own; the circuit breaker's pause reaches the managers by email through the
worker's outbox."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from agents.models import Agent, AgentStatus
from controls import services
from controls.models import Outcome
from tests.support import live
from tests.support.smtp import SmtpSink

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ENV = {"OVERSIGHT_TIMER_TICK_SECONDS": "0.5", "OVERSIGHT_AUTONOMY_REFRESH_SECONDS": "1"}


@pytest.fixture
def procs():
    from oversight.celery import app

    app.control.purge()
    started: list[live.Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()
    # What beat queued and no worker took is not left for the next test's worker to run.
    app.control.purge()


def test_beat_reverts_a_trial_on_its_own_and_the_managers_hear_of_it(
    tmp_path, procs, make_agent, make_user
):
    sink = SmtpSink()
    env = {
        **ENV,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
    }
    manager = make_user("controls-manager", roles=("manager",))
    manager.email = "manager@example.com"
    manager.save(update_fields=["email"])
    agent = make_agent().agent
    services.set_autonomy(agent=agent, level=2, why="start", actor=manager)
    Agent.objects.filter(pk=agent.pk).update(
        autonomy_changed_at=timezone.now() - timedelta(days=40)
    )
    now = timezone.now()
    Outcome.objects.bulk_create(
        Outcome(
            agent=agent,
            action="read_file",
            params_sha256="0" * 64,
            success=True,
            created_at=now - timedelta(minutes=n + 1),
        )
        for n in range(60)
    )
    services.refresh_autonomy()
    assert services.apply_recommendation(agent=agent, actor=manager) == 3
    procs.append(live.start_worker(tmp_path, **env))
    procs.append(live.start_beat(tmp_path, **env))

    # During the trial: a critical failure (a failed deploy).
    Outcome.objects.create(
        agent=agent,
        action="deploy_to_production",
        params_sha256="1" * 64,
        success=False,
        critical=True,
    )

    def reverted() -> bool:
        agent.refresh_from_db()
        return agent.autonomy_level == 2

    live.wait_until(reverted, timeout=30)
    assert agent.autonomy_trial_until is None
    [mail] = live.wait_until(lambda: sink.to("manager@example.com"), timeout=30)
    assert "Autonomy lowered" in mail["Subject"]


def test_the_breakers_pause_emails_the_managers(tmp_path, procs, web_server, make_agent, make_user):
    sink = SmtpSink()
    env = {
        **ENV,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
    }
    manager = make_user("breaker-manager", roles=("manager",))
    manager.email = "breaker@example.com"
    manager.save(update_fields=["email"])
    agent = make_agent()
    procs.append(live.start_worker(tmp_path, **env))
    procs.append(live.start_beat(tmp_path, **env))

    for n in range(5):
        answer = httpx.post(
            web_server.url + "/api/v1/outcomes",
            json={"action": "read_file", "params": {"n": n}, "success": False},
            headers={"Authorization": f"Bearer {agent.key}"},
            timeout=30,
        )
        assert answer.status_code == 201

    agent.agent.refresh_from_db()
    assert agent.agent.status == AgentStatus.PAUSED
    [mail] = live.wait_until(lambda: sink.to("breaker@example.com"), timeout=30)
    assert "Circuit breaker paused an agent" in mail["Subject"]
    assert agent.agent.name in mail.get_payload()
