"""The approval-requests endpoints (SPEC §3): every status code an agent can rely on."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest

from agents import services as agents
from agents.models import ApiKey
from approvals import idempotency, services
from approvals.models import ApprovalRequest, IdempotencyKey
from tests.conftest import shift_into_past

URL = "/api/v1/approval-requests"
BODY = {
    "action": "run_command",  # a high-risk policy (guardrails' seed)
    "params": {"service": "api", "version": "1.2.3"},
    "risk_level": "high",
    "urgency": "high",
    "justification": "Roll out the fix for INC-42.",
    "confidence": 0.8,
    "estimated_cost_cents": 120,
}


@pytest.fixture
def agent(make_agent):
    return make_agent()


def test_create_returns_201_and_the_full_representation(db, agent, api):
    response = api(agent.key).post(URL, BODY)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert body["decision"] is None
    assert body["current_tier"] == "engineering_manager"
    assert body["required_approvals"] == 1
    assert body["escalation_level"] == 0
    assert body["created_at"].endswith("+00:00")
    assert len(body["params_sha256"]) == 64
    assert body["url"].endswith(f"/requests/{body['id']}/")
    assert response.headers["Location"] == f"{URL}/{body['id']}"


def test_read_one_and_see_the_decision(db, agent, api, approvers):
    created = api(agent.key).post(URL, BODY).json()
    services.approve_request(request_id=created["id"], reviewer=approvers["em"], comment="go")
    body = api(agent.key).get(f"{URL}/{created['id']}").json()
    assert body["status"] == "approved"
    assert body["decision"]["outcome"] == "approved"
    assert body["decision"]["decided_by"] == "t-em"
    assert body["decision"]["approved_params_sha256"] == created["params_sha256"]
    assert body["approvals"][0]["vote"] == "approve"


def test_a_modified_approval_reaches_the_agent_as_modified_params(db, agent, api, approvers):
    created = api(agent.key).post(URL, BODY).json()
    services.approve_request(
        request_id=created["id"],
        reviewer=approvers["em"],
        modified_params={"service": "api", "version": "1.2.2"},
    )
    decision = api(agent.key).get(f"{URL}/{created['id']}").json()["decision"]
    assert decision["modified_params"] == {"service": "api", "version": "1.2.2"}
    assert decision["approved_params_sha256"] != created["params_sha256"]


def test_an_overdue_request_reads_as_expired(db, agent, api):
    created = api(agent.key).post(URL, BODY).json()
    shift_into_past(created["id"], 3601)
    body = api(agent.key).get(f"{URL}/{created['id']}").json()
    assert body["status"] == "expired"
    assert body["decision"]["outcome"] == "expired"
    # A read changes nothing (issue 20): making it so in the database is the timers' work.
    assert ApprovalRequest.objects.get(pk=created["id"]).status == "pending"


def test_another_agents_request_is_404(db, agent, make_agent, api):
    created = api(agent.key).post(URL, BODY).json()
    other = make_agent()
    assert api(other.key).get(f"{URL}/{created['id']}").status_code == 404
    assert api(other.key).post(f"{URL}/{created['id']}/cancel").status_code == 404
    assert api(other.key).get(URL).json()["results"] == []


def test_list_is_the_agents_own_newest_first_and_filterable(db, agent, api, approvers):
    first = api(agent.key).post(URL, BODY).json()
    second = api(agent.key).post(URL, BODY).json()
    services.reject_request(request_id=first["id"], reviewer=approvers["em"], reason="no")
    listed = api(agent.key).get(URL).json()
    assert [r["id"] for r in listed["results"]] == [second["id"], first["id"]]
    rejected = api(agent.key).get(f"{URL}?status=rejected").json()["results"]
    assert [r["id"] for r in rejected] == [first["id"]]
    assert api(agent.key).get(f"{URL}?status=bogus").status_code == 400


def test_list_pages_with_a_cursor(db, agent, api):
    for _ in range(3):
        api(agent.key).post(URL, BODY)
    page = api(agent.key).get(f"{URL}?page_size=2").json()
    assert len(page["results"]) == 2
    rest = api(agent.key).get(page["next"].split("testserver")[1]).json()
    assert len(rest["results"]) == 1


@pytest.mark.parametrize(
    "cursor",
    ["p=garbage", "p=2020-13-45 10:00:00%2B00:00", "p=%00", "p=" + "9" * 40, "r=1&o=x", None],
)
def test_a_cursor_this_list_did_not_hand_out_is_400(db, agent, api, cursor):
    api(agent.key).post(URL, BODY)
    # A well-formed cursor around a position that is not a time used to fail in the query (500);
    # one that is not base64 at all (None) got DRF's 404.
    raw = "%%%not-base64" if cursor is None else base64.b64encode(cursor.encode()).decode()
    response = api(agent.key).get(f"{URL}?cursor={quote(raw)}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["cursor"]


def test_cancel_a_pending_request_then_409(db, agent, api):
    created = api(agent.key).post(URL, BODY).json()
    response = api(agent.key).post(f"{URL}/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = api(agent.key).post(f"{URL}/{created['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_pending"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": 5}, "action"),
        ({"params": [1, 2]}, "params"),
        ({"params": "x"}, "params"),
        ({"risk_level": "extreme"}, "risk_level"),
        ({"urgency": "asap"}, "urgency"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": "0.5"}, "confidence"),
        ({"confidence": True}, "confidence"),
        ({"estimated_cost_cents": -1}, "estimated_cost_cents"),
        ({"estimated_cost_cents": 1.5}, "estimated_cost_cents"),
        ({"estimated_cost_cents": "100"}, "estimated_cost_cents"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"callback_url": "ftp://example.com/x"}, "callback_url"),
        ({"callback_url": "https://example.com:99999/x"}, "callback_url"),
        ({"callback_url": "https://example.com:0/x"}, "callback_url"),
        ({"justification": None}, "justification"),
        ({"surprise": 1}, "surprise"),
        ({"justification": "   "}, "justification"),
    ],
)
def test_wrong_types_are_400_with_per_field_messages(db, agent, api, change, field):
    response = api(agent.key).post(URL, {**BODY, **change})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


@pytest.mark.parametrize(
    "action",
    ["deploy\nnow", "deploy\rnow", "deploy\tnow", "deploy\x85now", "deploy\u2028now", "a\x7f"],
)
def test_an_action_with_a_control_character_or_line_break_is_400(db, agent, api, settings, action):
    """The action goes into email subjects, where a line break makes the message unsendable
    (Python's mailer splits on every Unicode line break, NEL and U+2028 included)."""
    settings.OVERSIGHT_UNKNOWN_ACTIONS = "require_approval"  # a person would be asked
    response = api(agent.key).post(URL, {**BODY, "action": action})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["action"] == [
        "No control characters or line breaks (newline, tab, U+2028, ...)."
    ]
    assert not ApprovalRequest.objects.exists()


def test_the_schema_states_the_rule_for_names(db, api):
    """SPEC §9.7: generated clients keep to what the API enforces."""
    schemas = api(None).get("/api/v1/schema/?format=json").json()["components"]["schemas"]
    names = [
        schemas[name]["properties"][field]
        for name, field in [
            ("CreateRequestRequest", "action"),
            ("CheckRequest", "action"),
            ("CostReportRequest", "model"),
        ]
    ]
    assert {field["pattern"] for field in names} == {
        "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"
    }


def test_missing_required_fields_are_400(db, agent, api):
    response = api(agent.key).post(URL, {"params": {}})
    assert response.status_code == 400
    assert {"action", "justification"} <= set(response.json()["error"]["fields"])


@pytest.mark.parametrize("raw", ['{"action": ', "[1, 2", '{"action": NaN}', "\xff", "[" * 100_000])
def test_malformed_json_is_400(db, agent, api, raw):
    response = api(agent.key).post(URL, raw.encode("latin-1") if raw == "\xff" else raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"malformed_json", "invalid"}


def nested(depth: int) -> dict[str, object]:
    value: object = 1
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


@pytest.mark.parametrize("depth", [64, 1_000, 3_000])
def test_params_nested_past_the_limit_are_400_at_any_depth(db, agent, api, depth):
    # A few KiB of valid JSON that Python's decoder accepts; 1 000 levels used to overflow the
    # recursion of the checks behind it (a 500). The body's own object is one level more.
    response = api(agent.key).post(URL, {**BODY, "params": nested(depth)})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"] == "JSON nested deeper than 64 levels."


def test_params_nested_up_to_the_limit_are_accepted(db, agent, api):
    response = api(agent.key).post(URL, {**BODY, "params": nested(63)})
    assert response.status_code == 201, response.content
    assert response.json()["params"] == nested(63)


def test_a_body_over_the_limit_is_413(db, agent, api):
    big = {**BODY, "params": {"blob": "x" * 300_000}}
    response = api(agent.key).post(URL, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"urgency": "critical", "timeout_seconds": 3600}, "never lengthen"),
        ({"urgency": "high", "timeout_seconds": 3601}, "never lengthen"),
    ],
)
def test_semantic_errors_are_422(db, agent, api, change, message):
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    response = api(agent.key).post(URL, body)
    assert response.status_code == 422, response.content
    assert message in response.json()["error"]["message"]


