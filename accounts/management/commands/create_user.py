"""`manage.py create_user USERNAME --password P [--role ROLE ...] [--tier TIER]` (SPEC §11)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts import services
from accounts.models import Role, Tier


class Command(BaseCommand):
    help = "Create a person with roles (and an approver tier)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument(
            "--role", action="append", default=[], choices=Role.values, dest="roles"
        )
        parser.add_argument("--tier", default="", choices=Tier.values)
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            user = services.create_user(
                username=options["username"],
                password=options["password"],
                roles=options["roles"],
                tier=options["tier"],
                email=options["email"],
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()
            )
            raise CommandError(problems) from exc
        roles = ", ".join(sorted(user.role_names)) or "no roles"
        tier = f", tier {user.tier}" if user.tier else ""
        self.stdout.write(f"Created user {user.username} ({roles}{tier}).")
