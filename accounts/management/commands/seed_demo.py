"""`manage.py seed_demo`: demo people with every role and tier, and two agents (SPEC §11)."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts import services as people
from accounts.demo import DEMO_AGENTS, DEMO_PASSWORD, DEMO_PEOPLE
from accounts.models import User
from agents import services as agents
from agents.models import Agent


class Command(BaseCommand):
    help = "Create demo people and agents (the password of every demo person is printed)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when any person exists already"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_empty"] and User.objects.exists():
            self.stdout.write("The database has people already; not seeding the demo.")
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
            agent = agents.create_agent(
                name=name, owner=User.objects.get(username=owner), team=team
            )
            _, plaintext = agents.issue_api_key(agent=agent, label="demo")
            self.stdout.write(f"Demo agent {name} (owner {owner}), API key: {plaintext}")