def test_a_paused_agent_gets_403_on_create_but_may_read_its_requests(db, agent, api):
    created = api(agent.key).post(URL, BODY).json()
    agents.set_agent_status(agent=agent.agent, status="paused", reason="too many rejections")
    response = api(agent.key).post(URL, BODY)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "agent_paused"
    assert api(agent.key).get(f"{URL}/{created['id']}").status_code == 200


def test_no_key_or_a_revoked_key_is_401_on_every_endpoint(db, agent, api):
    created = api(agent.key).post(URL, BODY).json()
    for client in (api(None), api("ovs_nope")):
        assert client.post(URL, BODY).status_code == 401
        assert client.get(URL).status_code == 401
        assert client.get(f"{URL}/{created['id']}").status_code == 401
        assert client.post(f"{URL}/{created['id']}/cancel").status_code == 401


def test_unknown_ids_are_404(db, agent, api):
    assert api(agent.key).get(f"{URL}/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api(agent.key).get(f"{URL}/not-a-uuid").status_code == 404


def test_wait_must_be_0_to_60(db, agent, api):
    created = api(agent.key).post(URL, BODY).json()
    for bad in ("61", "-1", "abc"):
        response = api(agent.key).get(f"{URL}/{created['id']}?wait={bad}")
        assert response.status_code == 400
        assert "wait" in response.json()["error"]["fields"]
    # Without a key the answer is 401 whatever the query says.
    response = api(None).get(f"{URL}/{created['id']}?wait=abc")
    assert response.status_code == 401


def test_rate_limit_is_429_with_retry_after(db, agent, api, settings):
    settings.OVERSIGHT_API_RATE_LIMIT_PER_MINUTE = 2
    import redis as redis_lib

    redis_lib.Redis.from_url(settings.REDIS_URL).flushdb()
    client = api(agent.key)
    statuses = [client.get("/api/v1/agents/me").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = client.get(URL)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


# --- idempotency ---------------------------------------------------------------------------


def test_the_same_key_and_body_returns_the_first_response(db, agent, api):
    client = api(agent.key)
    first = client.post(URL, BODY, headers={"Idempotency-Key": "abc-1"})
    again = client.post(URL, BODY, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert ApprovalRequest.objects.count() == 1


def test_the_same_key_with_another_body_is_422(db, agent, api):
    client = api(agent.key)
    client.post(URL, BODY, headers={"Idempotency-Key": "abc-2"})
    response = client.post(URL, {**BODY, "urgency": "low"}, headers={"Idempotency-Key": "abc-2"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_the_same_key_with_an_invalid_body_is_422_not_a_validation_error(db, agent, api):
    client = api(agent.key)
    client.post(URL, BODY, headers={"Idempotency-Key": "abc-3"})
    response = client.post(
        URL, {**BODY, "urgency": "whenever"}, headers={"Idempotency-Key": "abc-3"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    # A fresh key with that body is the body's own error.
    fresh = client.post(URL, {**BODY, "urgency": "whenever"}, headers={"Idempotency-Key": "abc-4"})
    assert fresh.status_code == 400
    # And an unused key leaves nothing behind, so the fixed body still goes through.
    fixed = client.post(URL, BODY, headers={"Idempotency-Key": "abc-4"})
    assert fixed.status_code == 201
    assert ApprovalRequest.objects.count() == 2


def hold_key(agent, key: str) -> IdempotencyKey:
    """Claim `key` for BODY, as a create still in flight holds it."""
    claim = idempotency.claim(api_key=ApiKey.objects.get(agent=agent.agent), key=key, body=BODY)
    assert isinstance(claim, IdempotencyKey)
    return claim


def test_an_invalid_body_with_a_key_in_flight_is_422(db, agent, api):
    hold_key(agent, "busy-2")
    busy = api(agent.key).post(
        URL, {**BODY, "urgency": "whenever"}, headers={"Idempotency-Key": "busy-2"}
    )
    assert busy.status_code == 422
    assert busy.json()["error"]["code"] == "idempotency_key_reused"


def test_keys_are_scoped_to_the_api_key(db, agent, make_agent, api):
    other = make_agent()
    a = api(agent.key).post(URL, BODY, headers={"Idempotency-Key": "shared"}).json()
    b = api(other.key).post(URL, BODY, headers={"Idempotency-Key": "shared"}).json()
    assert a["id"] != b["id"]


def test_a_key_in_flight_is_409(db, agent, api):
    hold_key(agent, "busy")
    response = api(agent.key).post(URL, BODY, headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_flight"


def test_a_call_that_outlived_its_lease_does_not_release_the_retry_s_claim(db, agent, api):
    from datetime import timedelta

    from django.utils import timezone

    slow = hold_key(agent, "slow")
    IdempotencyKey.objects.filter(pk=slow.pk).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    retry = hold_key(agent, "slow")  # takes the key over
    idempotency.release(slow)  # the first call fails at last and gives back what it held
    assert IdempotencyKey.objects.filter(pk=retry.pk, locked_until=retry.locked_until).exists()


def test_a_failed_create_releases_its_key(db, agent, api):
    client = api(agent.key)
    bad = {**BODY, "urgency": "critical", "timeout_seconds": 99999}
    failed = client.post(URL, bad, headers={"Idempotency-Key": "k"})
    assert (failed.status_code, failed.json()["error"]["code"]) == (422, "invalid")
    # Unused again: an invalid body with it is the body's own 400, not a reused key's 422.
    invalid = {**BODY, "urgency": "whenever"}
    assert client.post(URL, invalid, headers={"Idempotency-Key": "k"}).status_code == 400
    assert client.post(URL, BODY, headers={"Idempotency-Key": "k"}).status_code == 201


def test_an_unprintable_idempotency_key_is_400(db, agent, api):
    response = api(agent.key).post(URL, BODY, headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


def test_the_schema_documents_every_approval_endpoint(db, api):
    paths = api(None).get("/api/v1/schema/?format=json").json()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/approval-requests"])
    assert "get" in paths["/api/v1/approval-requests/{id}"]
    assert "post" in paths["/api/v1/approval-requests/{request_id}/cancel"]


def test_the_list_query_count_does_not_grow_with_the_page(
    db, make_agent, new_request, api, approvers, django_assert_max_num_queries
):
    """The list's votes come in one query for the page (its hand-written prefetch), whatever
    the page holds: requests decided, half-approved, pending."""
    mine = make_agent()

    def some(count: int) -> None:
        for n in range(count):
            risk = "critical" if n % 3 == 1 else "medium"  # critical: 10 an hour (its policy)
            request = new_request(agent=mine.agent, risk_level=risk)
            services.approve_request(request_id=request.pk, reviewer=approvers["director"])

    some(2)
    with django_assert_max_num_queries(12) as few:
        assert len(api(mine.key).get(URL).json()["results"]) == 2
    some(20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api(mine.key).get(URL).json()["results"]) == 22
