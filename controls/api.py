"""`POST /api/v1/outcomes`: an agent reports what it did (SPEC §3, §6)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from agents.authentication import request_agent
from agents.models import Agent, AgentStatus, ApiKey
from agents.permissions import IsActiveAgent
from approvals import idempotency
from controls.models import Outcome
from controls.outcomes import OutcomeRefused, report_outcome
from controls.serializers import OutcomeResultSerializer, OutcomeSerializer
from oversight.api import error_answers
from oversight.api_errors import ApiError, error_body

MISMATCH_MESSAGE = (
    "This is not what was approved: the agent is disabled and the managers are alerted."
)


class ReportsOutcomes(IsActiveAgent):
    """A paused agent may still report what it did with an approval (evidence; a mismatch
    disables it): `report_outcome` refuses anything else of a stopped agent, with the same 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = request.user
        if isinstance(agent, Agent) and agent.status == AgentStatus.PAUSED:
            return True
        return super().has_permission(request, view)


@extend_schema(
    operation_id="report_outcome",
    summary="Report what the agent did (with an approval request: its execution receipt)",
    request=OutcomeSerializer,
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Same key + same body returns the first response; kept at least 24 h.",
        )
    ],
    responses={
        201: OutcomeResultSerializer,
        200: OutcomeResultSerializer,
        **error_answers(400, 401, 403, 404, 409, 413, 415, 422, 429),
    },
)
@api_view(["POST"])
@permission_classes([ReportsOutcomes])
def outcomes(request: Request) -> Response:
    agent = request_agent(request)
    api_key = request.auth
    assert isinstance(api_key, ApiKey)
    key = request.headers.get("Idempotency-Key")
    serializer = OutcomeSerializer(data=request.data)
    if not serializer.is_valid():
        if key is not None:
            idempotency.refuse_reuse(
                api_key=api_key, key=key, body=request.data, scope=idempotency.OUTCOMES
            )
        raise exceptions.ValidationError(serializer.errors)
    data = serializer.validated_data
    claim = None
    if key is not None:
        claimed = idempotency.claim(
            api_key=api_key, key=key, body=request.data, scope=idempotency.OUTCOMES
        )
        if isinstance(claimed, tuple):
            replay_status, replay_body = claimed
            return Response(
                replay_body, status=replay_status, headers={"Idempotent-Replayed": "true"}
            )
        claim = claimed

    def complete(outcome: Outcome) -> None:
        if claim is not None:
            code, body = _answer(outcome)
            idempotency.complete(claim, request=None, status_code=code, body=body)

    try:
        outcome = report_outcome(
            agent=agent,
            action=data["action"],
            params=data.get("params"),
            params_sha256=data.get("params_sha256"),
            approval_request_id=data.get("approval_request_id"),
            success=data["success"],
            error=data["error"],
            duration_ms=data.get("duration_ms"),
            cost_cents=data.get("cost_cents"),
            before_commit=complete,
        )
    except BaseException as exc:
        if claim is not None:
            idempotency.release(claim)
        if isinstance(exc, OutcomeRefused):
            raise ApiError(status_code=exc.status, code=exc.code, message=exc.message) from exc
        raise
    code, body = _answer(outcome)
    return Response(body, status=code)


def _answer(outcome: Outcome) -> tuple[int, dict[str, Any]]:
    """201 with the outcome, or, for a mismatched receipt (recorded all the same), 409."""
    shown = dict(OutcomeResultSerializer(outcome).data)
    if outcome.mismatched:
        return status.HTTP_409_CONFLICT, error_body(
            "execution_mismatch", MISMATCH_MESSAGE, details={"outcome": shown}
        )
    return status.HTTP_201_CREATED, shown
