"""`POST /api/v1/costs`: an agent reports one LLM call (SPEC §3, §5)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from agents.authentication import request_agent
from budgets import services
from budgets.selectors import money
from budgets.serializers import CostRecordSerializer, CostReportSerializer
from oversight.api import error_answers
from oversight.api_errors import ApiError, IdempotencyKeyReused

MAX_KEY_LENGTH = 200


@extend_schema(
    operation_id="report_cost",
    summary="Report one LLM call's token usage; get its cost and the agent's budget states",
    request=CostReportSerializer,
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="A retried report with the same key is recorded once (200, replayed).",
        )
    ],
    responses={
        201: CostRecordSerializer,
        200: CostRecordSerializer,
        **error_answers(400, 401, 403, 413, 415, 422, 429),
    },
)
@api_view(["POST"])
def costs(request: Request) -> Response:
    agent = request_agent(request)
    key = request.headers.get("Idempotency-Key", "")
    serializer = CostReportSerializer(data=request.data)
    if not serializer.is_valid():
        # A used key was used with a valid report, so not with this one: 422, as for any other.
        if key and services.key_was_used(agent=agent, idempotency_key=key):
            raise IdempotencyKeyReused(services.IdempotencyKeyReused.MESSAGE)
        raise exceptions.ValidationError(serializer.errors)
    if len(key) > MAX_KEY_LENGTH:
        raise ApiError(
            status_code=400,
            code="invalid",
            message=f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters.",
        )
    try:
        outcome = services.record_cost(
            agent=agent, idempotency_key=key, **serializer.validated_data
        )
    except services.IdempotencyKeyReused as exc:
        raise IdempotencyKeyReused(str(exc)) from exc
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Response(
        represent(outcome),
        status=status.HTTP_200_OK if outcome.replayed else status.HTTP_201_CREATED,
        headers=headers,
    )


def represent(outcome: services.CostOutcome) -> dict[str, Any]:
    record = outcome.record
    return {
        "id": record.pk,
        "model": record.model,
        "cost_cents": money(record.cost_cents),
        "unknown_model": record.unknown_model,
        "price_effective_from": record.price.effective_from.isoformat() if record.price else None,
        "created_at": record.created_at.isoformat(),
        "budgets": [state.as_json() for state in outcome.budgets],
    }
