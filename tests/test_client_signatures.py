"""The Python client's check of a callback's signature, against what the server sends."""

from __future__ import annotations

import json

import pytest

from approvals.callbacks import signature_header
from oversight_client import InvalidSignature, verify_callback

NEW, OLD = "whsec_new-secret", "whsec_old-secret"
BODY = json.dumps({"id": "5f0c", "status": "approved"}).encode()
NOW = 1_800_000_000


def signed(*secrets: str, timestamp: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {
        "X-Oversight-Timestamp": str(timestamp),
        "X-Oversight-Signature": signature_header(list(secrets), timestamp, body),
    }


def test_a_callback_signed_with_the_secret_is_accepted_and_its_body_returned():
    assert verify_callback(body=BODY, headers=signed(NEW), secret=NEW, now=NOW) == json.loads(BODY)


def test_during_a_rotation_either_secret_is_accepted():
    headers = signed(NEW, OLD)
    assert headers["X-Oversight-Signature"].count("sha256=") == 2
    for secret in (NEW, OLD):
        verify_callback(body=BODY, headers=headers, secret=secret, now=NOW)
    with pytest.raises(InvalidSignature):
        verify_callback(body=BODY, headers=headers, secret="whsec_someone-else", now=NOW)


def test_header_names_are_matched_whatever_their_case():
    headers = {name.lower(): value for name, value in signed(NEW).items()}
    verify_callback(body=BODY, headers=headers, secret=NEW, now=NOW)


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (signed(NEW), BODY.replace(b"approved", b"rejected"), NOW),  # body changed
        (signed(OLD), BODY, NOW),  # another secret
        (signed(NEW), BODY, NOW + 301),  # too old: a replay
        (signed(NEW), BODY, NOW - 301),  # from the future
        ({"X-Oversight-Signature": signed(NEW)["X-Oversight-Signature"]}, BODY, NOW),
        ({"X-Oversight-Timestamp": str(NOW)}, BODY, NOW),
        ({**signed(NEW), "X-Oversight-Timestamp": "soon"}, BODY, NOW),
        ({**signed(NEW), "X-Oversight-Signature": "md5=abc"}, BODY, NOW),
        # Found by review: non-ASCII made compare_digest raise TypeError, not InvalidSignature.
        ({**signed(NEW), "X-Oversight-Signature": "sha256=\u00e9"}, BODY, NOW),
    ],
)
def test_anything_else_is_refused(headers, body, now):
    with pytest.raises(InvalidSignature):
        verify_callback(body=body, headers=headers, secret=NEW, now=now)
