"""Each use of a grant is counted atomically (issue 24): 20 simultaneous checks on a 5-use grant
allow exactly 5, from 20 threads, each with its own database connection."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from grants.models import Grant
from guardrails import services as guardrails
from tests.grants.conftest import ACTION

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_simultaneous_checks_on_a_five_use_grant_allow_exactly_five(make_agent, make_grant):
    agent = make_agent().agent
    grant = make_grant(agent=agent, kind="pinned", pins={"path": "/srv/app"}, max_uses=5)
    barrier = threading.Barrier(20)
    answers: list[tuple[str, int | None]] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            barrier.wait()
            outcome = guardrails.check_action(
                agent=agent, action=ACTION, params={"path": f"/srv/app/{n}.txt", "content": "x"}
            )
            with lock:
                answers.append((outcome.decision, outcome.grant_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 20
    assert answers.count(("allow", grant.pk)) == 5
    assert answers.count(("require_approval", None)) == 15
    grant.refresh_from_db()
    assert grant.uses == 5
    uses = AuditEvent.objects.filter(event_type="grant.used", subject_id=str(grant.pk))
    assert sorted(event.payload["use"] for event in uses) == [1, 2, 3, 4, 5]


def test_a_single_use_grant_is_used_once(make_agent, make_grant):
    agent = make_agent().agent
    grant = make_grant(agent=agent, kind="pinned", pins={"path": "/srv/app"}, max_uses=1)
    barrier = threading.Barrier(8)
    allowed: list[int | None] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            barrier.wait()
            outcome = guardrails.check_action(
                agent=agent, action=ACTION, params={"path": f"/srv/app/{n}.txt"}
            )
            with lock:
                allowed.append(outcome.grant_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(grant.pk) == 1
    assert allowed.count(None) == 7
    assert Grant.objects.get(pk=grant.pk).uses == 1
