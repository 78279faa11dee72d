"""Agent API endpoints about the calling agent itself."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from agents.authentication import request_agent
from agents.serializers import AgentMeSerializer
from oversight.api import error_answers


@extend_schema(
    responses={200: AgentMeSerializer, **error_answers(401, 429)},
    summary="The calling agent's status",
)
@api_view(["GET"])
def me(request: Request) -> Response:
    agent = request_agent(request)
    agent.api_key = request.auth  # type: ignore[attr-defined]
    return Response(AgentMeSerializer(agent).data)
