"""Delivering decisions to agents' callback URLs from the outbox (SPEC §3).

A `CallbackDelivery` row is written in the transaction that finalises a request; this module
sends it through the shared outbox machinery (`oversight.outbox`: lease, backoff, sweep), and
records every attempt. Delivery is at-least-once: receivers deduplicate on
`X-Oversight-Delivery`.

Signature: `X-Oversight-Signature: sha256=<hex HMAC-SHA256(webhook secret, "<timestamp>.<body>")>`
with the Unix time in `X-Oversight-Timestamp`; a receiver refuses old timestamps (replay). After
the agent's secret is rotated, and for a grace window, the header lists two signatures,
`sha256=<new>, sha256=<old>`; a receiver accepts the callback when one of them matches.

Callbacks go only to public addresses unless configuration allows more, and to the very address
that was checked (`oversight.outbound`, SPEC §9.11).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid

from django.conf import settings
from django.db import transaction

from approvals.models import CallbackAttempt, CallbackDelivery
from oversight import outbound, outbox

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signature_header(secrets: list[str], timestamp: int, body: bytes) -> str:
    """One signature per secret, the current secret's first, as an HTTP list (`, `)."""
    return ", ".join(sign(secret, timestamp, body) for secret in secrets)


def deliver(delivery_id: uuid.UUID) -> str:
    """Attempt one due delivery; returns its status afterwards ('skipped' if not due/leased)."""
    if not outbox.take_lease(CallbackDelivery, delivery_id):
        return "skipped"
    delivery = CallbackDelivery.objects.select_related("request__agent").get(pk=delivery_id)
    body = delivery.body.encode()
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    try:  # network I/O outside any transaction
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Oversight-Callback/1",
            "X-Oversight-Delivery": str(delivery.pk),
            "X-Oversight-Timestamp": str(timestamp),
            # Signed at send time with the secrets valid then: after a rotation both the new
            # and, during its grace window, the replaced one.
            "X-Oversight-Signature": signature_header(
                delivery.request.agent.signing_secrets(), timestamp, body
            ),
        }
        # Resolved once, every address checked, and the connection made to a checked one.
        response = outbound.post(
            delivery.url,
            content=body,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            allow_private=settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE,
            allowed_networks=settings.OVERSIGHT_CALLBACK_ALLOW_NETWORKS,
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except Exception as exc:  # an unusable URL too: record it and back off, never jam the outbox
        error = f"{type(exc).__name__}: {exc}"[:2000]
    duration_ms = int((time.monotonic() - started) * 1000)

    with transaction.atomic():
        settled = outbox.settle(CallbackDelivery, delivery_id, error=error)
        CallbackAttempt.objects.create(
            delivery=settled, status_code=status_code, error=error, duration_ms=duration_ms
        )
    return settled.status
