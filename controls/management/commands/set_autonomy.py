"""`manage.py set_autonomy NAME LEVEL [--category CATEGORY]` (SPEC §11).

LEVEL is 0-5; `default` gives the agent the admin's default level again (overall) or lets the
category follow the overall level again (with --category). Audited (`autonomy.changed`) through
the same service as the agent's page; `--by` names the person, else the console acts.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import User
from agents.models import AUTONOMY_NAMES, Agent
from controls import services
from guardrails.models import Category


class Command(BaseCommand):
    help = "Set an agent's autonomy level (0-5, or default), overall or for one category."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("level", help="0-5, or default")
        parser.add_argument("--category", choices=Category.values, default=None)
        parser.add_argument("--by", default=None, help="username of the manager or admin")
        parser.add_argument("--reason", default="", help="why (kept in the audit trail)")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = Agent.objects.filter(name__iexact=options["name"]).first()
        if agent is None:
            raise CommandError(f"No agent named {options['name']!r}.")
        actor = None
        if options["by"]:
            actor = User.objects.filter(username=options["by"], is_active=True).first()
            if actor is None:
                raise CommandError(f"No active user named {options['by']!r}.")
        raw = options["level"].strip().lower()
        if raw == "default":
            level = None
        elif raw.isdigit() and 0 <= int(raw) <= 5:
            level = int(raw)
        else:
            raise CommandError("LEVEL is 0-5, or default.")
        category = options["category"]
        try:
            changed = services.set_autonomy(
                agent=agent,
                level=level,
                category=category,
                why=options["reason"] or "set_autonomy command",
                actor=actor,
            )
        except (ValidationError, PermissionDenied) as exc:
            raise CommandError(" ".join(getattr(exc, "messages", [str(exc)]))) from exc
        agent.refresh_from_db()
        effective = agent.autonomy_for(category)
        where = f"for {category}" if category else "overall"
        state = "is now" if changed else "was already"
        self.stdout.write(
            f"{agent.name} {state} at autonomy level {effective} ({AUTONOMY_NAMES[effective]}) "
            f"{where}."
        )
