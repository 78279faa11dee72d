"""`manage.py seed_demo`: demo people with every role and tier, agents, their requests, checks,
agent-control states and spend (SPEC §11)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services as people
from accounts.models import User
from agents import services as agents
from agents.models import Agent
from demo.people import DEMO_AGENTS, DEMO_PASSWORD, DEMO_PEOPLE


class Command(BaseCommand):
    help = "Create demo people and agents (the password of every demo person is printed)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when any person exists already"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and User.objects.exists():
            self.stdout.write(
                "The database has people already; not seeding the demo. API keys are shown only"
                " when made: for a new one, open the agent's page as a manager (Agents > the"
                " agent > Create API key; the demo's manager is `manager`), or run"
                " `manage.py create_agent NAME`."
            )
            return
        with transaction.atomic():
            self._seed()

    def _seed(self) -> None:
        for person in DEMO_PEOPLE:
            if User.objects.filter(username=person.username).exists():
                continue
            user = people.create_user(
                username=person.username,
                password=DEMO_PASSWORD,
                roles=person.roles,
                tier=person.tier,
                email=f"{person.username}@example.com",
                first_name=person.first_name,
                last_name=person.last_name,
                check_password=False,  # a published demo password, on purpose
            )
            if person.username == "admin":
                user.is_superuser = True
                user.save(update_fields=["is_superuser"])
            self.stdout.write(f"Demo person {person.username} ({person.summary}).")
        for name, owner, team in DEMO_AGENTS:
            if Agent.objects.filter(name=name).exists():
                continue
            agent, webhook_secret = agents.create_agent(
                name=name, owner=User.objects.get(username=owner), team=team
            )
            _, plaintext = agents.issue_api_key(agent=agent, label="demo")
            self.stdout.write(
                f"Demo agent {name} (owner {owner}), API key: {plaintext}, "
                f"webhook secret: {webhook_secret}"
            )
        self._traffic()
        self._guardrails()
        self._controls()
        self._budgets()
        self._monitoring()
        self._relief()
        self._gateway()

    def _traffic(self) -> None:
        """A few requests in every state, so the pages have something to show."""
        from approvals import services as approvals
        from approvals.models import ApprovalRequest

        if ApprovalRequest.objects.exists():
            return
        deploy_bot = Agent.objects.get(name="deploy-bot")
        support = Agent.objects.get(name="support-agent")
        director = User.objects.get(username="director")
        asks: list[dict[str, Any]] = [
            {
                "agent": deploy_bot,
                "action": "deploy_to_production",
                "params": {"service": "billing-api", "version": "2.14.0"},
                "risk_level": "high",
                "urgency": "high",
                "justification": "Ship the fix for the double-charge incident INC-2211.",
                "confidence": 0.82,
            },
            {
                "agent": deploy_bot,
                "action": "database_mutation",
                "params": {"table": "invoices", "where": "status = 'stale'"},
                "risk_level": "critical",
                "urgency": "critical",
                "justification": "Clear 1,204 stale invoices blocking the month-end close.",
                "confidence": 0.64,
            },
            {
                "agent": support,
                "action": "external_api_call",
                "params": {"endpoint": "https://api.stripe.com/v1/refunds", "amount": 4900},
                "risk_level": "medium",
                "urgency": "normal",
                "justification": "Refund a customer charged twice (ticket #5531).",
                "confidence": 0.91,
            },
            {
                "agent": support,
                "action": "database_query",
                "params": {"sql": "SELECT email FROM customers WHERE plan = 'legacy'"},
                "urgency": "normal",
                "justification": "Find the customers to tell about the legacy plan's end.",
                "confidence": 0.25,  # unsure: a person one tier higher decides
            },
            {
                "agent": support,
                "action": "write_file",
                "params": {"path": "/srv/kb/articles/reset-2fa.md"},
                "risk_level": "low",
                "urgency": "low",
                "justification": "Update the 2FA reset article with the new support flow.",
                "confidence": 0.97,
            },
        ]
        created = [approvals.create_request(**ask) for ask in asks]
        approvals.approve_request(
            request_id=created[-1].pk, reviewer=director, comment="Looks right."
        )
        self.stdout.write(
            f"Demo traffic: {len(created)} requests, one of them approved; their risks set by "
            "the policies."
        )

    def _guardrails(self) -> None:
        """A team's sensitive policy with an arguments schema, and checks that show each answer:
        allowed (nothing recorded), a sensitive read (recorded), refused (violations, and the
        repeated-violations alert they raise)."""
        from guardrails import policies as policy_changes
        from guardrails import services as guardrails
        from guardrails.models import Policy, Violation

        if Violation.objects.exists():
            return
        if not Policy.objects.filter(name="read_customer_record").exists():
            policy_changes.save_policy(
                fields={
                    "name": "read_customer_record",
                    "scope": "team",
                    "team": "customer-success",
                    "agent": "",
                    "description": "Support agents read one customer's record at a time.",
                    "category": "read",
                    "risk_level": "low",
                    "requires_approval": False,
                    "forbidden_patterns": ["card_number", "ssn"],
                    "allowed_resources": ["crm://customers/"],
                    "max_cost_cents": None,
                    "rate_limit_per_hour": 200,
                    "sensitive": True,
                    "params_schema": {
                        "type": "object",
                        "required": ["resource", "customer_id"],
                        "properties": {
                            "resource": {"type": "string"},
                            "customer_id": {"type": "integer", "minimum": 1},
                        },
                    },
                    "enabled": True,
                },
                source="demo",
            )
        deploy_bot = Agent.objects.get(name="deploy-bot")
        support = Agent.objects.get(name="support-agent")
        research = Agent.objects.get(name="research-agent")
        checks: list[tuple[Agent, str, dict[str, Any], int | None]] = [
            (deploy_bot, "read_file", {"path": "/srv/app/config/feature-flags.yml"}, None),
            (
                support,
                "read_customer_record",
                {"resource": "crm://customers/5531", "customer_id": 5531},
                None,
            ),
            (support, "read_customer_record", {"resource": "crm://exports/all"}, None),
            # The refusals are research-agent's (disabled later by its execution mismatch): critical
            # violations lower an agent's autonomy at beat's next refresh, and deploy-bot, the
            # README's agent, keeps the default level.
            (research, "read_file", {"path": "/srv/app/.env"}, None),
            (research, "run_command", {"command": "rm -rf /var/lib/postgresql"}, None),
            (research, "external_api_call", {"endpoint": "https://api.openai.com/v1/batch"}, 250),
        ]
        answers = [
            guardrails.check_action(
                agent=agent, action=action, params=params, estimated_cost_cents=cost
            ).decision
            for agent, action, params, cost in checks
        ]
        self.stdout.write(
            f"Demo checks: {answers.count('allow')} allowed, {answers.count('deny')} refused "
            "(see Policies > Violations)."
        )

    def _controls(self) -> None:
        """Every agent-control state, each through the real services (`demo.controls`). Before
        the budgets: their spend must not refuse the checks this makes."""
        from demo import controls

        controls.seed(self.stdout.write)

    def _monitoring(self) -> None:
        """30 days of history for the monitoring page, then beat's first alert evaluation."""
        from demo import monitoring

        monitoring.seed(self.stdout.write)

    def _relief(self) -> None:
        """An absence with a stand-in and a budget in ask mode (`demo.relief`)."""
        from demo import relief

        relief.seed(self.stdout.write)
        relief.seed_grant(self.stdout.write)

    def _gateway(self) -> None:
        """The MCP workspace server's policies and traffic (`demo.gateway`)."""
        from demo import gateway

        gateway.seed(self.stdout.write)

    def _budgets(self) -> None:
        """Budgets and two weeks of LLM spend, so the budgets page has a story to tell."""
        from datetime import timedelta

        from django.utils import timezone

        from budgets import services as budgets
        from budgets.models import Budget, CostRecord

        if Budget.objects.exists() or CostRecord.objects.exists():
            return
        deploy_bot = Agent.objects.get(name="deploy-bot")
        support = Agent.objects.get(name="support-agent")
        budgets.set_budget(scope="global", period="monthly", limit_cents=3_000)
        # Alert-only, so that its alerts show while deploy-bot (the README's example agent) can
        # still ask: an enforced budget it has used up would refuse all it does.
        budgets.set_budget(
            scope="team", team="platform", period="daily", limit_cents=100, mode="alert-only"
        )
        budgets.set_budget(scope="agent", agent=support, period="hourly", limit_cents=100)
        now = timezone.now()
        calls = 0
        for days_ago in range(14, -1, -1):
            for hour in range(0, 24, 3):
                at = now - timedelta(days=days_ago, hours=hour)
                if at > now:
                    continue
                budgets.record_cost(
                    agent=deploy_bot,
                    model="gpt-4" if hour % 6 == 0 else "gpt-4o",
                    input_tokens=6_000 + 400 * days_ago,
                    output_tokens=1_500,
                    success=hour != 9,
                    occurred_at=at,
                )
                budgets.record_cost(
                    agent=support,
                    model="claude-3-5-haiku-20241022" if hour % 2 else "gpt-4o-mini",
                    input_tokens=12_000,
                    output_tokens=900,
                    cached_input_tokens=4_000,
                    occurred_at=at,
                )
                calls += 2
        self.stdout.write(f"Demo budgets: 3 budgets, {calls} LLM calls over two weeks.")
