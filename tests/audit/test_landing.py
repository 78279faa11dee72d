"""The compliance landing page, `/audit/` (SPEC §4): the integrity status with "Verify now",
the latest signed checkpoint, this week's figures, the last exports and the SIEM streams, at a
glance; compliance only; the search of the trail one click away at `/audit/events/`."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
from django.test import Client

from audit import checkpoints, landing
from audit.events import EventType
from audit.models import ChainVerification
from audit.services import record_event
from tests.audit.db import execute, tampering
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def compliance(make_user) -> Client:
    return client_for(make_user("carol", roles=("compliance",)))


def test_anonymous_visitors_are_sent_to_log_in():
    response = Client().get("/audit/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login/?next=/audit/"


@pytest.mark.parametrize("roles", [("approver",), ("manager",), ("admin",), ()])
def test_people_without_the_compliance_role_are_refused(make_user, roles):
    client = client_for(make_user(roles=roles, tier="team_lead" if "approver" in roles else ""))
    assert client.get("/audit/").status_code == 403


def test_a_new_trail_says_what_is_missing(compliance):
    response = compliance.get("/audit/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Not verified yet" in html
    assert "No checkpoint yet" in html
    assert "No exports yet" in html
    assert "SIEM streams" not in html  # nothing configured: nothing shown
    assert '<a href="/audit/" aria-current="page">Audit</a>' in html  # the nav's own link
    assert 'href="/audit/events/"' in html
    assert 'href="/audit/report/"' in html
    assert " style=" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_it_shows_the_verification_the_checkpoint_the_week_and_the_exports(compliance, make_user):
    for _ in range(3):
        record_event(event_type=EventType.GUARDRAIL_VIOLATION, payload={"code": "rate_limited"})
    signed = checkpoints.make(force=True)
    assert signed is not None
    record_event(event_type=EventType.LOGIN_LOCKED_OUT, payload={"username": "mallory"})
    export = record_event(
        event_type=EventType.EXPORT_MADE,
        actor=make_user("eve", roles=("compliance",)),
        payload={"format": "jsonl", "rows": 1234, "up_to_sequence": 3, "checkpoint": 3},
    )
    compliance.post("/audit/verify/")

    response = compliance.get("/audit/")

    html = response.content.decode()
    page = response.context["landing"]
    assert page.checkpoint == signed
    assert page.events_after_checkpoint == page.head_sequence - signed.size > 0
    assert "Intact" in html
    root = base64.b64encode(bytes(signed.root_hash)).decode()
    assert root in html
    assert signed.public_key in html
    assert 'href="/audit/checkpoints/latest"' in html
    assert page.report.totals["violations"] == 3
    assert page.report.totals["security"] == 1
    assert "JSONL" in html
    assert "1,234 events up to #3" in html
    assert "eve" in html
    assert f">#{export.sequence}</a>" in html


def test_the_siem_streams_are_shown_when_there_are_some(compliance, monkeypatch):
    monkeypatch.setattr(
        landing,
        "siem_status",
        lambda: [
            {
                "destination": "tls://siem.example.com:6514",
                "delivered_sequence": 40,
                "backlog": 2,
                "last_error": "connection refused",
                "delivered_at": dt.datetime.now(dt.UTC),
            }
        ],
    )
    html = compliance.get("/audit/").content.decode()
    assert "SIEM streams" in html
    assert "tls://siem.example.com:6514" in html
    assert "#40" in html
    assert "connection refused" in html


def test_verify_now_returns_to_the_page_it_was_pressed_on(compliance):
    record_event(event_type=EventType.LOGIN_FAILED)

    from_landing = compliance.post("/audit/verify/", follow=True)
    assert from_landing.redirect_chain == [("/audit/", 302)]
    assert "Audit chain intact" in from_landing.content.decode()

    back = "/audit/events/?type=login.failed"
    from_search = compliance.post("/audit/verify/", {"next": back})
    assert from_search.headers["Location"] == back
    elsewhere = compliance.post("/audit/verify/", {"next": "https://evil.example.com/"})
    assert elsewhere.headers["Location"] == "/audit/"
    assert ChainVerification.objects.count() == 3


def test_a_broken_chain_shows_on_the_landing_page(compliance):
    for _ in range(4):
        record_event(event_type=EventType.LOGIN_FAILED)
    with tampering():
        execute("UPDATE audit_auditevent SET actor_name = 'x' WHERE sequence = 3")
    html = compliance.post("/audit/verify/", follow=True).content.decode()
    assert "Broken" in html
    assert 'href="/audit/events/?before=4"><strong>#3</strong>' in html


def test_its_query_count_does_not_grow_with_the_trail(compliance, django_assert_max_num_queries):
    record_event(event_type=EventType.EXPORT_MADE, payload={"format": "csv", "rows": 1})
    with django_assert_max_num_queries(40) as few:
        compliance.get("/audit/")
    for _ in range(30):
        record_event(event_type=EventType.EXPORT_MADE, payload={"format": "csv", "rows": 1})
        record_event(event_type=EventType.GUARDRAIL_VIOLATION, payload={"code": "x"})
    with django_assert_max_num_queries(len(few.captured_queries)):
        compliance.get("/audit/")
