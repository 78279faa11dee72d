"""The demo's monitoring history (SPEC §12): 30 days of outcomes and decided requests, so the
monitoring page has trends, a fairness flag and an overseer worth a look, and beat's alert
evaluation finds something on its first run.

The past cannot be made through the services (they stamp `now`, and failures and rejections
would trip the demo agents' circuit breakers): the history is written as rows, the way an
import would, copied from a request the services made. Today's figures go through the services
where they change state. What it shows:

- `deploy-bot` and `support-agent` asked for the same kind of medium-risk change for a month;
  people approved 24 of deploy-bot's 26 and 15 of support-agent's 26: support-agent's approval
  rate is 0.62 of deploy-bot's, below the 80 % rule (a fairness flag by agent and by team);
- `lead` approved most of those within seconds of their arrival (rubber-stamp signals);
- `support-agent`'s outcomes today succeed 7 times in 12 (success rate alert, firing),
  `deploy-bot` sent three long prompts in the last minutes (a cost spike, firing), and
  `etl-runner` had a few bad days (the trends show them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Model
from django.utils import timezone

from accounts.models import User
from agents.models import Agent
from approvals.models import ApprovalRequest, Status, Vote, VoteChoice
from budgets import services as budgets
from controls.models import Outcome
from monitoring import alerts, rollup

DAYS = 30
# (agent, decisions, approved): support-agent's rate is 15/26 = 0.58, deploy-bot's 24/26 = 0.92.
DECISIONS = (("deploy-bot", 26, 24), ("support-agent", 26, 15))


def seed(say: Callable[[str], None]) -> None:
    """Seed the history once: nothing when there are outcomes older than a day already."""
    if Outcome.objects.filter(created_at__lt=timezone.now() - timedelta(days=1)).exists():
        return
    agents = {agent.name: agent for agent in Agent.objects.all()}
    people = {user.username: user for user in User.objects.all()}
    outcomes = _outcomes(agents)
    decided = _decisions(agents, people)
    _cost_spike(agents["deploy-bot"])
    yesterday = timezone.now().date() - timedelta(days=1)
    rollup.roll(yesterday - timedelta(days=rollup.KEEP_DAYS - 1), yesterday)  # the history's days
    found = alerts.evaluate()  # beat's first run
    say(
        f"Demo monitoring: {outcomes} outcomes and {decided} decided requests over {DAYS} days; "
        f"{found['fired']} alert(s) firing; a fairness flag (support-agent's approval rate)."
    )


def _outcomes(agents: dict[str, Agent]) -> int:
    now = timezone.now()
    rows = []
    for back in range(1, DAYS):
        day = now - timedelta(days=back)
        for name, per_day, failing in (
            ("deploy-bot", 6, back % 9 == 0),
            ("support-agent", 8, back % 11 == 0),
            ("etl-runner", 5, back in (3, 4, 12)),
            ("triage-bot", 4, False),
        ):
            for n in range(per_day):
                ok = not (failing and n % 2 == 0) and not (n == 0 and back % 5 == 0)
                rows.append(_outcome(agents[name], ok, day - timedelta(minutes=17 * n)))
    # Today: support-agent succeeds 7 times in 12, below the alert's 85 %.
    rows += [
        _outcome(agents["support-agent"], n < 7, now - timedelta(minutes=5 + n)) for n in range(12)
    ]
    Outcome.objects.bulk_create(rows)
    return len(rows)


def _cost_spike(agent: Agent) -> None:
    """deploy-bot's long prompts this hour: several times its normal hourly spend."""
    now = timezone.now()
    for minutes in (3, 2, 1):
        budgets.record_cost(
            agent=agent,
            model="gpt-4",
            input_tokens=30_000,
            output_tokens=4_000,
            occurred_at=now - timedelta(minutes=minutes),
        )


def _outcome(agent: Agent, ok: bool, at: datetime) -> Outcome:
    return Outcome(
        agent=agent,
        action="database_query" if ok else "call_external_api",
        params_sha256=uuid.uuid4().hex * 2,
        success=ok,
        error="" if ok else "TimeoutError: upstream did not answer within 30 s",
        duration_ms=120,
        created_at=at,
    )


def _decisions(agents: dict[str, Agent], people: dict[str, User]) -> int:
    """Decided requests and their votes, copied from a request the services decided."""
    template = ApprovalRequest.objects.filter(
        status=Status.APPROVED, risk_level="medium", decided_by__isnull=False
    ).first()
    if template is None:
        return 0
    now = timezone.now()
    requests, votes = [], []
    for name, count, approved in DECISIONS:
        for n in range(count):
            created = now - timedelta(days=1 + n % (DAYS - 2), hours=n % 7, minutes=n)
            yes = n < approved
            # lead decides most of them, approving within seconds; the manager takes his time.
            voter = people["lead"] if n % 4 else people["manager"]
            took = timedelta(seconds=4) if voter.username == "lead" else timedelta(minutes=12)
            request = _copy(template)
            request.id = uuid.uuid4()
            request.agent = agents[name]
            request.owner_at_request = agents[name].owner
            request.status = Status.APPROVED if yes else Status.REJECTED
            request.created_at = created
            request.escalates_at = created + timedelta(minutes=30)
            request.expires_at = created + timedelta(hours=4)
            request.decided_at = created + took
            request.decided_by = voter
            request.decision_reason = "" if yes else "Not during the freeze."
            request.approved_params_sha256 = request.current_params_sha256 if yes else ""
            requests.append(request)
            votes.append(
                Vote(
                    request=request,
                    voter=voter,
                    voter_name=voter.get_full_name() or voter.username,
                    vote=VoteChoice.APPROVE if yes else VoteChoice.REJECT,
                    comment=request.decision_reason,
                    params_sha256=request.current_params_sha256,
                    created_at=request.decided_at,
                )
            )
    ApprovalRequest.objects.bulk_create(requests)
    Vote.objects.bulk_create(votes)
    return len(requests)


def _copy[M: Model](row: M) -> M:
    copy = type(row)(
        **{field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}
    )
    copy._state.adding = True
    return copy
