"""Calls to Slack's Web API, through the project's outbound helper (`oversight.outbound`): every
call ends within its deadline, reads little of the answer, and goes only to addresses the
configuration allows (SPEC §9.6, §9.11).

Slack answers HTTP 200 with `{"ok": false, "error": "..."}` for most failures, and 429 with
`Retry-After` when rate-limited: both are `SlackError` here, and the outbox backs off.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from oversight import outbound


class SlackError(Exception):
    """A Web API call that did not succeed (network, HTTP status, or `ok: false`)."""


def configured() -> bool:
    """Whether the integration is on: posting needs the token, interactions the secret."""
    return bool(settings.OVERSIGHT_SLACK_BOT_TOKEN and settings.OVERSIGHT_SLACK_SIGNING_SECRET)


def call(
    method: str, arguments: dict[str, Any], *, form: bool = False, timeout: float | None = None
) -> dict[str, Any]:
    """Call `method` (`chat.postMessage`, ...) with the bot token; return Slack's answer.

    JSON bodies for the methods that take them; `form` for the read methods that take only
    form-encoded arguments (`users.info`). `timeout` shortens the attempt's deadline (an answer
    to a click must come within Slack's 3 s). Raises SlackError."""
    if form:
        content = urlencode(arguments).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        content = json.dumps(arguments).encode()
        content_type = "application/json; charset=utf-8"
    try:
        answer = outbound.post(
            f"{settings.OVERSIGHT_SLACK_API_URL}/{method}",
            content=content,
            headers={
                "Authorization": f"Bearer {settings.OVERSIGHT_SLACK_BOT_TOKEN}",
                "Content-Type": content_type,
                "User-Agent": "Oversight-Slack/1",
            },
            allow_private=settings.OVERSIGHT_SLACK_ALLOW_PRIVATE,
            timeout=timeout,
        )
    except SoftTimeLimitExceeded:
        raise  # the task's time is up: its caller records that
    except Exception as exc:  # refused address, deadline, network: all retried by the outbox
        raise SlackError(f"{method}: {type(exc).__name__}: {exc}") from exc
    if answer.status_code != 200:
        raise SlackError(f"{method}: HTTP {answer.status_code}")
    try:
        body = json.loads(answer.body)
    except ValueError as exc:
        raise SlackError(f"{method}: the answer is not JSON") from exc
    if not isinstance(body, dict) or body.get("ok") is not True:
        error = body.get("error", "unknown") if isinstance(body, dict) else "unknown"
        raise SlackError(f"{method}: {error}")
    return body
