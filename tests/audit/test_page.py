"""The audit page: compliance only, filters, keyset pages, a flat query count, verification."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent, ChainVerification
from audit.services import record_event
from tests.audit.db import execute, tampering
from tools.audit_fill import bulk_append

pytestmark = pytest.mark.django_db


@pytest.fixture
def compliance(make_user) -> Client:
    client = Client()
    client.force_login(make_user("carol", roles=("compliance",)))
    return client


def sequences(response) -> list[int]:
    """The sequence numbers of the rows shown, in page order."""
    return [event.sequence for event in response.context["page"].events]


def test_anonymous_visitors_are_sent_to_log_in():
    response = Client().get("/audit/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login/?next=/audit/"


@pytest.mark.parametrize("roles", [("approver",), ("manager",), ("admin",), ()])
def test_people_without_the_compliance_role_are_refused(make_user, roles):
    client = Client()
    tier = "team_lead" if "approver" in roles else ""
    client.force_login(make_user(roles=roles, tier=tier))
    assert client.get("/audit/events/").status_code == 403
    assert client.post("/audit/verify/").status_code == 403
    assert not ChainVerification.objects.exists()


def test_compliance_sees_the_newest_events_first_in_the_product_look(compliance, make_agent):
    agent = make_agent("release-bot").agent
    record_event(
        event_type=EventType.GUARDRAIL_VIOLATION,
        actor=agent,
        subject=agent,
        payload={"rule": "no <script> in prod"},
    )
    response = compliance.get("/audit/events/")
    assert response.status_code == 200
    shown = sequences(response)
    assert shown == sorted(shown, reverse=True)
    assert shown[0] == AuditEvent.objects.order_by("-sequence").values_list("sequence")[0][0]
    html = response.content.decode()
    assert "Guardrail violation" in html
    assert "release-bot" in html
    assert "no &lt;script&gt; in prod" in html  # payloads are escaped
    assert '<a href="/audit/" aria-current="page">Audit</a>' in html  # the nav's own link
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert " style=" not in html


def test_empty_results_say_why(compliance):
    response = compliance.get("/audit/events/?type=budget.alert")
    assert sequences(response) == []
    assert b"No events match these filters." in response.content
    assert b"Not verified yet" in response.content

    with tampering():
        execute("DELETE FROM audit_auditevent")
    response = compliance.get("/audit/events/")
    assert b"No events yet." in response.content
    assert b"Clear" not in response.content


def test_filters_by_type_actor_subject_and_time(compliance, make_user, make_agent):
    erin = make_user("erin")
    agent = make_agent("release-bot").agent
    by_erin = record_event(event_type=EventType.POLICY_CHANGED, actor=erin, subject=("policy", "4"))
    by_agent = record_event(event_type=EventType.REQUEST_CREATED, actor=agent, subject=agent)
    by_system = record_event(
        event_type=EventType.REQUEST_EXPIRED, subject=("approval_request", "4")
    )

    def shown(query: str) -> list[int]:
        response = compliance.get(f"/audit/events/?{query}")
        assert response.status_code == 200
        return sequences(response)

    assert shown("type=policy.changed") == [by_erin.sequence]
    assert shown("actor=erin") == [
        e.sequence for e in AuditEvent.objects.filter(actor_name="erin").order_by("-sequence")
    ]
    assert shown(f"actor=user:{erin.pk}&type=policy.changed") == [by_erin.sequence]
    assert shown(f"actor=agent:{agent.pk}") == [by_agent.sequence]
    assert by_system.sequence in shown("actor=system")
    assert shown("subject=policy") == [by_erin.sequence]
    assert shown("subject=approval_request:4") == [by_system.sequence]
    assert shown(f"subject=agent:{agent.pk}&type=request.created") == [by_agent.sequence]
    assert shown("actor=nobody") == []

    now = timezone.localtime()
    hour_ago = (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    in_an_hour = (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    everything = shown("")
    assert shown(f"since={hour_ago}") == everything
    assert shown(f"since={hour_ago}&until={in_an_hour}") == everything
    assert shown(f"since={in_an_hour}") == []
    assert shown(f"until={hour_ago}") == []


def test_a_time_range_picks_exactly_the_events_inside_it(compliance):
    bulk_append(30)  # one millisecond apart, from now on
    events = list(AuditEvent.objects.order_by("sequence"))
    inside = events[10:20]
    since = inside[0].occurred_at
    until = inside[-1].occurred_at
    response = compliance.get(
        "/audit/events/",
        {
            "since": timezone.localtime(since).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "until": timezone.localtime(until).strftime("%Y-%m-%d %H:%M:%S.%f"),
        },
    )
    assert sequences(response) == [e.sequence for e in reversed(inside)]


def test_invalid_filters_show_an_error_not_a_crash(compliance):
    response = compliance.get(
        "/audit/events/?since=2026-03-02T00:00&until=2026-03-01T00:00"
        "&type=made.up&before=abc&after=-1"
    )
    assert response.status_code == 200
    assert b"must be before" in response.content
    assert b"Select a valid choice" in response.content
    assert sequences(response) == []
    assert compliance.get("/audit/events/?before=99999999999999999999999").status_code == 200


def test_pages_go_older_and_newer_by_sequence(compliance):
    bulk_append(118)  # after the compliance person's creation and login: 120 events
    assert AuditEvent.objects.count() == 120

    first = compliance.get("/audit/events/")
    assert sequences(first) == list(range(120, 70, -1))
    assert first.context["newer_url"] is None
    assert first.context["older_url"] == "?before=71"

    second = compliance.get("/audit/events/" + first.context["older_url"])
    assert sequences(second) == list(range(70, 20, -1))
    assert second.context["newer_url"] == "?after=70"

    last = compliance.get("/audit/events/" + second.context["older_url"])
    assert sequences(last) == list(range(20, 0, -1))
    assert last.context["older_url"] is None
    assert b"Older" not in last.content

    back = compliance.get("/audit/events/" + last.context["newer_url"])
    assert sequences(back) == list(range(70, 20, -1))
    # Newer from the second page reaches the top: the full newest page, not a short one.
    top = compliance.get("/audit/events/" + back.context["newer_url"])
    assert sequences(top) == list(range(120, 70, -1))
    assert top.context["newer_url"] is None


def test_pages_keep_their_filters(compliance):
    bulk_append(300)  # every fifth is a request.created
    response = compliance.get("/audit/events/?type=request.created")
    shown = sequences(response)
    assert len(shown) == 50
    assert set(
        AuditEvent.objects.filter(sequence__in=shown).values_list("event_type", flat=True)
    ) == {"request.created"}
    older = response.context["older_url"]
    assert older == f"?type=request.created&before={shown[-1]}"
    following = sequences(compliance.get("/audit/events/" + older))
    assert following[0] < shown[-1]
    assert len(following) == 10  # 60 request.created events in all


def page_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "url",
    [
        "/audit/events/",
        "/audit/events/?type=request.voted&actor=person3",
        "/audit/events/?subject=approval_request:7&since=2000-01-01T00:00&until=2100-01-01T00:00",
        "/audit/events/?before=40",
        "/audit/events/?after=40",
    ],
)
def test_the_query_count_is_pinned_and_does_not_grow_with_the_table(
    compliance, django_assert_max_num_queries, url
):
    bulk_append(100)
    ChainVerification.objects.create(
        intact=True, events_checked=1, head_sequence=1, duration_seconds=0.1
    )
    with django_assert_max_num_queries(8):
        compliance.get(url)
    small = page_queries(compliance, url)

    bulk_append(900)  # ten times the rows
    assert page_queries(compliance, url) == small


def test_verifying_now_records_and_shows_the_result(compliance):
    record_event(event_type=EventType.LOGIN_FAILED)
    response = compliance.post("/audit/verify/", follow=True)
    assert response.redirect_chain == [("/audit/", 302)]
    verification = ChainVerification.objects.get()
    assert verification.intact
    assert verification.events_checked == AuditEvent.objects.count()
    assert verification.checked_by is not None
    assert verification.checked_by.username == "carol"
    html = response.content.decode()
    assert "Intact" in html
    assert "Audit chain intact" in html  # the flash message


def test_a_broken_chain_is_shown_with_the_first_bad_sequence(compliance):
    for _ in range(4):
        record_event(event_type=EventType.LOGIN_FAILED)
    with tampering():
        execute("UPDATE audit_auditevent SET actor_name = 'x' WHERE sequence = 3")
    response = compliance.post("/audit/verify/", follow=True)
    html = response.content.decode()
    assert "Broken" in html
    assert "#3</strong>" in html
    assert ChainVerification.objects.get().first_bad_sequence == 3


def test_verifying_needs_a_post_with_a_csrf_token(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("carol", roles=("compliance",)))
    assert client.get("/audit/verify/").status_code == 405
    assert client.post("/audit/verify/").status_code == 403
    assert not ChainVerification.objects.exists()
    page = client.get("/audit/events/").content.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match is not None
    token = match.group(1)
    assert client.post("/audit/verify/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert ChainVerification.objects.count() == 1


def test_the_admin_shows_events_read_only(make_user):
    client = Client()
    admin = make_user("root", roles=("admin",))
    admin.is_superuser = True
    admin.save()
    client.force_login(admin)
    event = record_event(event_type=EventType.LOGIN_FAILED)
    listing = client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200
    assert b"/admin/audit/auditevent/add/" not in listing.content
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    detail = client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
