"""The demo's agent controls (SPEC §6): one agent in each state, each reached the way production
reaches it, through the real services (outcomes, receipts, checks, votes, autonomy changes and
beat's refresh), so the pages show what they would show for real agents:

- execution receipts: requests executed as approved, one of them with an approver's changes;
- `support-agent` has a level of its own for one category, and re-read one record three times
  in a row (a `loop_detected` violation);
- `etl-runner` failed 3 times in a row: its circuit breaker is open (a person decides each call;
  its retry waits in the inbox with the reason);
- `billing-sync` failed 5 times in a row: its circuit breaker paused it;
- `warehouse-loader` failed a critical action: its autonomy was lowered (a manager may restore
  it), and with the two above it makes a cascade alert for team `data`;
- `research-agent` reported executing other arguments than approved: disabled (two people
  re-enable it);
- `triage-bot` is at level 3 with a record that recommends a raise (50+ successes, its requests
  approved unchanged); `docs-bot` had the same record at level 2 and a manager applied it: it
  is on a 30-day trial at level 3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accounts.models import User
from agents.models import Agent
from approvals import services as approvals
from approvals.models import ApprovalRequest, Status
from controls import services as controls
from controls.models import Outcome, Receipt
from controls.outcomes import report_outcome
from guardrails import services as guardrails

# Enough successes for a raise (controls.autonomy.RAISE_MIN_OUTCOMES is 50).
GOOD_RECORD = 52


def seed(say: Callable[[str], None]) -> None:
    """Seed every agent-control state once: nothing when any outcome exists already."""
    if Outcome.objects.exists():
        return
    agents = {agent.name: agent for agent in Agent.objects.all()}
    people = {user.username: user for user in User.objects.all()}
    _receipts(agents, people)
    controls.set_autonomy(
        agent=agents["support-agent"],
        level=1,
        category="external_api",
        why="Refunds move money: a person sees each one.",
        actor=people["manager"],
    )
    looped = _loop(agents["support-agent"])
    _breakers(agents, people)
    _mismatch(agents["research-agent"], people["lead"])
    _good_record(agents, people)
    controls.refresh_autonomy()  # beat's tick: the recommendations, and the lowering
    trial = controls.apply_recommendation(agent=agents["docs-bot"], actor=people["manager"])
    receipts = Outcome.objects.filter(receipt=Receipt.MATCHED).count()
    say(
        f"Demo agent controls: {receipts} requests executed as approved; etl-runner's circuit "
        "breaker open, billing-sync paused by it, research-agent disabled (execution mismatch), "
        "warehouse-loader's autonomy lowered (restorable), "
        f"triage-bot at level 3 with a raise recommended, docs-bot on a trial at level {trial}, "
        "support-agent at level 1 for external_api"
        + (", a loop detected" if looped else " (no loop: Redis did not answer)")
        + ", a cascade alert for team data."
    )


def _receipts(agents: dict[str, Agent], people: dict[str, User]) -> None:
    """Receipts of approved requests: the demo traffic's approved one, and a deploy-bot request
    a manager approved with changes, executed with the changes."""
    deploy_bot = agents["deploy-bot"]
    asked = approvals.create_request(
        agent=deploy_bot,
        action="write_file",
        params={"path": "/srv/app/config/feature-flags.yml", "checkout_v2": "100%"},
        justification="Turn the new checkout on for everyone.",
        confidence=0.78,
    )
    approvals.approve_request(
        request_id=asked.pk,
        reviewer=people["manager"],
        comment="Start at 10 %, please.",
        modified_params={"path": "/srv/app/config/feature-flags.yml", "checkout_v2": "10%"},
    )
    approved = ApprovalRequest.objects.filter(
        status=Status.APPROVED, receipt__isnull=True
    ).select_related("agent")
    for number, request in enumerate(approved):
        report_outcome(
            agent=request.agent,
            action=request.action,
            params=request.effective_params,
            approval_request_id=request.pk,
            success=True,
            duration_ms=840 + 130 * number,
        )


def _loop(agent: Agent) -> bool:
    """The same read three times in a row: the third needs a person and is a violation."""
    params = {"resource": "crm://customers/7788", "customer_id": 7788}
    answers = [
        guardrails.check_action(agent=agent, action="read_customer_record", params=params)
        for _ in range(3)
    ]
    return "loop_detected" in answers[-1].verdict.codes


def _fail(agent: Agent, action: str, params: dict[str, Any], error: str, times: int) -> None:
    for attempt in range(times):
        report_outcome(
            agent=agent,
            action=action,
            params=params,
            success=False,
            error=error,
            duration_ms=30_000 + 1_500 * attempt,
        )


def _breakers(agents: dict[str, Agent], people: dict[str, User]) -> None:
    """Three agents of team `data` fail within minutes: one breaker open, one tripped, one
    critical failure (its autonomy is lowered by the refresh), and a cascade alert."""
    etl = agents["etl-runner"]
    build = {"command": "dbt run --select marts.finance"}
    _fail(etl, "run_command", build, 'Database Error: relation "raw.payments" does not exist', 3)
    etl.refresh_from_db()  # the check reads the open breaker from the agent
    approvals.create_request(
        agent=etl,
        action="run_command",
        params={"command": "dbt run --select marts.finance --full-refresh"},
        justification="Rebuild the finance mart from scratch after three failed runs.",
        confidence=0.6,
    )
    _fail(
        agents["billing-sync"],
        "external_api_call",
        {"endpoint": "https://api.stripe.com/v1/invoices", "limit": 100},
        "HTTPError: 503 Service Unavailable from api.stripe.com",
        5,
    )
    loader = agents["warehouse-loader"]
    controls.set_autonomy(
        agent=loader, level=3, why="Trusted with the nightly loads.", actor=people["admin"]
    )
    for night in range(1, 5):
        report_outcome(
            agent=loader,
            action="database_query",
            params={"table": f"staging.orders_2026_11_{night:02d}", "count": True},
            success=True,
            duration_ms=2_400,
        )
    _fail(
        loader,
        "delete_resource",
        {"resource": "warehouse://staging/orders_2026_11"},
        "PermissionError: the partition is still attached to a live table",
        1,
    )


def _mismatch(agent: Agent, approver: User) -> None:
    """An approved call, then a receipt for other arguments: the agent is disabled."""
    asked = approvals.create_request(
        agent=agent,
        action="external_api_call",
        params={"endpoint": "https://api.semanticscholar.org/graph/v1/paper/search", "limit": 20},
        justification="Find this week's papers on agent oversight for the digest.",
        confidence=0.9,
    )
    approvals.approve_request(request_id=asked.pk, reviewer=approver)
    report_outcome(
        agent=agent,
        action="external_api_call",
        params={"endpoint": "https://api.semanticscholar.org/graph/v1/paper/batch", "limit": 5000},
        approval_request_id=asked.pk,
        success=True,
        duration_ms=5_200,
    )


def _good_record(agents: dict[str, Agent], people: dict[str, User]) -> None:
    """Two agents whose record supports a raise: requests approved unchanged and executed as
    approved, and many successes."""
    triage = agents["triage-bot"]
    controls.set_autonomy(
        agent=triage, level=3, why="First-line triage has gone well.", actor=people["admin"]
    )
    for ticket in range(5531, 5536):
        asked = approvals.create_request(
            agent=triage,
            action="write_file",
            params={"path": f"/srv/kb/drafts/ticket-{ticket}.md"},
            justification=f"Draft the answer to ticket #{ticket} for the knowledge base.",
            confidence=0.92,
        )
        approvals.approve_request(request_id=asked.pk, reviewer=people["lead"])
        report_outcome(
            agent=triage,
            action="write_file",
            params={"path": f"/srv/kb/drafts/ticket-{ticket}.md"},
            approval_request_id=asked.pk,
            success=True,
            duration_ms=310,
        )
    for ticket in range(6000, 6000 + GOOD_RECORD):
        report_outcome(
            agent=triage,
            action="database_query",
            params={"table": "tickets", "id": ticket, "columns": ["status", "plan"]},
            success=True,
            duration_ms=40 + ticket % 17,
        )
    for page in range(GOOD_RECORD):
        report_outcome(
            agent=agents["docs-bot"],
            action="read_file",
            params={"path": f"/srv/docs/guides/page-{page}.md"},
            success=True,
            duration_ms=12 + page % 7,
        )
