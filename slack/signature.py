"""Slack's request signatures (v0), checked on every interaction before anything is read.

Slack signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with the app's signing secret
(HMAC-SHA256) and sends `X-Slack-Signature: v0=<hex>`. A request is accepted when the signature
matches (compared in constant time) and its timestamp is within five minutes of now; within
that window a replay carries the same signature, and `slack.views` refuses a signature it has
seen (`SlackInteraction`). Pure functions: the caller passes the clock.
"""

from __future__ import annotations

import hashlib
import hmac

WINDOW_SECONDS = 5 * 60


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def problem(
    *, secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float
) -> str | None:
    """Why the request is refused, or None when it is Slack's and fresh."""
    if not timestamp or not signature:
        return "missing signature"
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "malformed timestamp"
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        return "stale timestamp"
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        return "bad signature"
    return None
