"""Property-based: whatever an agent sends to create, the answer is never a 500 (SPEC §9.7)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import api_stack_client

URL = "/api/v1/approval-requests"
FIELDS = [
    "action", "params", "risk_level", "urgency", "justification", "confidence",
    "estimated_cost_cents", "timeout_seconds", "callback_url",
]  # fmt: skip

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
plausible = {
    "action": st.text(max_size=250) | json_values,
    "params": st.dictionaries(st.text(max_size=10), json_values, max_size=5)
    | st.dictionaries(st.text(max_size=5), st.floats() | st.integers() | st.text(), max_size=3)
    | json_values,
    "risk_level": st.sampled_from(["low", "medium", "high", "critical", "LOW", ""]) | json_values,
    "urgency": st.sampled_from(["low", "normal", "high", "critical", "soon"]) | json_values,
    "justification": st.text(max_size=50) | json_values,
    "confidence": st.floats(allow_nan=False) | json_values,
    "estimated_cost_cents": st.integers() | json_values,
    "timeout_seconds": st.integers(min_value=-10, max_value=10**20) | json_values,
    "callback_url": st.sampled_from(["https://example.com/hook", "not a url", "ftp://x", ""])
    | json_values,
}
VALID: dict[str, object] = {
    "action": "deploy_to_production",
    "params": {"service": "api"},
    "risk_level": "medium",
    "justification": "fuzz",
}


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, object]:
    """A valid body with up to two fields replaced by anything plausible, or one dropped, so
    most examples get past validation and reach the services and the database."""
    body: dict[str, object] = dict(VALID)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        body[name] = draw(plausible[name])
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        body.pop(draw(st.sampled_from(sorted(body))))
    return body


bodies = (
    mutated()
    | st.fixed_dictionaries({}, optional={name: plausible[name] for name in FIELDS})
    | json_values
)


# Every status the create fuzzing saw; the last test checks it reached the services.
statuses: set[int] = set()


@pytest.fixture(scope="module")
def fuzz_key(django_db_setup, django_db_blocker):
    from agents import services

    with django_db_blocker.unblock():
        agent, _ = services.create_agent(name="fuzz-agent")
        _, key = services.issue_api_key(agent=agent)
    yield key
    with django_db_blocker.unblock():
        from agents.models import Agent
        from approvals.models import ApprovalRequest

        ApprovalRequest.objects.filter(agent__name="fuzz-agent").delete()
        Agent.objects.filter(name="fuzz-agent").delete()


@pytest.mark.django_db
@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, idempotency=st.none() | st.text(max_size=300))
def test_create_never_answers_500(fuzz_key, body, idempotency):
    headers = {"Authorization": f"Bearer {fuzz_key}"}
    if idempotency is not None and all(32 <= ord(c) < 127 for c in idempotency):
        headers["Idempotency-Key"] = idempotency
    response = api_stack_client().post(
        URL, data=json.dumps(body), content_type="application/json", headers=headers
    )
    assert response.status_code in {200, 201, 400, 403, 409, 413, 422, 429}, response.content
    assert "error" in response.json() or response.status_code in {200, 201}
    statuses.add(response.status_code)


@pytest.mark.django_db
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_answer_500(fuzz_key, raw):
    response = api_stack_client().post(
        URL,
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {fuzz_key}"},
    )
    assert response.status_code in {400, 201, 422}, response.content


def test_the_fuzzing_reached_the_services():
    """Guard against a fuzz test that only ever meets the validator."""
    assert 201 in statuses, statuses
