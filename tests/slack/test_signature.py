"""Slack's v0 signature check, as a table of cases (a pure function: the clock is passed)."""

from __future__ import annotations

import pytest

from slack.signature import WINDOW_SECONDS, problem, sign
from tests.support.slack import signed_headers

SECRET = "s3cret"
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
NOW = 1_700_000_000


def _check(*, timestamp: str | None, signature: str | None, body: bytes = BODY) -> str | None:
    return problem(secret=SECRET, timestamp=timestamp, signature=signature, body=body, now=NOW)


def test_a_signature_made_as_slack_documents_it_verifies() -> None:
    """Made independently of the module (tests/support/slack.py, from Slack's docs)."""
    headers = signed_headers(BODY, secret=SECRET, timestamp=NOW)
    assert headers["X-Slack-Signature"] == sign(SECRET, str(NOW), BODY)
    assert (
        _check(
            timestamp=headers["X-Slack-Request-Timestamp"], signature=headers["X-Slack-Signature"]
        )
        is None
    )


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "expected"),
    [
        (str(NOW), sign(SECRET, str(NOW), BODY), BODY, None),
        (str(NOW - WINDOW_SECONDS), sign(SECRET, str(NOW - WINDOW_SECONDS), BODY), BODY, None),
        (str(NOW + 60), sign(SECRET, str(NOW + 60), BODY), BODY, None),  # a clock a little fast
        (
            str(NOW - WINDOW_SECONDS - 1),
            sign(SECRET, str(NOW - 301), BODY),
            BODY,
            "stale timestamp",
        ),
        (
            str(NOW + WINDOW_SECONDS + 1),
            sign(SECRET, str(NOW + 301), BODY),
            BODY,
            "stale timestamp",
        ),
        (str(NOW), sign("another secret", str(NOW), BODY), BODY, "bad signature"),
        (str(NOW), sign(SECRET, str(NOW), BODY), BODY + b"x", "bad signature"),  # body changed
        (str(NOW), sign(SECRET, str(NOW - 1), BODY), BODY, "bad signature"),  # stamp changed
        (str(NOW), "v1=" + sign(SECRET, str(NOW), BODY)[3:], BODY, "bad signature"),
        (str(NOW), sign(SECRET, str(NOW), BODY).upper(), BODY, "bad signature"),
        (str(NOW), "", BODY, "missing signature"),
        (None, sign(SECRET, str(NOW), BODY), BODY, "missing signature"),
        ("", sign(SECRET, str(NOW), BODY), BODY, "missing signature"),
        ("17e8", sign(SECRET, "17e8", BODY), BODY, "malformed timestamp"),
        ("-1", sign(SECRET, "-1", BODY), BODY, "malformed timestamp"),
        ("\uff11\uff17" + "\uff10" * 8, "v0=00", BODY, "malformed timestamp"),  # fullwidth
    ],
)
def test_signature_cases(
    timestamp: str | None, signature: str, body: bytes, expected: str | None
) -> None:
    assert _check(timestamp=timestamp, signature=signature, body=body) == expected
