"""The inbox and the decisions people make on the request page."""

from __future__ import annotations

import pytest
from django.test import Client

from approvals.models import ApprovalRequest, Status
from tests.conftest import shift_into_past


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_inbox_lists_what_the_person_may_decide_most_urgent_first(db, new_request, approvers):
    later = new_request(risk_level="low", urgency="low", action="read_file")
    sooner = new_request(risk_level="medium", urgency="high", action="run_command")
    high = new_request(risk_level="high", action="deploy_to_production")
    html = client_for(approvers["lead"]).get("/").content.decode()
    assert html.index(f"request-{sooner.pk}") < html.index(f"request-{later.pk}")
    assert f"request-{high.pk}" not in html, "a team lead may not decide high-risk requests"
    director_html = client_for(approvers["director"]).get("/").content.decode()
    assert f"request-{high.pk}" in director_html


def test_the_inbox_leaves_out_the_owners_own_agents_and_finished_requests(
    db, new_request, make_agent, approvers
):
    own = new_request(agent=make_agent(owner=approvers["em"]).agent)
    done = new_request()
    overdue = new_request()
    from approvals import services

    services.reject_request(request_id=done.pk, reviewer=approvers["lead"], reason="no")
    shift_into_past(overdue.pk, 5 * 3600)
    html = client_for(approvers["em"]).get("/").content.decode()
    for hidden in (own, done, overdue):
        assert f"request-{hidden.pk}" not in html


def test_an_empty_inbox_says_so(db, approvers):
    assert b"Nothing waits for you" in client_for(approvers["vp"]).get("/").content


def test_the_inbox_query_count_does_not_grow_with_the_rows(
    db, new_request, approvers, django_assert_max_num_queries
):
    for _ in range(3):
        new_request()
    client = client_for(approvers["lead"])
    with django_assert_max_num_queries(8):
        client.get("/")
    for _ in range(30):
        new_request()
    with django_assert_max_num_queries(8):
        response = client.get("/")
    assert response.content.count(b'id="request-') == 33


def test_approving_on_the_page_decides_the_request(db, new_request, approvers):
    request = new_request()
    response = client_for(approvers["lead"]).post(
        f"/requests/{request.pk}/approve", {"comment": "ok"}, follow=True
    )
    assert response.status_code == 200
    assert b"is approved" in response.content
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.APPROVED


def test_approve_with_changes_binds_the_edited_arguments(db, new_request, approvers):
    request = new_request()
    client_for(approvers["lead"]).post(
        f"/requests/{request.pk}/approve", {"modified_params": '{"service": "api", "version": "9"}'}
    )
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.modified_params == {"service": "api", "version": "9"}


@pytest.mark.parametrize(
    ("raw", "message"), [("[1]", "must be a JSON object"), ("{oops", "not valid JSON")]
)
def test_bad_json_in_the_editor_is_refused_with_a_clear_message(
    db, new_request, approvers, raw, message
):
    request = new_request()
    response = client_for(approvers["lead"]).post(
        f"/requests/{request.pk}/approve", {"modified_params": raw}
    )
    assert response.status_code == 422
    assert message in response.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_reject_without_a_reason_is_refused_with_a_clear_message(db, new_request, approvers):
    request = new_request()
    response = client_for(approvers["lead"]).post(f"/requests/{request.pk}/reject", {"reason": ""})
    assert response.status_code == 422
    assert "Say why you reject" in response.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_a_decision_on_an_expired_request_is_refused_with_a_message(db, new_request, approvers):
    request = new_request()
    shift_into_past(request.pk, 5 * 3600)
    response = client_for(approvers["lead"]).post(
        f"/requests/{request.pk}/approve", {}, follow=True
    )
    assert "expired" in response.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.EXPIRED


def test_a_team_lead_cannot_decide_a_high_risk_request_even_by_posting(db, new_request, approvers):
    request = new_request(risk_level="high")
    response = client_for(approvers["lead"]).post(
        f"/requests/{request.pk}/approve", {}, follow=True
    )
    assert "engineering manager level or above" in response.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_the_agents_owner_cannot_approve_its_request(db, new_request, make_agent, approvers):
    request = new_request(agent=make_agent(owner=approvers["lead"]).agent)
    page = client_for(approvers["lead"]).get(f"/requests/{request.pk}/").content.decode()
    assert "You own this agent" in page
    assert 'action="/requests/' not in page, "no decision form is offered"
    client_for(approvers["lead"]).post(f"/requests/{request.pk}/approve", {})
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


def test_people_without_a_role_get_403_and_anonymous_visitors_log_in(db, new_request, make_user):
    request = new_request()
    assert client_for(make_user("nobody")).get(f"/requests/{request.pk}/").status_code == 403
    response = Client().get(f"/requests/{request.pk}/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/?next=")
