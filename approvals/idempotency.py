"""`Idempotency-Key` for creating approval requests and reporting outcomes (SPEC §3).

Same key + same body → the first response again, no second request; same key + another body →
422; same key while the first call is still in flight → 409. Keys are scoped to the API key and
kept at least 24 hours (a beat task removes them after `RETENTION`).

The claim is a row inserted under a unique constraint, so concurrent calls with one key are
settled by the database; the response is stored in the same transaction as the request it
describes, so there is never a request without its key or a key pointing at nothing.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from agents.models import ApiKey
from approvals.binding import canonical_json
from approvals.models import ApprovalRequest, IdempotencyKey
from oversight.api_errors import ApiError, IdempotencyKeyReused

RETENTION = timedelta(hours=48)
# How long a first attempt may be in flight before a retry may take over (it crashed).
IN_FLIGHT_LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255
REUSED = "This Idempotency-Key was used with a different body."


def body_digest(body: Any) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _well_formed(key: str) -> bool:
    return bool(key) and len(key) <= MAX_KEY_LENGTH and key.isprintable()


def validate_key(key: str) -> None:
    if not _well_formed(key):
        raise ApiError(
            status_code=status.HTTP_400_BAD_REQUEST,
            code="invalid_idempotency_key",
            message=f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters.",
        )


REQUESTS = "requests"
OUTCOMES = "outcomes"


def claim(
    *, api_key: ApiKey, key: str, body: Any, scope: str = REQUESTS
) -> IdempotencyKey | tuple[int, Any]:
    """Claim `key` for this call on the endpoint `scope`, or return the stored (status, body) to
    replay."""
    validate_key(key)
    try:
        digest = body_digest(body)
    except (TypeError, ValueError) as exc:  # an infinite number: no canonical form to compare
        raise ApiError(
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
            code="invalid",
            message=f"The body must be plain JSON: {exc}",
        ) from None
    for _ in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    api_key=api_key,
                    scope=scope,
                    key=key,
                    body_sha256=digest,
                    locked_until=now + IN_FLIGHT_LEASE,
                )
        except IntegrityError:
            pass
        existing = IdempotencyKey.objects.filter(api_key=api_key, scope=scope, key=key).first()
        if existing is not None:
            return _settle(existing, digest, now)
        # The holder released it (its call failed) between our insert and our read: try again.
    raise ApiError(
        status_code=status.HTTP_409_CONFLICT,
        code="idempotency_in_flight",
        message="Another call with this Idempotency-Key is changing it; retry shortly.",
    )


def refuse_reuse(*, api_key: ApiKey, key: str, body: Any, scope: str = REQUESTS) -> None:
    """For a body that failed validation: a key that was already used is a 422 all the same.

    The key's stored body was valid, so it differs from this one; answering the validation
    error instead would tell the agent to fix a body that the key can never carry. Only the
    error path pays this read; a key that is itself invalid leaves the validation error to
    answer.
    """
    if not _well_formed(key):
        return
    try:
        digest = body_digest(body)
    except (TypeError, ValueError):  # not JSON the parser made: nothing to compare
        return
    stored = IdempotencyKey.objects.filter(api_key=api_key, scope=scope, key=key).values_list(
        "body_sha256", flat=True
    )
    if any(existing != digest for existing in stored):
        raise IdempotencyKeyReused(REUSED)


def _settle(existing: IdempotencyKey, digest: str, now: Any) -> IdempotencyKey | tuple[int, Any]:
    if existing.body_sha256 != digest:
        raise IdempotencyKeyReused(REUSED)
    if existing.response_status is not None:
        return existing.response_status, existing.response_body
    taken_over = IdempotencyKey.objects.filter(
        pk=existing.pk, response_status__isnull=True, locked_until=existing.locked_until,
        locked_until__lt=now,
    ).update(locked_until=now + IN_FLIGHT_LEASE)  # fmt: skip
    if taken_over:
        existing.refresh_from_db()
        return existing
    raise ApiError(
        status_code=status.HTTP_409_CONFLICT,
        code="idempotency_in_flight",
        message="A call with this Idempotency-Key is still being processed; retry shortly.",
    )


def complete(
    row: IdempotencyKey, *, request: ApprovalRequest | None, status_code: int, body: Any
) -> None:
    """Store the response; call inside the transaction that created `request`.

    Only while this call still holds the claim: if it ran past its lease and a retry took the
    key over, this call must not create a second request, so it fails (and rolls back).
    """
    stored = IdempotencyKey.objects.filter(
        pk=row.pk, response_status__isnull=True, locked_until=row.locked_until
    ).update(request=request, response_status=status_code, response_body=body, locked_until=None)
    if not stored:
        raise ApiError(
            status_code=status.HTTP_409_CONFLICT,
            code="idempotency_in_flight",
            message="A retry with this Idempotency-Key took over this call; its answer stands.",
        )


def release(row: IdempotencyKey) -> None:
    """Forget a claim whose call failed validation, so the key can be used for a fixed body.

    Only while this call still holds it: a retry that took the key over keeps its claim."""
    IdempotencyKey.objects.filter(
        pk=row.pk, response_status__isnull=True, locked_until=row.locked_until
    ).delete()


def purge_expired() -> int:
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=timezone.now() - RETENTION).delete()
    return deleted
