"""The request page's "also allow again" choice, the grants page with one-click revocation, and
the agent's page, used as a person would (Django's test client)."""

from __future__ import annotations

import pytest

from approvals.models import Status
from audit.models import AuditEvent
from grants.models import Grant
from guardrails import services as guardrails
from tests.conftest import client_for
from tests.grants.conftest import ACTION, PARAMS


@pytest.fixture
def request_page(db, new_request):
    return new_request(action=ACTION, params=dict(PARAMS))


def approve(client, approval, **fields):
    data = {"comment": "", "seen_params_sha256": approval.current_params_sha256, **fields}
    return client.post(f"/requests/{approval.pk}/approve", data)


def test_the_request_page_offers_the_choice_without_javascript(request_page, granter):
    page = client_for(granter).get(f"/requests/{request_page.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Also allow calls like this again" in html
    assert 'name="grant-kind"' in html
    assert 'value="pinned"' in html
    assert 'name="grant-under_path"' in html, "path-like arguments may be pinned to a prefix"
    assert 'name="grant-under_content"' not in html
    assert "<script" not in html.split("<body", 1)[1].split("</main>")[0]


def test_no_choice_for_a_critical_request(db, new_request, approvers):
    critical = new_request(risk_level="critical")
    html = client_for(approvers["director"]).get(f"/requests/{critical.pk}/").content.decode()
    assert 'name="grant-kind"' not in html
    assert "No standing approval from this request: Critical" in html


def test_approving_with_a_pinned_grant(request_page, granter):
    response = approve(
        client_for(granter),
        request_page,
        **{
            "grant-kind": "pinned",
            "grant-pin": ["path"],
            "grant-under_path": "/srv/app",
            "grant-lifetime": "28800",
            "grant-max_uses": "3",
        },
    )
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.pins, grant.max_uses, grant.granted_by) == (
        {"path": {"prefix": "/srv/app"}},
        3,
        granter,
    )
    request_page.refresh_from_db()
    assert request_page.status == Status.APPROVED
    check = guardrails.check_action(
        agent=request_page.agent, action=ACTION, params={"path": "/srv/app/x", "content": "y"}
    )
    assert check.grant_id == grant.pk


def test_a_refused_grant_refuses_the_approval_and_shows_the_choice_again(request_page, granter):
    response = approve(
        client_for(granter),
        request_page,
        **{
            "grant-kind": "pinned",
            "grant-pin": ["path"],
            "grant-under_path": "/srv/elsewhere",
            "grant-lifetime": "3600",
        },
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert "does not lie under" in html
    assert 'value="/srv/elsewhere"' in html, "the person's choice is kept"
    request_page.refresh_from_db()
    assert request_page.status == Status.PENDING
    assert not Grant.objects.exists()


def test_a_lifetime_that_is_not_offered_is_refused(request_page, granter):
    response = approve(
        client_for(granter), request_page, **{"grant-kind": "exact", "grant-lifetime": "9999999"}
    )
    assert response.status_code == 422
    request_page.refresh_from_db()
    assert request_page.status == Status.PENDING


def test_approving_without_the_choice_grants_nothing(request_page, granter):
    assert approve(client_for(granter), request_page).status_code == 302
    request_page.refresh_from_db()
    assert request_page.status == Status.APPROVED
    assert not Grant.objects.exists()


def test_the_grants_page_shows_each_person_theirs_and_managers_all(
    db, make_grant, granter, make_user, django_assert_max_num_queries
):
    mine = make_grant()
    lead2 = make_user(roles=("approver",), tier="team_lead")
    theirs = make_grant(by=lead2)
    own = client_for(granter).get("/grants/").content.decode()
    assert f'<td data-label="#">{mine.pk}</td>' in own
    assert f'<td data-label="#">{theirs.pk}</td>' not in own
    manager = client_for(make_user(roles=("manager",)))
    for _ in range(3):
        make_grant()
    with django_assert_max_num_queries(12):
        everyone = manager.get("/grants/")
    assert everyone.status_code == 200
    assert everyone.content.decode().count('<td data-label="#">') == 5
    assert client_for(make_user(roles=("compliance",))).get("/grants/").status_code == 403
    assert client_for(make_user()).get("/grants/").status_code == 403  # no role
    from django.test import Client

    assert Client().get("/grants/")["Location"].startswith("/login")


def test_revoking_in_one_click_is_honoured_by_the_next_check(db, make_grant, granter, make_user):
    grant = make_grant(kind="pinned", pins={"path": ""})
    other = client_for(make_user(roles=("approver",), tier="director"))
    assert other.post(f"/grants/{grant.pk}/revoke").status_code == 404, "not theirs to see"
    response = client_for(granter).post(f"/grants/{grant.pk}/revoke", {"reason": "enough"})
    assert (response.status_code, response["Location"]) == (302, "/grants/")
    event = AuditEvent.objects.get(event_type="grant.revoked")
    assert (event.actor_name, event.payload["reason"]) == (granter.audit_name, "enough")
    check = guardrails.check_action(agent=grant.agent, action=ACTION, params=dict(PARAMS))
    assert (check.decision, check.grant_id) == ("require_approval", None)
    assert client_for(granter).get(f"/grants/{grant.pk}/revoke").status_code == 405


def test_the_agents_page_shows_its_grants_and_revokes_back_to_it(db, make_grant, make_user):
    grant = make_grant(kind="pinned", pins={"path": "/srv/app"})
    manager = client_for(make_user(roles=("manager",)))
    page = f"/agents/{grant.agent.name}/"
    html = manager.get(page).content.decode()
    assert "Standing approvals" in html
    assert "/srv/app" in html
    revoked = manager.post(f"/grants/{grant.pk}/revoke", {"next": page})
    assert revoked["Location"] == page
    assert (
        manager.post(f"/grants/{grant.pk}/revoke", {"next": "https://evil.example/"})["Location"]
        == "/grants/"
    )
    assert "None: every call that needs a person goes to one." in manager.get(page).content.decode()


def test_the_admin_shows_grants_read_only_and_revokes_through_the_service(
    db, make_grant, make_user
):
    grant = make_grant()
    root = make_user("root-admin", roles=("admin",))
    root.is_superuser = root.is_staff = True
    root.save()
    admin = client_for(root)
    assert admin.get("/admin/grants/grant/").status_code == 200
    assert admin.get(f"/admin/grants/grant/{grant.pk}/change/").status_code == 200
    assert admin.get("/admin/grants/grant/add/").status_code == 403
    response = admin.post(
        "/admin/grants/grant/", {"action": "revoke", "_selected_action": [grant.pk]}
    )
    assert response.status_code == 302
    grant.refresh_from_db()
    assert (grant.revoked_by, grant.revoke_reason) == (root, "revoked in the admin")
    assert AuditEvent.objects.filter(
        event_type="grant.revoked", actor_name=root.audit_name
    ).exists()


def test_the_grants_page_marks_a_grant_whose_policy_changed(db, make_grant, granter):
    from guardrails import policies
    from guardrails.models import Policy
    from guardrails.policyfile import snapshot

    make_grant()
    assert "policy changed" not in client_for(granter).get("/grants/").content.decode()
    policy = Policy.objects.get(name=ACTION)
    policies.save_policy(fields={**snapshot(policy), "description": "reworded"}, policy=policy)
    assert "policy changed: void" in client_for(granter).get("/grants/").content.decode()
