"""Bulk decisions in the inbox (issue 24): many rows decided in one post, each by the same
service in its own transaction, with a result per row; quorum rows are never decided in bulk."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from approvals.bulk import MAX_PICKS
from approvals.models import ApprovalRequest, Status, Vote
from audit.events import EventType
from audit.models import AuditEvent
from tests.conftest import client_for, shift_into_past

URL = "/requests/bulk"


def pick(request: ApprovalRequest) -> str:
    """The value the inbox row's checkbox posts: the id and the hash of the arguments shown."""
    return f"{request.pk}:{request.current_params_sha256}"


def status_of(request: ApprovalRequest) -> str:
    return ApprovalRequest.objects.get(pk=request.pk).status


def row_result(html: str, request: ApprovalRequest) -> str:
    """The result list item of one request in the panel."""
    start = html.index(f'href="/requests/{request.pk}/"', html.index('id="bulk-result"'))
    start = html.rindex("<li", 0, start)
    return html[start : html.index("</li>", start)]


def test_fifty_rows_are_decided_in_one_post_each_with_its_result_and_audit_event(
    db, new_request, make_agent, approvers
):
    agent = make_agent().agent
    requests = [new_request(agent=agent, params={"n": n}) for n in range(50)]
    response = client_for(approvers["lead"]).post(
        URL, {"pick": [pick(r) for r in requests], "decision": "approve"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "50 of 50 approved" in html
    assert html.count('class="bulk-row is-decided"') == 50
    assert {status_of(r) for r in requests} == {Status.APPROVED}
    votes = AuditEvent.objects.filter(
        event_type=EventType.REQUEST_VOTED, subject_id__in=[str(r.pk) for r in requests]
    )
    assert votes.count() == 50
    # Each approval is bound to the hash the row showed.
    assert set(
        Vote.objects.filter(request__in=requests).values_list("params_sha256", flat=True)
    ) == {r.current_params_sha256 for r in requests}


def test_a_quorum_row_has_no_checkbox_and_is_refused_if_posted_anyway(db, new_request, approvers):
    critical = new_request(risk_level="critical", action="deploy_to_production")
    medium = new_request()
    client = client_for(approvers["director"])
    inbox = client.get("/").content.decode()
    assert f'value="{pick(medium)}"' in inbox
    assert f'value="{critical.pk}:' not in inbox, "not offered for requests needing quorum"
    answer = client.post(URL, {"pick": [pick(critical), pick(medium)], "decision": "approve"})
    html = answer.content.decode()
    assert "1 of 2 approved, 1 refused" in html
    assert "needs 2 approvals from different people" in row_result(html, critical)
    assert status_of(critical) == Status.PENDING
    assert not Vote.objects.filter(request=critical).exists(), "no vote recorded for it"
    assert status_of(medium) == Status.APPROVED


def test_rows_the_person_may_not_decide_are_refused_with_the_services_reason(
    db, new_request, make_agent, approvers
):
    high = new_request(risk_level="high")  # engineering manager and above
    own = new_request(agent=make_agent(owner=approvers["lead"]).agent)
    answer = client_for(approvers["lead"]).post(
        URL, {"pick": [pick(high), pick(own)], "decision": "reject", "reason": "no"}
    )
    html = answer.content.decode()
    assert "0 of 2 rejected, 2 refused" in html
    assert "needs an approver at engineering manager level or above" in row_result(html, high)
    assert "You own this agent" in row_result(html, own)
    assert {status_of(high), status_of(own)} == {Status.PENDING}


def test_an_expired_row_is_refused_and_counts_as_not_approved(db, new_request, approvers):
    overdue = new_request()
    shift_into_past(overdue.pk, 5 * 3600)
    html = client_for(approvers["lead"]).post(URL, {"pick": [pick(overdue)], "decision": "approve"})
    assert "expired before your vote" in row_result(html.content.decode(), overdue)
    assert status_of(overdue) == Status.EXPIRED


def test_a_mixed_post_reports_each_row_and_bad_ids_are_refused_without_an_error(
    db, new_request, approvers
):
    good = new_request(params={"n": 1})
    done = new_request(params={"n": 2})
    changed = new_request(params={"n": 3})
    unknown = uuid.uuid4()
    client = client_for(approvers["lead"])
    client.post(URL, {"pick": [pick(done)], "decision": "approve"})
    stale = f"{changed.pk}:{'0' * 64}"  # the row showed other arguments
    picks = [pick(good), pick(done), stale, f"{unknown}:{'a' * 64}", "not-a-uuid", f"{good.pk}"]
    response = client.post(URL, {"pick": picks, "decision": "approve"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 of 5 approved, 4 refused" in html, "the duplicate of `good` counts once"
    assert "approved already" in row_result(html, done)
    assert "changed the arguments" in row_result(html, changed)
    assert "There is no such request." in html
    assert "This is not a request id." in html
    assert "<code>not-a-uuid</code>" in html
    assert (status_of(good), status_of(changed)) == (Status.APPROVED, Status.PENDING)


def test_an_approval_without_the_hash_the_row_showed_is_refused(db, new_request, approvers):
    request = new_request()
    html = client_for(approvers["lead"]).post(
        URL, {"pick": [str(request.pk)], "decision": "approve"}
    )
    assert "which arguments you were shown" in html.content.decode()
    assert status_of(request) == Status.PENDING


def test_bulk_rejection_gives_every_agent_the_one_reason(db, new_request, approvers):
    requests = [new_request(params={"n": n}) for n in range(3)]
    client_for(approvers["lead"]).post(
        URL, {"pick": [str(r.pk) for r in requests], "decision": "reject", "reason": " Freeze. "}
    )
    decided = ApprovalRequest.objects.filter(pk__in=[r.pk for r in requests])
    assert {(r.status, r.decision_reason) for r in decided} == {(Status.REJECTED, "Freeze.")}


@pytest.mark.parametrize("htmx", [False, True])
def test_a_rejection_without_a_reason_is_refused_as_a_whole(db, new_request, approvers, htmx):
    requests = [new_request(params={"n": n}) for n in range(2)]
    headers = {"HX-Request": "true"} if htmx else {}
    response = client_for(approvers["lead"]).post(
        URL,
        {"pick": [pick(r) for r in requests], "decision": "reject", "reason": "  "},
        headers=headers,
    )
    # htmx swaps only successful answers: the panel with the error comes with a 200.
    assert response.status_code == (200 if htmx else 422)
    html = response.content.decode()
    assert "Say why you reject these requests" in html
    assert "Nothing was decided." in html
    assert {status_of(r) for r in requests} == {Status.PENDING}


def test_more_rows_than_the_cap_are_refused_as_a_whole(db, new_request, approvers):
    request = new_request()
    picks = [pick(request)] + [f"{uuid.uuid4()}:{'a' * 64}" for _ in range(MAX_PICKS)]
    response = client_for(approvers["lead"]).post(URL, {"pick": picks, "decision": "approve"})
    assert response.status_code == 422
    assert f"Decide at most {MAX_PICKS} requests at a time" in response.content.decode()
    assert status_of(request) == Status.PENDING


def test_an_empty_selection_or_an_unknown_decision_decides_nothing(db, new_request, approvers):
    request = new_request()
    client = client_for(approvers["lead"])
    assert client.post(URL, {"decision": "approve"}).status_code == 422
    assert client.post(URL, {"pick": [pick(request)], "decision": "delete"}).status_code == 422
    assert status_of(request) == Status.PENDING


def test_the_htmx_answer_is_the_result_panel_and_asks_the_rows_to_refresh(
    db, new_request, approvers
):
    request = new_request()
    response = client_for(approvers["lead"]).post(
        URL, {"pick": [pick(request)], "decision": "approve"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="bulk-result"')
    assert "<table" not in html, "the panel only, not the page"
    assert response["HX-Trigger"] == "oversight:resync"


def test_without_javascript_the_inbox_comes_back_with_the_results_and_its_filters(
    db, new_request, approvers
):
    decided = new_request(params={"n": 1})
    left = new_request(params={"n": 2})
    response = client_for(approvers["lead"]).post(
        f"{URL}?risk=medium", {"pick": [pick(decided)], "decision": "approve"}
    )
    html = response.content.decode()
    assert "1 of 1 approved" in html
    assert f'id="request-{left.pk}"' in html
    assert f'id="request-{decided.pk}"' not in html
    assert 'action="/requests/bulk?risk=medium"' in html, "the filters stay in force"
    assert client_for(approvers["lead"]).get(URL)["Location"] == "/", "the address bar leads home"


def test_a_bulk_post_needs_the_csrf_token(db, new_request, approvers):
    request = new_request()
    client = Client(enforce_csrf_checks=True)
    client.force_login(approvers["lead"])
    response = client.post(URL, {"pick": [pick(request)], "decision": "approve"})
    assert response.status_code == 403
    assert status_of(request) == Status.PENDING


def test_only_approvers_decide_in_bulk(db, new_request, make_user):
    request = new_request()
    manager = make_user("m", roles=("manager", "compliance"))
    response = client_for(manager).post(URL, {"pick": [pick(request)], "decision": "approve"})
    assert response.status_code == 403
    anonymous = Client().post(URL, {"pick": [pick(request)], "decision": "approve"})
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/")
    assert status_of(request) == Status.PENDING
