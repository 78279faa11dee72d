"""Schemathesis fuzzes every operation of the published OpenAPI schema against the real server
(SPEC §9.7): whatever it sends, in or out of the schema, the answer is never a 5xx.

The schema is read from the running server, so an endpoint added later is fuzzed without
touching this file. Each call carries a live agent key (otherwise every call would stop at 401).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 40


def fuzz(operation: Any, base_url: str, headers: dict[str, str]) -> int:
    """Call one operation with generated cases until Hypothesis is done; return the count."""
    calls = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        nonlocal calls
        calls += 1
        if case.query and "wait" in case.query:
            case.query["wait"] = 0  # a waiting read of a pending request holds up to 60 s
        case.call_and_validate(
            base_url=base_url, headers=headers, checks=[not_a_server_error], timeout=30
        )

    call()
    return calls


def test_no_input_to_any_operation_gets_a_server_error(web_server: Any, make_agent: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{web_server.url}/api/v1/schema/?format=json")
    headers = {"Authorization": f"Bearer {make_agent().key}"}
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        calls[f"{operation.method.upper()} {operation.path}"] = fuzz(
            operation, web_server.url, headers
        )
    # The schema really lists the agent API, and each operation was called many times.
    assert {"POST /api/v1/approval-requests", "GET /api/v1/approval-requests/{id}"} <= set(calls)
    # The health check takes no input at all (no parameter, body or key): one call is all there
    # is to send it.
    assert calls.pop("GET /api/v1/health") >= 1
    assert min(calls.values()) >= 10, calls
