"""Who may call the agent API: an authenticated, active agent.

Paused and disabled agents get 403 with a stable code on every call, except on views that set
`allow_stopped_agents = True` (reading their own requests, SPEC §6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from agents.models import Agent, AgentStatus

if TYPE_CHECKING:  # DRF imports this module while its own views module is half-loaded
    from rest_framework.request import Request
    from rest_framework.views import APIView


class IsActiveAgent(BasePermission):
    def has_permission(self, request: Request, view: APIView) -> bool:
        agent = request.user
        if not isinstance(agent, Agent):
            raise exceptions.NotAuthenticated("Send `Authorization: Bearer <api key>`.")
        if agent.status == AgentStatus.ACTIVE or getattr(view, "allow_stopped_agents", False):
            return True
        reason = f" Reason: {agent.status_reason}" if agent.status_reason else ""
        if agent.status == AgentStatus.PAUSED:
            raise exceptions.PermissionDenied(
                f"Agent {agent.name} is paused.{reason}", code="agent_paused"
            )
        raise exceptions.PermissionDenied(
            f"Agent {agent.name} is disabled (kill switch).{reason}", code="agent_disabled"
        )
