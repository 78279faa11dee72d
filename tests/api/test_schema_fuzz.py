"""Schemathesis fuzzes every operation of the published OpenAPI schema against the real server
(SPEC §9.7): whatever it sends, in or out of the schema, the answer is never a 5xx.

The schema is read from the running server, so an endpoint added later is fuzzed without
touching this file. Each call carries a live agent key (otherwise every call would stop at 401).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
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
            base_url=base_url,
            headers=headers,
            checks=[
                not_a_server_error,
                response_schema_conformance,
                status_code_conformance,
                content_type_conformance,
            ],
            timeout=30,
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


def test_every_answer_of_every_operation_matches_the_published_schema(
    web_server: Any, make_agent: Any
) -> None:
    """The schema is written by hand beside the code that answers (serializers for the docs,
    `represent` and plain views for the data): each operation's answers, successes and errors,
    taken from the real server, must be documented under their status and match its schema."""
    schema = schemathesis.openapi.from_url(f"{web_server.url}/api/v1/schema/?format=json")
    agent = make_agent()
    key = {"Authorization": f"Bearer {agent.key}"}
    client = httpx.Client(base_url=web_server.url, timeout=30)
    seen: dict[str, set[int]] = {}

    def call(method: str, path: str, template: str | None = None, **kwargs: Any) -> Any:
        response = client.request(method, path, **kwargs)
        operation = schema[template or path][method]
        documented = operation.definition.raw["responses"]
        assert str(response.status_code) in documented, (method, path, response.status_code)
        operation.validate_response(response)
        seen.setdefault(f"{method} {template or path}", set()).add(response.status_code)
        return response

    requests_path = "/api/v1/approval-requests"
    one = f"{requests_path}/{{id}}"
    cancel = f"{requests_path}/{{request_id}}/cancel"
    ask = {"action": "write_file", "params": {"path": "/srv/a"}, "justification": "why"}

    call("GET", "/api/v1/health")
    call("GET", "/api/v1/agents/me", headers=key)
    call("GET", "/api/v1/agents/me")
    for body in (
        {"action": "read_file", "params": {"path": "/srv/a"}},
        {"action": "read_file", "params": {"path": "/srv/.env"}},
        {"action": "write_file", "params": {"path": "/srv/a"}},
        {"action": ""},
    ):
        call("POST", "/api/v1/guardrails/check", json=body, headers=key)
    call("POST", "/api/v1/guardrails/check", json={"action": "read_file"})
    call("POST", "/api/v1/guardrails/check", content=b"x", headers=key)
    policies = call("GET", "/api/v1/policies", headers=key)
    call("GET", "/api/v1/policies", headers={**key, "If-None-Match": policies.headers["ETag"]})

    created = call("POST", requests_path, json=ask, headers={**key, "Idempotency-Key": "k1"})
    call("POST", requests_path, json=ask, headers={**key, "Idempotency-Key": "k1"})
    call("POST", requests_path, json={**ask, "justification": ""}, headers=key)
    refused = {**ask, "action": "run_command", "params": {"command": "rm -rf /"}}
    assert call("POST", requests_path, json=refused, headers=key).status_code == 403
    call("POST", requests_path, json=ask)
    call("GET", requests_path, headers=key)
    call("GET", requests_path, params={"status": "nonsense"}, headers=key)
    request_id = created.json()["id"]
    call("GET", f"{requests_path}/{request_id}", one, headers=key)
    call("GET", f"{requests_path}/{uuid.uuid4()}", one, headers=key)
    call("POST", f"{requests_path}/{request_id}/cancel", cancel, json={}, headers=key)
    call("POST", f"{requests_path}/{request_id}/cancel", cancel, json={}, headers=key)
    call("GET", f"{requests_path}/{request_id}", one, headers=key)  # with its decision now

    cost = {"model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 5}
    call("POST", "/api/v1/costs", json=cost, headers={**key, "Idempotency-Key": "c1"})
    call("POST", "/api/v1/costs", json=cost, headers={**key, "Idempotency-Key": "c1"})
    call("POST", "/api/v1/costs", json={"model": "no-such-model"}, headers=key)

    outcomes = "/api/v1/outcomes"
    done = {"action": "read_file", "params": {"path": "/srv/a"}, "success": True}
    call("POST", outcomes, json=done, headers={**key, "Idempotency-Key": "o1"})
    call("POST", outcomes, json=done, headers={**key, "Idempotency-Key": "o1"})
    call("POST", outcomes, json={"action": "read_file", "success": True}, headers=key)
    call("POST", outcomes, json={**done, "approval_request_id": str(uuid.uuid4())}, headers=key)
    # Executing the cancelled request: a mismatch, recorded, and the agent is disabled.
    call("POST", outcomes, json={**done, "approval_request_id": request_id}, headers=key)
    call("POST", outcomes, json=done, headers=key)

    every = {
        f"{method.upper()} {result.ok().path}"
        for result in schema.get_all_operations()
        if isinstance(result, Ok)
        for method in [result.ok().method]
    }
    assert set(seen) == every, "each operation is called"
    assert seen[f"POST {requests_path}"] == {201, 400, 401, 403}
    assert seen[f"POST {cancel}"] == {200, 409}
    assert seen[f"POST {outcomes}"] == {201, 400, 403, 404, 409}
