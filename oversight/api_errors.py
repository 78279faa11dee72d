"""The agent API's error type and body shape (no DRF views imported: settings point here)."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions, status


class ApiError(exceptions.APIException):
    """An API error with an explicit status and stable code, raised by views and services.
    `details` go into the error object beside code and message (e.g. a refusal's reasons)."""

    def __init__(
        self, *, status_code: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.status_code = status_code
        self.details = details or {}
        super().__init__(detail=message, code=code)


def error_body(
    code: str,
    message: str,
    fields: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    error.update(details or {})
    return {"error": error}


def json_error(
    status_code: int,
    code: str,
    message: str,
    *,
    fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """The error body as a response, for the API's views that are not DRF's."""
    return JsonResponse(error_body(code, message, fields), status=status_code, headers=headers)


def method_not_allowed(method: str | None, allowed: tuple[str, ...]) -> JsonResponse:
    return json_error(
        status.HTTP_405_METHOD_NOT_ALLOWED,
        "method_not_allowed",
        f'Method "{method}" not allowed.',
        headers={"Allow": ", ".join(allowed)},
    )


class IdempotencyKeyReused(ApiError):
    """422: this Idempotency-Key came with another body before (SPEC §3)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            code="idempotency_key_reused",
            message=message,
        )


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            code="payload_too_large",
            message=f"The request body is larger than {limit} bytes.",
        )
