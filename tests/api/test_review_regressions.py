"""Inputs found by review that once produced a 500 or a broken argument binding."""

from __future__ import annotations

import pytest

from agents import services as agents
from approvals import services
from approvals.binding import params_sha256
from approvals.models import ApprovalRequest

URL = "/api/v1/approval-requests"
# A medium-risk policy (guardrails' seed) a team lead may decide.
BODY = {
    "action": "external_api_call",
    "params": {"amount": 1},
    "risk_level": "low",
    "justification": "x",
}


@pytest.fixture
def client(make_agent, api):
    return api(make_agent().key)


def test_a_huge_integer_confidence_is_400(db, client):
    response = client.post(URL, {**BODY, "confidence": 10**400})
    assert response.status_code == 400
    assert "confidence" in response.json()["error"]["fields"]


@pytest.mark.parametrize("params", [{"a": "x\u0000"}, {"a\u0000": 1}, {"a": ["ok", "\ud800"]}])
def test_unstorable_text_in_params_is_400(db, client, params):
    for headers in ({}, {"Idempotency-Key": "k1"}):
        response = client.post(URL, {**BODY, "params": params}, headers=headers)
        assert response.status_code == 400, response.content
        assert "params" in response.json()["error"]["fields"]


@pytest.mark.parametrize("wait", ["²", "٣", "9" * 5000, "1.5", ""])
def test_odd_wait_values_are_400(db, client, wait):
    created = client.post(URL, BODY).json()
    response = client.get(f"{URL}/{created['id']}?wait={wait}")
    assert response.status_code == 400


@pytest.mark.parametrize("number", [1e16, -0.0, 1.5e300, 0.1, 1e-7, 123456789012345678901234567890])
def test_params_come_back_exactly_as_hashed(db, client, approvers, number):
    created = client.post(URL, {**BODY, "params": {"amount": number}}).json()
    services.approve_request(request_id=created["id"], reviewer=approvers["lead"])
    body = client.get(f"{URL}/{created['id']}").json()
    assert (
        params_sha256(body["action"], body["params"]) == body["decision"]["approved_params_sha256"]
    )
    stored = ApprovalRequest.objects.get(pk=created["id"])
    assert params_sha256(stored.action, stored.params) == stored.params_sha256


def test_an_idempotent_replay_returns_the_same_params(db, client):
    first = client.post(
        URL, {**BODY, "params": {"amount": 1e16}}, headers={"Idempotency-Key": "n"}
    ).json()
    again = client.post(
        URL, {**BODY, "params": {"amount": 1e16}}, headers={"Idempotency-Key": "n"}
    ).json()
    assert again == first


def test_a_paused_agent_may_still_list_its_requests(db, make_agent, api):
    created = make_agent()
    api(created.key).post(URL, BODY)
    agents.set_agent_status(agent=created.agent, status="paused", reason="checking")
    assert api(created.key).get(URL).status_code == 200
    assert api(created.key).post(URL, BODY).status_code == 403


@pytest.mark.parametrize("url", ["http://xn--a.com/hook", "http://\u2488.com/hook"])
def test_unusable_callback_urls_are_refused(db, client, url):
    response = client.post(URL, {**BODY, "callback_url": url})
    assert response.status_code == 400
    assert "callback_url" in response.json()["error"]["fields"]


def test_unstorable_changed_params_from_a_person_are_refused(db, new_request, approvers):
    request = new_request()
    with pytest.raises(services.Invalid, match="NUL"):
        services.approve_request(
            request_id=request.pk, reviewer=approvers["lead"], modified_params={"a": "\x00"}
        )


def test_an_approval_is_refused_when_the_arguments_changed_after_the_reviewer_saw_them(
    db, new_request, approvers
):
    request = new_request(risk_level="critical")
    seen = request.current_params_sha256
    services.approve_request(
        request_id=request.pk, reviewer=approvers["director"], modified_params={"service": "db"}
    )
    with pytest.raises(services.ArgumentsChanged):
        services.approve_request(
            request_id=request.pk, reviewer=approvers["vp"], seen_params_sha256=seen
        )
    request.refresh_from_db()
    assert request.status == "pending"
    fresh = request.current_params_sha256
    assert services.approve_request(
        request_id=request.pk, reviewer=approvers["vp"], seen_params_sha256=fresh
    ).decided


def test_the_status_filter_counts_overdue_requests_as_expired(db, client):
    from tests.conftest import shift_into_past

    overdue = client.post(URL, BODY).json()
    fresh = client.post(URL, BODY).json()
    shift_into_past(overdue["id"], 5 * 3600)
    pending = [r["id"] for r in client.get(f"{URL}?status=pending").json()["results"]]
    expired = [r["id"] for r in client.get(f"{URL}?status=expired").json()["results"]]
    assert pending == [fresh["id"]]
    assert expired == [overdue["id"]]


def test_agent_names_are_unique_whatever_their_case(db, make_agent):
    from django.db import IntegrityError, transaction

    from agents.models import Agent

    make_agent("Builder")
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.create(name="builder")


def test_callbacks_to_internal_addresses_are_refused_when_not_allowed(
    db, settings, new_request, approvers
):
    from approvals import tasks
    from approvals.models import CallbackDelivery

    settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE = False
    for url in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.8/x",
    ):
        request = new_request(callback_url=url)
        services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    assert tasks.sweep_callbacks() == 3
    for delivery in CallbackDelivery.objects.all():
        attempt = delivery.attempt_log.get()
        assert attempt.status_code is None
        assert "not a public address" in attempt.error
