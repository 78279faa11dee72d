"""`manage.py create_agent NAME [--owner USERNAME] [--team TEAM]` (SPEC §11).

Prints the new API key alone on the last line of stdout, so scripts can take it with `tail -1`,
and the agent's webhook secret alone on the line before (`tail -2 | head -1`).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from agents import services


class Command(BaseCommand):
    help = "Register an agent; print its webhook secret and first API key (shown once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner", default=None, help="username of the responsible person")
        parser.add_argument("--team", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = None
        if options["owner"]:
            owner = User.objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(f"No user named {options['owner']!r}.")
        try:
            with transaction.atomic():
                agent, webhook_secret = services.create_agent(
                    name=options["name"], owner=owner, team=options["team"]
                )
                _, plaintext = services.issue_api_key(agent=agent, label="created by create_agent")
        except ValidationError as exc:
            problems = "; ".join(" ".join(msgs) for msgs in exc.message_dict.values())
            raise CommandError(problems) from exc
        self.stderr.write(
            f"Created agent {agent.name}. Its webhook secret (it signs the agent's callbacks) "
            "and its API key are shown once, below, in that order:"
        )
        self.stdout.write(webhook_secret)
        self.stdout.write(plaintext)
