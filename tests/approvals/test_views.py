"""The inbox and the decisions people make on the request page."""

from __future__ import annotations

import pytest
from django.test import Client

from approvals.models import ApprovalRequest, Status
from tests.conftest import client_for, shift_into_past


def test_the_inbox_lists_what_the_person_may_decide_most_urgent_first(db, new_request, approvers):
    later = new_request(risk_level="low", urgency="low", action="read_file")
    sooner = new_request(risk_level="medium", urgency="high", action="write_file")
    high = new_request(risk_level="high", action="run_command")
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


def test_the_inbox_filters_by_risk_urgency_and_agent_or_action(
    db, new_request, make_agent, approvers
):
    deploy = new_request(risk_level="critical", action="deploy_to_production")
    urgent = new_request(risk_level="medium", urgency="high", action="write_file")
    billing = new_request(agent=make_agent("billing-bot").agent, action="read_file")
    client = client_for(approvers["director"])

    def shown(query: str) -> set:
        html = client.get(f"/?{query}").content.decode()
        return {r for r in (deploy, urgent, billing) if f"request-{r.pk}" in html}

    assert shown("") == {deploy, urgent, billing}
    assert shown("risk=critical") == {deploy}
    assert shown("urgency=high") == {urgent}
    assert shown("q=BILLING") == {billing}, "agent names match, in any case"
    assert shown("q=deploy&risk=critical") == {deploy}
    assert shown("risk=bogus") == {deploy, urgent, billing}, "a bad filter is ignored"
    page = client.get("/?risk=critical&q=deploy").content.decode()
    # The periodic refresh and the live socket keep the filters.
    assert 'hx-get="/?risk=critical&amp;q=deploy"' in page
    assert 'ws-connect="/ws/live/?risk=critical&amp;q=deploy"' in page
    assert "No pending request matches these filters" in page


def test_inbox_rows_carry_their_deadlines_for_the_countdown(db, new_request, approvers):
    request = new_request()
    html = client_for(approvers["lead"]).get("/").content.decode()
    assert f'data-deadline="{int(request.expires_at.timestamp())}"' in html
    assert f'data-deadline="{int(request.escalates_at.timestamp())}"' in html
    assert 'data-href="/requests/' in html  # what the keyboard opens
    assert "<kbd>j</kbd>" in html


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


def test_the_request_page_shows_what_an_approver_needs(db, new_request, approvers):
    from approvals import services

    request = new_request(
        risk_level="medium", confidence=0.42, estimated_cost_cents=1234, params={"b": 1, "a": [2]}
    )
    older = new_request(agent=request.agent, action="read_file")
    services.reject_request(request_id=older.pk, reviewer=approvers["em"], reason="no")
    html = client_for(approvers["lead"]).get(f"/requests/{request.pk}/").content.decode()
    for expected in (
        "Ship the fix for the login outage.",  # justification
        "42 %",  # confidence
        "$12.34",  # estimated cost
        "set by the policy",  # what set the effective risk
        "<code>write_file</code></a> version 1",  # the policy and its version
        "policy_requires_approval",  # why a person decides
        request.current_params_sha256,
        "read_file",  # the agent's recent requests
        "No votes yet.",
        "data-original=",  # the agent's arguments, for the live diff
        'id="params-diff"',
    ):
        assert expected in html, expected
    pretty = html[html.index('<pre class="json">') :]
    assert pretty.index("&quot;a&quot;: [") < pretty.index("&quot;b&quot;: 1"), "sorted, indented"


def test_people_without_a_role_get_403_and_anonymous_visitors_log_in(db, new_request, make_user):
    request = new_request()
    assert client_for(make_user("nobody")).get(f"/requests/{request.pk}/").status_code == 403
    response = Client().get(f"/requests/{request.pk}/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/?next=")


def test_changes_nested_too_deeply_are_a_form_error_that_keeps_the_typed_json():
    from approvals.forms import ApproveForm

    deep = "[" * 100 + "]" * 100
    form = ApproveForm({"modified_params": f'{{"a": {deep}}}'}, original={"a": []})
    assert not form.is_valid()
    assert form.errors["modified_params"] == ["The arguments nest deeper than 64 levels."]
    assert deep in form["modified_params"].value()
