"""`manage.py set_agent_status NAME (active|paused|disabled) --by USER --reason TEXT` (§11).

Through the same services as the agent's page. A disabled agent runs again only when two
people agree: `active` on a disabled agent is the first person's request (audited), and the same
command by a second person confirms it.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import Role, User
from agents import services
from agents.models import Agent, AgentStatus


class Command(BaseCommand):
    help = "Pause, resume or disable (kill switch) an agent; re-enabling takes two people."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name")
        parser.add_argument("status", choices=AgentStatus.values)
        parser.add_argument("--by", required=True, help="username of the manager or admin")
        parser.add_argument("--reason", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        agent = Agent.objects.filter(name__iexact=options["name"]).first()
        if agent is None:
            raise CommandError(f"No agent named {options['name']!r}.")
        actor = User.objects.filter(username=options["by"], is_active=True).first()
        if actor is None:
            raise CommandError(f"No active user named {options['by']!r}.")
        if not (actor.has_role(Role.MANAGER) or actor.has_role(Role.ADMIN)):
            raise CommandError(f"{actor.username} is not a manager or an admin.")
        status, reason = options["status"], options["reason"]
        try:
            if agent.status == AgentStatus.DISABLED and status == AgentStatus.PAUSED:
                raise CommandError(
                    f"{agent.name} is disabled: re-enable it first (active, two people)."
                )
            if agent.status == AgentStatus.DISABLED and status == AgentStatus.ACTIVE:
                self._reenable(agent, actor, reason)
                return
            changed = services.set_agent_status(
                agent=agent, status=status, reason=reason, actor=actor
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        if changed:
            self.stdout.write(f"{agent.name} is {status}.")
        else:
            self.stdout.write(f"{agent.name} was {status} already.")

    def _reenable(self, agent: Agent, actor: User, reason: str) -> None:
        if agent.reenable_requested_by_id is None:
            services.request_reenable(agent=agent, actor=actor, reason=reason)
            self.stdout.write(
                f"Asked to re-enable {agent.name}; a second person confirms with the same command."
            )
            return
        services.confirm_reenable(agent=agent, actor=actor)
        self.stdout.write(f"{agent.name} is active again.")
