"""Who may call the agent API: an authenticated, active agent.

Paused and disabled agents get 403 with a stable code on every call, except GETs on views that
use `ReadsOwnRequests` (reading their own requests, SPEC §6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from agents.models import Agent, AgentStatus

if TYPE_CHECKING:  # DRF imports this module while its own views module is half-loaded
    from rest_framework.request import Request
    from rest_framework.views import APIView


def stopped(agent: Agent) -> tuple[str, str] | None:
    """(code, message) of the 403 a paused or disabled agent gets; None for an active one."""
    if agent.status == AgentStatus.ACTIVE:
        return None
    reason = f" Reason: {agent.status_reason}" if agent.status_reason else ""
    if agent.status == AgentStatus.PAUSED:
        return "agent_paused", f"Agent {agent.name} is paused.{reason}"
    return "agent_disabled", f"Agent {agent.name} is disabled (kill switch).{reason}"


class IsActiveAgent(BasePermission):
    # Methods a paused or disabled agent may still use on a view with this permission.
    stopped_agents_may: tuple[str, ...] = ()

    def has_permission(self, request: Request, view: APIView) -> bool:
        agent = request.user
        if not isinstance(agent, Agent):
            raise exceptions.NotAuthenticated("Send `Authorization: Bearer <api key>`.")
        refusal = stopped(agent)
        if refusal is None or request.method in self.stopped_agents_may:
            return True
        code, message = refusal
        raise exceptions.PermissionDenied(message, code=code)


class ReadsOwnRequests(IsActiveAgent):
    """Stopped agents may still read their own requests; every other method needs an active one."""

    stopped_agents_may = ("GET",)
