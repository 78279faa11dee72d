"""The approval-requests endpoints of the agent API (SPEC §3).

Create, list and cancel are DRF views. Reading one request is a plain async Django view: with
`?wait=N` it holds the response until the request leaves `pending`, and an await costs no
thread, so hundreds of waiting agents do not starve the other requests.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from agents.authentication import agent_or_401, request_agent
from agents.models import Agent, ApiKey
from agents.permissions import ReadsOwnRequests
from approvals import idempotency, selectors, services
from approvals.models import ApprovalRequest, Status, Vote
from approvals.representation import represent
from approvals.serializers import (
    ApprovalRequestPageSerializer,
    ApprovalRequestSerializer,
    CreateRequestSerializer,
)
from approvals.waiters import hub
from oversight.api import error_answers
from oversight.api_errors import ApiError, json_error, method_not_allowed
from oversight.handlers import database_call, threadless
from oversight.throttling import AgentRateThrottle

MAX_WAIT_SECONDS = 60
# Seconds a long-poll refused for too many waiters is told to wait (Retry-After).
WAITERS_RETRY_AFTER = 5
ERRORS = error_answers(400, 401, 403, 404, 409, 413, 415, 422, 429)


def _api_error(exc: services.ApprovalError) -> ApiError:
    details = exc.details if isinstance(exc, services.GuardrailDenied) else None
    return ApiError(status_code=exc.status, code=exc.code, message=exc.message, details=details)


class NewestFirst(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"

    def decode_cursor(self, request: Request) -> Cursor | None:
        """A cursor that this API did not hand out is a 400: DRF answers 404 when it does not
        decode, and a position that is not a time would fail in the query (a 500)."""
        try:
            cursor = super().decode_cursor(request)
            position = cursor.position if cursor is not None else None
            if position is not None and parse_datetime(str(position)) is None:
                raise ValueError(position)
        except (exceptions.NotFound, ValueError):
            raise exceptions.ValidationError(
                {"cursor": ["Not a cursor of this list: follow a page's next or previous link."]}
            ) from None
        return cursor


@extend_schema(
    methods=["POST"],
    operation_id="create_approval_request",
    summary="Ask for approval",
    request=CreateRequestSerializer,
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Same key + same body returns the first response; kept at least 24 h.",
        )
    ],
    responses={201: ApprovalRequestSerializer, 200: ApprovalRequestSerializer, **ERRORS},
)
@extend_schema(
    methods=["GET"],
    operation_id="list_approval_requests",
    summary="The agent's own requests, newest first",
    parameters=[
        OpenApiParameter("status", str, enum=Status.values),
        OpenApiParameter("page_size", int, description="1-200; 50 unless given."),
        OpenApiParameter("cursor", str, description="From a page's `next` or `previous` link."),
    ],
    responses={200: ApprovalRequestPageSerializer, **ERRORS},
)
@api_view(["GET", "POST"])
@permission_classes([ReadsOwnRequests])
def approval_requests(request: Request) -> Response:
    if request.method == "POST":
        return _create(request)
    return _list(request)


def _create(request: Request) -> Response:
    agent = request_agent(request)
    api_key = request.auth
    assert isinstance(api_key, ApiKey)
    key = request.headers.get("Idempotency-Key")
    serializer = CreateRequestSerializer(data=request.data)
    if not serializer.is_valid():
        if key is not None:
            idempotency.refuse_reuse(api_key=api_key, key=key, body=request.data)
        raise exceptions.ValidationError(serializer.errors)
    data = serializer.validated_data

    claim = None
    if key is not None:
        claimed = idempotency.claim(api_key=api_key, key=key, body=request.data)
        if isinstance(claimed, tuple):
            replay_status, replay_body = claimed
            headers = {"Idempotent-Replayed": "true"}
            if replay_status == status.HTTP_201_CREATED:
                headers["Location"] = _location(replay_body["id"])
            return Response(replay_body, status=replay_status, headers=headers)
        claim = claimed

    def complete(created: ApprovalRequest) -> None:
        # In the create's transaction (before its audit append, whose lock is held to COMMIT):
        # the key's record commits with the request or not at all.
        if claim is not None:
            idempotency.complete(
                claim,
                request=created,
                status_code=status.HTTP_201_CREATED,
                body=represent(created, votes=[]),
            )

    try:
        # Not inside a transaction of ours: a create the guardrails refuse keeps its violation.
        created = services.create_request(
            agent=agent,
            action=data["action"],
            params=data["params"],
            risk_level=data.get("risk_level"),
            urgency=data["urgency"],
            justification=data["justification"],
            confidence=data.get("confidence"),
            estimated_cost_cents=data.get("estimated_cost_cents"),
            timeout_seconds=data.get("timeout_seconds"),
            callback_url=data["callback_url"],
            before_commit=complete,
        )
    except BaseException as exc:
        # A failed create gives its key back, so the agent can retry it with a fixed body.
        if claim is not None:
            idempotency.release(claim)
        if isinstance(exc, services.ApprovalError):
            raise _api_error(exc) from exc
        raise
    body = represent(created, votes=[])
    return Response(
        body,
        status=status.HTTP_201_CREATED,
        headers={"Location": _location(created.pk)},
    )


def _location(request_id: object) -> str:
    return f"/api/v1/approval-requests/{request_id}"


def _list(request: Request) -> Response:
    agent = request_agent(request)
    queryset = selectors.requests_of(agent)
    wanted = request.query_params.get("status")
    if wanted:
        if wanted not in Status.values:
            raise exceptions.ValidationError(
                {"status": [f"Choose from {', '.join(Status.values)}."]}
            )
        # An overdue pending request reads as expired (SPEC §2), so it is listed as one.
        overdue = Q(status=Status.PENDING, expires_at__lte=timezone.now())
        if wanted == Status.PENDING:
            queryset = queryset.filter(status=wanted).exclude(overdue)
        elif wanted == Status.EXPIRED:
            queryset = queryset.filter(Q(status=wanted) | overdue)
        else:
            queryset = queryset.filter(status=wanted)
    paginator = NewestFirst()
    page = paginator.paginate_queryset(queryset, request) or []
    votes: dict[uuid.UUID, list[Vote]] = {}
    for vote in (
        Vote.objects.filter(request__in=[r.pk for r in page])
        .select_related("voter")
        .order_by("created_at")
    ):
        votes.setdefault(vote.request_id, []).append(vote)
    return paginator.get_paginated_response([represent(r, votes=votes.get(r.pk, [])) for r in page])


@extend_schema(
    operation_id="cancel_approval_request",
    summary="Withdraw a pending request",
    request=None,
    responses={200: ApprovalRequestSerializer, **ERRORS},
)
@api_view(["POST"])
def cancel(request: Request, request_id: uuid.UUID) -> Response:
    agent = request_agent(request)
    try:
        cancelled = services.cancel_request(request_id=request_id, agent=agent)
    except ApprovalRequest.DoesNotExist:
        raise exceptions.NotFound("No such approval request.") from None
    except services.ApprovalError as exc:
        raise _api_error(exc) from exc
    return Response(represent(cancelled))


# --- read one, with long-poll -----------------------------------------------------------------


def _authenticate(request: HttpRequest) -> Agent | JsonResponse:
    try:
        return _authenticate_once(request)
    finally:
        _release_connection()


def _authenticate_once(request: HttpRequest) -> Agent | JsonResponse:
    caller = agent_or_401(request)
    if isinstance(caller, JsonResponse):
        return caller
    agent = caller.agent
    throttle = AgentRateThrottle()
    request.user = agent  # type: ignore[assignment]
    if not throttle.allow_request(request, None):
        wait = int(throttle.wait())
        return json_error(
            429,
            "rate_limited",
            f"Too many calls; retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    # Paused and disabled agents may still read their own requests (SPEC §6).
    return agent


def _release_connection() -> None:
    """Give the connection back (to the pool) between reads: a waiting agent holds none.
    Inside a transaction (tests wrap each one in one) there is nothing to give back."""
    if not connection.in_atomic_block:
        connection.close()


def _read(agent: Agent, request_id: uuid.UUID) -> tuple[dict[str, Any], bool, datetime] | None:
    try:
        return _read_once(agent, request_id)
    finally:
        _release_connection()


def _read_once(agent: Agent, request_id: uuid.UUID) -> tuple[dict[str, Any], bool, datetime] | None:
    found = selectors.requests_of(agent).filter(pk=request_id).first()
    if found is None:
        return None
    # An overdue request reads as expired (`represent`); a read changes nothing: the timers
    # expire it in the database (with its audit event and callback) within a second.
    pending = found.status == Status.PENDING and not found.is_overdue()
    return represent(found), pending, found.expires_at


@csrf_exempt
@login_not_required
@threadless
async def approval_request_detail(request: HttpRequest, request_id: uuid.UUID) -> JsonResponse:
    if request.method != "GET":
        return method_not_allowed(request.method, ("GET",))
    arrived = time.monotonic()  # the wait counts from here, not from after authentication
    raw_wait = request.GET.get("wait", "0")
    waiters = hub()
    # A full server refuses before any database work: in a burst of thousands of waiters, the
    # refused ones cost next to nothing.
    if raw_wait not in ("", "0") and (refusal := waiters.refusal(None)):
        return _too_many_waiting(refusal)
    # Each database step hands its connection back when done, and the request has no thread of
    # its own (`threadless`): a waiting agent holds an await on the waiter hub, nothing more.
    authenticated = await database_call(_authenticate)(request)
    if isinstance(authenticated, JsonResponse):
        return authenticated
    agent = authenticated
    # ASCII digits only: str.isdigit() accepts "²", which int() refuses.
    if not re.fullmatch(r"[0-9]{1,2}", raw_wait) or int(raw_wait) > MAX_WAIT_SECONDS:
        return json_error(
            400,
            "invalid",
            "The request has invalid fields.",
            fields={"wait": [f"A whole number from 0 to {MAX_WAIT_SECONDS}."]},
        )
    deadline = arrived + int(raw_wait)
    if int(raw_wait) and (refusal := waiters.refusal(agent.pk)):
        return _too_many_waiting(refusal)
    with waiters.watch(str(request_id), agent.pk) as watch:
        while True:
            result = await waiters.read(watch, lambda: database_call(_read)(agent, request_id))
            if result is None:
                return json_error(404, "not_found", "No such approval request.")
            body, pending, expires_at = result
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                return JsonResponse(body)
            # Wake at the deadline at the latest: an expiry needs no message to be seen.
            until_expiry = (expires_at - timezone.now()).total_seconds() + 0.01
            await waiters.wait(watch.event, max(0.0, min(remaining, until_expiry)))


def _too_many_waiting(refusal: str) -> JsonResponse:
    return json_error(
        429, "too_many_waiting", refusal, headers={"Retry-After": str(WAITERS_RETRY_AFTER)}
    )


def document_async_endpoints(
    result: dict[str, Any], generator: Any, request: Any, public: Any
) -> dict[str, Any]:
    """drf-spectacular documents DRF views only; add the async read/long-poll endpoint."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    result["paths"]["/api/v1/approval-requests/{id}"] = {
        "get": {
            "operationId": "get_approval_request",
            "summary": "Read one request; with ?wait=N, wait up to N seconds for the decision",
            "tags": ["approval-requests"],
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                },
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "description": "Answer when the request leaves pending, or after N s.",
                    "schema": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_WAIT_SECONDS,
                        "default": 0,
                    },
                },
            ],
            "security": [{"ApiKey": []}],
            "responses": {
                "200": {
                    "description": "The request",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ApprovalRequest"}
                        }
                    },
                },
                **{
                    str(code): {"description": "Error", "content": error}
                    for code in (400, 401, 404, 429)
                },
            },
        }
    }
    return result
