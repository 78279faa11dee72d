"""Shared plumbing of the agent API: one error shape with stable machine codes.

Every error an agent can see is `{"error": {"code": ..., "message": ..., "fields": {...}}}`;
`fields` appears only on validation errors and maps each bad field to its messages.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from oversight import health
from oversight.api_errors import PayloadTooLarge, error_body, json_error, method_not_allowed
from oversight.handlers import API_PREFIX


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False)  # type: ignore[assignment]


class ErrorSerializer(serializers.Serializer):
    """The error body, for the API's schema (every endpoint's error answers)."""

    error = ErrorDetailSerializer()


def error_answers(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers an operation documents, each with the API's error body (503, which
    every operation but the health check may give, is added to all by `document_unavailable`)."""
    return {code: OpenApiResponse(ErrorSerializer) for code in statuses}


_CODES_BY_EXCEPTION: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "invalid_api_key"),
    (exceptions.ParseError, "malformed_json"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotFound, "not_found"),
    (exceptions.Throttled, "rate_limited"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.PermissionDenied, "forbidden"),
]


def flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [flatten(item) for item in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):  # raised by Django when DRF reads request.body
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = PayloadTooLarge(limit)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # Not an API exception: Django's handler500 answers (as JSON, below).
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            body = error_body("invalid", "The request body has invalid fields.", flatten(detail))
        else:
            messages = flatten(detail)
            text = "; ".join(messages) if isinstance(messages, list) else str(messages)
            body = error_body("invalid", text)
    else:
        # An exception raised with its own code (ApiError, a permission's `code`) keeps it;
        # DRF's generic ones are mapped to our vocabulary.
        own = exc.get_codes()
        if isinstance(own, str) and own != exc.default_code:
            code = own
        else:
            code = next((c for cls, c in _CODES_BY_EXCEPTION if isinstance(exc, cls)), "error")
        body = error_body(code, str(exc.detail), details=getattr(exc, "details", None))
    response.data = body
    return response


def is_api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


@csrf_exempt
@login_not_required
def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(status.HTTP_404_NOT_FOUND, "not_found", f"No such endpoint: {request.path}")


@csrf_exempt
@login_not_required
def api_health(request: HttpRequest) -> HttpResponse:
    """`/healthz` where agents reach the API (its stack, its prefix), with the API's JSON 405."""
    if request.method not in ("GET", "HEAD"):
        return method_not_allowed(request.method, ("GET", "HEAD"))
    return health.healthz(request)


def document_health(
    result: dict[str, Any], generator: Any, request: Any, public: Any
) -> dict[str, Any]:
    """drf-spectacular documents DRF views only; add the API's health check."""
    result["paths"]["/api/v1/health"] = {
        "get": {
            "operationId": "health",
            "summary": "The server answers (no key needed)",
            "tags": ["health"],
            "security": [],
            "responses": {
                "200": {
                    "description": "It does",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"status": {"type": "string", "enum": ["ok"]}},
                                "required": ["status"],
                            }
                        }
                    },
                }
            },
        }
    }
    return result


def document_unavailable(
    result: dict[str, Any], generator: Any, request: Any, public: Any
) -> dict[str, Any]:
    """Every operation that needs the database (all but the health check) may answer 503
    `database_unavailable` with Retry-After (oversight.outage)."""
    unavailable = {
        "description": "The database does not answer: retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for operations in result["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and operation.get("security") != []:
                operation.setdefault("responses", {})["503"] = unavailable
    return result


def api_bad_request(request: HttpRequest) -> JsonResponse:
    """Django's 400 for a request it refuses outright (a Host not in ALLOWED_HOSTS, ...)."""
    return json_error(
        status.HTTP_400_BAD_REQUEST,
        "bad_request",
        "Refused as unsafe (for example: a Host not served here).",
    )


def api_server_error(request: HttpRequest) -> JsonResponse:
    return json_error(
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "server_error",
        "Something went wrong on our side; it has been logged.",
    )
