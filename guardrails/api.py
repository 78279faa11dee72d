"""The guardrails endpoints of the agent API (SPEC §3, §6).

`POST /api/v1/guardrails/check` is the call agents make before every action, so it is a plain
Django view, not a DRF one: DRF's request wrapping, negotiation and separate throttle round trip
cost a third of the call (measured on the bench: 0.41 of the bare view's throughput through DRF,
0.64 without it). It authenticates, validates and answers errors exactly as the DRF views do,
and the OpenAPI schema documents it from the same serializers (`CheckDocs`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.authentication import agent_or_401, request_agent
from agents.models import Agent
from agents.permissions import stopped
from approvals.binding import canonical_json
from guardrails import selectors, services
from guardrails.serializers import CheckResultSerializer, CheckSerializer, PolicyListSerializer
from oversight.api import error_answers, flatten
from oversight.api_errors import ApiError, json_error, method_not_allowed
from oversight.parsers import json_body
from oversight.throttling import Throttled


@csrf_exempt
@login_not_required
def check(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return method_not_allowed(request.method, ("POST",))
    # First with this process's copy of the caller's key, which the check's Redis round trip
    # verifies. Any other answer from a copy could rest on an agent or key changed since (a
    # stopped agent's 403, say): the key is read again from the database and the call answered
    # afresh. (A copy's 401 stands: a key's secret never changes, nor is a revocation undone.)
    for copy in (True, False):
        caller = agent_or_401(request, copy=copy)
        if isinstance(caller, JsonResponse):
            return caller
        answer, verified = _check(request, caller.agent, caller.version)
        if answer is not None and (verified or caller.version is None):
            return answer
    raise AssertionError("a key read from the database needs no verification")


def _check(
    request: HttpRequest, agent: Agent, key_copy: int | None
) -> tuple[HttpResponse | None, bool]:
    """The answer, and whether the check's Redis round trip vouched for `key_copy` (the version
    of the copy of the key `agent` came from; None: read from the database). No answer when
    the round trip found the copy out of date."""
    refusal = stopped(agent)
    if refusal is not None:
        return json_error(403, *refusal), False
    try:
        data = json_body(request)
    except ApiError as exc:
        return json_error(exc.status_code, str(exc.get_codes()), str(exc.detail)), False
    serializer = CheckSerializer(data=data)
    if not serializer.is_valid():
        fields = flatten(serializer.errors)
        message = "The request body has invalid fields."
        return json_error(400, "invalid", message, fields=fields), False
    valid = serializer.validated_data
    try:
        outcome = services.check_action(
            agent=agent,
            action=valid["action"],
            params=valid["params"],
            estimated_cost_cents=valid.get("estimated_cost_cents"),
            confidence=valid.get("confidence"),
            count_api_call=True,
            key_copy=key_copy,
        )
    except services.StaleKey:
        return None, False
    except Throttled as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        return json_error(429, "rate_limited", str(exc), headers=headers), True
    except services.InvalidParams as exc:
        return json_error(422, "invalid", str(exc), fields={"params": [str(exc)]}), False
    return JsonResponse(outcome.as_json()), True


class CheckDocs(APIView):
    """Documents `check` in the OpenAPI schema; never routed (drf-spectacular describes a view
    through its `cls`, as DRF's own `@api_view` functions carry one)."""

    @extend_schema(
        operation_id="check_action",
        summary="Check an action against the guardrails before doing it",
        description=(
            "Answers allow, deny or require_approval with every reason that applied (a deny "
            "is a normal answer that records a guardrail violation). Then: on allow, act; on "
            "require_approval, ask with POST /approval-requests; on deny, do not act. A "
            "standing approval a person granted may answer allow in their place: reason "
            "standing_approval, and grant_id names it (one of its uses is counted)."
        ),
        request=CheckSerializer,
        responses={
            200: CheckResultSerializer,
            **error_answers(400, 401, 403, 413, 415, 422, 429),
        },
        tags=["guardrails"],
    )
    def post(self, request: Request) -> Response:
        raise NotImplementedError  # pragma: no cover - documentation only


check.cls = CheckDocs  # type: ignore[attr-defined]
check.initkwargs = {}  # type: ignore[attr-defined]


@extend_schema(
    operation_id="list_policies",
    summary="The action policies that apply to the calling agent",
    parameters=[
        OpenApiParameter(
            "If-None-Match",
            str,
            OpenApiParameter.HEADER,
            description="The ETag of an earlier answer: 304 while the policies are the same.",
        )
    ],
    responses={
        200: PolicyListSerializer,
        304: OpenApiResponse(description="Not modified since the ETag given"),
        **error_answers(401, 403, 429),
    },
    tags=["guardrails"],
)
@api_view(["GET"])
def policies(request: Request) -> Response:
    agent = request_agent(request)
    body: dict[str, Any] = {
        "policies": [
            selectors.policy_json(policy) for policy in selectors.policy_set().applicable(agent)
        ],
        "unknown_actions": settings.OVERSIGHT_UNKNOWN_ACTIONS,
    }
    etag = '"' + hashlib.sha256(canonical_json(body)).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    wanted = request.headers.get("If-None-Match", "")
    if etag in {tag.strip() for tag in wanted.split(",")} or wanted.strip() == "*":
        return Response(status=304, headers=headers)
    return Response(body, headers=headers)
