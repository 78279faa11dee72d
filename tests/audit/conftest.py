"""Every test here starts from an empty audit trail, so it can count from sequence 1.

Fixtures elsewhere in the suite that commit outside a test's transaction (module- or
session-scoped ones, live servers) leave audit events behind, and nobody can delete those
(that is the point of the table). Here they are removed inside the test's own transaction,
with the triggers lifted as an attacker would, and come back when it rolls back.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from audit.models import AuditEvent
from tests.audit.db import execute, tampering, tampering_with_checkpoints


@pytest.fixture(autouse=True)
def _start_from_an_empty_trail(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not (transactional or marker or "db" in request.fixturenames):
        return
    request.getfixturevalue("transactional_db" if transactional else "db")
    if AuditEvent.objects.exists():
        with tampering():
            execute("DELETE FROM audit_auditevent")
    # The tree and checkpoints of those events go with them.
    with tampering_with_checkpoints():
        execute("DELETE FROM audit_checkpoint")
    execute("DELETE FROM audit_merklenode", "DELETE FROM audit_treestate")


# The checkpoints' signer in the audit tests: a fixed key, a folder of the test's own.
TEST_ORIGIN = "test.example/audit"


@pytest.fixture
def signing_key(settings: Any, tmp_path: Any) -> Iterator[None]:
    """A signing key and checkpoint folder of the test's own (`pytestmark` names it)."""
    from audit import signing

    settings.OVERSIGHT_AUDIT_SIGNING_KEY = base64.b64encode(b"\x07" * 32).decode()
    settings.OVERSIGHT_CHECKPOINT_DIR = str(tmp_path / "checkpoints")
    settings.OVERSIGHT_CHECKPOINT_ORIGIN = TEST_ORIGIN
    signing.signer.cache_clear()
    yield
    signing.signer.cache_clear()
