"""Login, logout, throttling and role checks in the browser-facing pages."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.conftest import PASSWORD, client_for


def superuser_client(make_user, username: str):
    person = make_user(username, roles=("admin",))
    person.is_superuser = True
    person.save()
    return client_for(person), person


def test_anonymous_visitors_are_sent_to_login_and_back(db):
    response = Client().get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login/?next=/"


def test_the_login_page_is_in_the_product_look_without_inline_scripts(db):
    response = Client().get("/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Oversight" in html
    assert 'name="password"' in html
    # Every script is a file (CSP forbids inline code): no <script> without src, no style attrs.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert " style=" not in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_an_approver_logs_in_to_the_inbox(db, make_user):
    make_user("erin", roles=("approver",), tier="team_lead")
    client = Client()
    response = client.post("/login/", {"username": "erin", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/"
    assert b"<h1>Inbox</h1>" in response.content
    assert b"team lead" in response.content


def test_someone_without_the_approver_role_logs_in_to_the_overview(db, make_user):
    make_user("olga", roles=("compliance",))
    response = Client().post("/login/", {"username": "olga", "password": PASSWORD}, follow=True)
    assert b"Welcome" in response.content
    assert b"Compliance" in response.content


def test_a_superuser_without_a_tier_gets_the_overview_and_why_not_an_empty_inbox(db, make_user):
    # A superuser holds every role, the approver's too, but requests are routed to tiers: an
    # inbox would stay empty, and its live socket would be refused (test_consumers) and retried.
    client, _ = superuser_client(make_user, "ivan")
    html = client.get("/").content.decode()
    assert "<h1>Inbox</h1>" not in html
    assert "/ws/live/" not in html
    assert "You have no approver tier" in html
    assert '<a href="/" aria-current="page">Overview</a>' in html
    assert ">Inbox</a>" not in html


def test_a_wrong_password_shows_a_clear_error(db, make_user):
    make_user("frank")
    response = Client().post("/login/", {"username": "frank", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_repeated_failures_lock_the_login_out(db, make_user):
    make_user("grace")
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": "grace", "password": "wrong"})
    # Locked now: even the right password is refused until the cool-off passes.
    response = client.post("/login/", {"username": "grace", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed attempts" in response.content


def test_logout_is_a_post_and_ends_the_session(db, make_user):
    user = make_user("heidi")
    client = Client()
    client.force_login(user)
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(("roles", "sees_admin"), [(("admin",), True), (("approver",), False)])
def test_navigation_shows_only_what_the_roles_open(db, make_user, roles, sees_admin):
    tier = "team_lead" if "approver" in roles else ""
    client = Client()
    client.force_login(make_user(roles=roles, tier=tier))
    html = client.get("/").content.decode()
    assert ('href="/admin/"' in html) is sees_admin


def test_a_person_added_in_the_admin_is_audited(db, make_user):
    from audit.models import AuditEvent

    client, admin = superuser_client(make_user, "root-admin")
    response = client.post(
        "/admin/accounts/user/add/",
        {
            "username": "newbie",
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:500]
    event = AuditEvent.objects.get(event_type="user.created", payload__username="newbie")
    assert event.actor_name == admin.display_name
