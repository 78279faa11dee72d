"""`manage.py set_budget (--agent NAME | --team TEAM | --global) --period PERIOD
--limit-cents N [--thresholds 80,95,100] [--mode enforce|alert-only|ask]` (SPEC §5, §11): create
or update a budget."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from agents.models import Agent
from budgets import services
from budgets.models import Mode, Period, Scope


def _thresholds(raw: str) -> list[int]:
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--thresholds {raw!r}: whole percentages, e.g. 80,95,100.") from None


class Command(BaseCommand):
    help = "Create or update the budget of an agent, a team or everything for one period."

    def add_arguments(self, parser: ArgumentParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--agent", help="the agent's name")
        target.add_argument("--team", help="the team's name")
        target.add_argument("--global", dest="everything", action="store_true", help="all agents")
        parser.add_argument("--period", required=True, choices=Period.values)
        parser.add_argument("--limit-cents", required=True, type=int)
        parser.add_argument("--thresholds", default="80,95,100", help="alert percentages")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--mode",
            choices=Mode.values,
            help=(
                "at the limit: refuse (enforce, the default), only alert (alert-only), or have "
                "a person approve each new action (ask)"
            ),
        )
        mode.add_argument(
            "--alert-only",
            action="store_true",
            help="the same as --mode alert-only",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agent = None
        if options["agent"]:
            agent = Agent.objects.filter(name__iexact=options["agent"]).first()
            if agent is None:
                raise CommandError(f"No agent named {options['agent']!r}.")
            scope = Scope.AGENT
        elif options["team"]:
            scope = Scope.TEAM
        else:
            scope = Scope.GLOBAL
        try:
            budget = services.set_budget(
                scope=scope,
                agent=agent,
                team=options["team"] or "",
                period=options["period"],
                limit_cents=options["limit_cents"],
                thresholds=_thresholds(options["thresholds"]),
                mode=options["mode"]
                or (Mode.ALERT_ONLY if options["alert_only"] else Mode.ENFORCE),
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items()
            )
            raise CommandError(problems) from exc
        self.stdout.write(
            f"{budget}: limit {budget.limit_cents} cents, alerts at "
            f"{', '.join(f'{t}%' for t in budget.thresholds)}"
            f"{'' if budget.enforce else f' ({budget.get_mode_display().lower()})'}."
        )
