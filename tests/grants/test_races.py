"""Each use of a grant is counted atomically (issue 24): 20 simultaneous checks on a 5-use grant
allow exactly 5, from 20 threads, each with its own database connection."""

from __future__ import annotations

import functools

import pytest

from audit.models import AuditEvent
from grants.models import Grant
from guardrails import services as guardrails
from tests.approvals.test_races import run_together
from tests.grants.conftest import ACTION

pytestmark = pytest.mark.django_db(transaction=True)


def test_twenty_simultaneous_checks_on_a_five_use_grant_allow_exactly_five(make_agent, make_grant):
    agent = make_agent().agent
    grant = make_grant(agent=agent, kind="pinned", pins={"path": "/srv/app"}, max_uses=5)

    def run(n: int) -> tuple[str, int | None]:
        outcome = guardrails.check_action(
            agent=agent, action=ACTION, params={"path": f"/srv/app/{n}.txt", "content": "x"}
        )
        return outcome.decision, outcome.grant_id

    answers = run_together([functools.partial(run, n) for n in range(20)])
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

    def run(n: int) -> int | None:
        outcome = guardrails.check_action(
            agent=agent, action=ACTION, params={"path": f"/srv/app/{n}.txt"}
        )
        return outcome.grant_id

    allowed = run_together([functools.partial(run, n) for n in range(8)])
    assert allowed.count(grant.pk) == 1
    assert allowed.count(None) == 7
    assert Grant.objects.get(pk=grant.pk).uses == 1
