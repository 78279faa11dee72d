"""The demo's relief from approval fatigue (issue 24), each reached through the real services:

- the director is away for three days and the VP stands in: the VP's inbox marks the requests
  routed to the director's tier "for Dara Director", and the VP's votes on them are recorded on
  the director's behalf;
- `deploy-bot` holds a standing approval to write release notes (a manager granted it with an
  approval), already used once by a check;
- `triage-bot` has a daily budget in ask mode that it has spent: its request past the limit
  waits in the inbox with the reason `budget_exceeded`, and approving it raises the day's cap.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from accounts import services as people
from accounts.models import Delegation, User
from agents.models import Agent
from approvals import services as approvals
from budgets import services as budgets
from budgets.models import Budget, Mode


def seed(say: Callable[[str], None]) -> None:
    """Seed each once: nothing that exists already is made again."""
    if not Delegation.objects.exists():
        director = User.objects.get(username="director")
        vp = User.objects.get(username="vp")
        people.set_away(
            person=director,
            delegate=vp,
            until=timezone.now() + timedelta(days=3),
            note="At the offsite; Val decides for me.",
        )
        say("Demo absence: director away for 3 days, vp stands in (see vp's inbox and Away).")
    triage = Agent.objects.get(name="triage-bot")
    if not Budget.objects.filter(agent=triage).exists():
        budgets.set_budget(
            scope="agent", agent=triage, period="daily", limit_cents=40, mode=Mode.ASK
        )
        budgets.record_cost(agent=triage, model="gpt-4o", input_tokens=160_000, output_tokens=8_000)
        request = approvals.create_request(
            agent=triage,
            action="external_api_call",
            params={"endpoint": "https://api.zendesk.com/v2/tickets/8812/comments"},
            risk_level="low",
            estimated_cost_cents=15,
            justification="Answer ticket 8812; the day's budget is spent, so a person decides.",
            confidence=0.9,
        )
        asked = "budget_exceeded" in [reason["code"] for reason in request.check_reasons]
        say(
            "Demo budget in ask mode: triage-bot's daily budget is spent"
            + (", its request waits for a person." if asked else ".")
        )


def seed_grant(say: Callable[[str], None]) -> None:
    """A standing approval made with an approval, then used once by a check: deploy-bot may
    write release notes under /srv/releases/notes/ for a day, 20 times."""
    from grants import services as grants
    from grants.models import Grant, GrantKind
    from guardrails import services as guardrails

    if Grant.objects.exists():
        return
    deploy_bot = Agent.objects.get(name="deploy-bot")
    manager = User.objects.get(username="manager")
    request = approvals.create_request(
        agent=deploy_bot,
        action="write_file",
        params={"path": "/srv/releases/notes/2.14.0.md", "content": "Fixes INC-2211."},
        risk_level="medium",
        justification="Publish the release notes of 2.14.0.",
        confidence=0.8,
    )
    grants.approve_and_grant(
        request_id=request.pk,
        reviewer=manager,
        comment="Release notes are fine; no need to ask for each.",
        terms=grants.GrantTerms(
            kind=GrantKind.PINNED,
            pins={"path": "/srv/releases/notes/"},
            lifetime=timedelta(days=1),
            max_uses=20,
        ),
    )
    answer = guardrails.check_action(
        agent=deploy_bot,
        action="write_file",
        params={"path": "/srv/releases/notes/2.14.1.md", "content": "Fixes INC-2213."},
        confidence=0.8,
    )
    say(
        "Demo standing approval: deploy-bot may write release notes for a day (20 uses); a "
        f"check for the next ones answered {answer.decision} (see Grants)."
    )
