"""The decision record of a request (SPEC §7, GDPR right to explanation): every vote, comment,
change, timer and the execution receipt, each with the sequence number of its audit event; the
page and the PDF; who may read it; and that reading it is audited."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from django.db import connection
from django.test import Client
from pypdf import PdfReader

from approvals import services as approvals
from approvals.models import ApprovalRequest
from audit import pdf, records
from audit.events import EventType
from audit.models import AuditEvent
from controls.outcomes import report_outcome
from tests.audit.db import tampering
from tests.conftest import client_for, shift_into_past

pytestmark = pytest.mark.django_db

PARAMS = {"service": "api", "version": "1.2.3"}
PINNED = {"service": "api", "version": "1.2.4"}


def events_of(request: ApprovalRequest, event_type: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            event_type=event_type, subject_type="approval_request", subject_id=str(request.pk)
        ).order_by("sequence")
    )


@pytest.fixture
def decided(make_agent, new_request, approvers) -> ApprovalRequest:
    """A critical request (two approvals): a director approves, the VP approves with changed
    arguments (which voids the first approval), a second director approves the new ones; the
    agent then reports executing them."""
    agent = make_agent("deployer", team="platform").agent
    request = new_request(
        agent=agent,
        risk_level="critical",
        params=PARAMS,
        confidence=0.82,
        justification="Roll out the fix for the login outage.",
    )
    approvals.approve_request(
        request_id=request.pk, reviewer=approvers["director"], comment="Looks right."
    )
    approvals.approve_request(
        request_id=request.pk,
        reviewer=approvers["vp"],
        comment="Pin the patch release.",
        modified_params=PINNED,
    )
    approvals.approve_request(
        request_id=request.pk, reviewer=approvers["director2"], comment="Fine with the pin."
    )
    report_outcome(
        agent=agent,
        action=request.action,
        success=True,
        params=PINNED,
        approval_request_id=request.pk,
    )
    request.refresh_from_db()
    assert request.status == "approved"
    return request


def section(record: records.DecisionRecord, title: str) -> list[records.Line]:
    (found,) = [s for s in record.sections if s.title == title]
    return found.lines


def test_every_vote_and_comment_carries_its_audit_sequence_number(decided):
    record = records.build(records.load(decided.pk))

    votes = section(record, "Votes and comments")
    voted = events_of(decided, EventType.REQUEST_VOTED)
    assert len(voted) == 3
    assert [line.sequence for line in votes] == [event.sequence for event in voted]
    assert [line.label for line in votes] == [
        "Approve — t-director",
        "Approve — t-vp",
        "Approve — t-director2",
    ]
    assert [line.text for line in votes] == [
        "“Looks right.”",
        "“Pin the patch release.”",
        "“Fine with the pin.”",
    ]
    assert "voided by a later change of the arguments" in votes[0].detail
    assert "with changed arguments" in votes[1].detail
    assert "voided" not in votes[2].detail
    assert record.unaudited == []


def test_the_request_its_route_and_timers_cite_the_create_event(decided):
    record = records.build(records.load(decided.pk))
    (created,) = events_of(decided, EventType.REQUEST_CREATED)

    asked = {line.label: line for line in section(record, "What the agent asked")}
    assert asked["Justification"].text == "Roll out the fix for the login outage."
    assert asked["Confidence"].text == "82%"
    assert asked["Argument hash"].text == decided.params_sha256
    assert asked["Agent"].detail == "team platform"
    assert {line.sequence for line in asked.values()} == {created.sequence}

    routed = {line.label: line for line in section(record, "Why a person decides, and who")}
    assert routed["Route"].text == "director → vp engineering"
    assert routed["Route"].detail == "2 approval(s) needed"
    assert routed["Policy"].text.startswith("deploy_to_production version ")
    assert routed["Effective risk"].text == "Critical"
    assert routed["Route"].sequence == created.sequence

    timers = {line.label: line for line in section(record, "Timers")}
    assert set(timers) == {"Created", "Escalation due", "Expiry"}
    assert timers["Expiry"].sequence == created.sequence


def test_the_change_of_arguments_and_the_receipt_are_recorded(decided):
    record = records.build(records.load(decided.pk))
    voted = events_of(decided, EventType.REQUEST_VOTED)
    (end,) = events_of(decided, EventType.REQUEST_DECIDED)
    (reported,) = AuditEvent.objects.filter(
        event_type=EventType.OUTCOME_REPORTED, subject_id=str(decided.receipt.pk)
    )

    changes = section(record, "Changes of the arguments")
    assert changes[0].sequence == voted[1].sequence
    assert changes[0].label == "Approved with changed arguments — t-vp"
    assert decided.current_params_sha256 in changes[0].detail
    assert changes[-1].label == "Their hash"
    assert changes[-1].text == decided.current_params_sha256

    outcome = {line.label: line for line in section(record, "Outcome")}
    assert (outcome["Outcome"].text, outcome["Outcome"].sequence) == ("Approved", end.sequence)
    assert outcome["Outcome"].detail == "by t-director2"
    assert outcome["Approved argument hash"].text == decided.approved_params_sha256
    assert outcome["Execution reported"].sequence == reported.sequence
    assert outcome["Execution reported"].text == "Executed as approved; the action succeeded"

    assert [event.sequence for event in record.trail] == sorted(
        [
            *(e.sequence for e in AuditEvent.objects.filter(subject_id=str(decided.pk))),
            reported.sequence,
        ]
    )


def test_a_rejection_and_an_expiry_are_explained(new_request, approvers, make_agent):
    agent = make_agent().agent
    rejected = new_request(agent=agent, risk_level="medium")
    approvals.reject_request(
        request_id=rejected.pk, reviewer=approvers["lead"], reason="Not during the freeze."
    )
    record = records.build(records.load(rejected.pk))
    outcome = {line.label: line for line in section(record, "Outcome")}
    assert outcome["Outcome"].text == "Rejected"
    assert outcome["Reason given"].text == "Not during the freeze."
    (vote,) = section(record, "Votes and comments")
    assert vote.label == "Reject — t-lead"

    late = new_request(agent=agent, risk_level="high")
    shift_into_past(late.pk, 5 * 3600)
    assert approvals.expire_request(request_id=late.pk)
    record = records.build(records.load(late.pk))
    timers = section(record, "Timers")
    (escalated,) = events_of(late, EventType.REQUEST_ESCALATED)
    (expired,) = events_of(late, EventType.REQUEST_EXPIRED)
    assert [(line.label, line.sequence) for line in timers[3:]] == [
        ("Escalated", escalated.sequence),
        ("Expired", expired.sequence),
    ]
    assert section(record, "Votes and comments") == []
    assert {line.label for line in section(record, "Outcome")} == {"Outcome", "Reason given"}


def test_a_vote_missing_from_the_trail_is_flagged(new_request, approvers, make_user):
    request = new_request(risk_level="critical")
    approvals.approve_request(request_id=request.pk, reviewer=approvers["director"])
    (voted,) = events_of(request, EventType.REQUEST_VOTED)
    with tampering(), connection.cursor() as cursor:  # as only the database's owner could
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence = %s", [voted.sequence])

    record = records.build(records.load(request.pk))

    (line,) = section(record, "Votes and comments")
    assert line.sequence is None
    assert line.missing_event
    assert record.unaudited == [line]
    html = client_for(make_user(roles=("compliance",))).get(f"/audit/requests/{request.pk}/record/")
    assert "has no audit event in the trail" in html.content.decode()


# --- the page and the PDF ------------------------------------------------------------------------


def test_the_page_lists_votes_and_the_receipt_with_their_numbers(decided, make_user):
    client = client_for(make_user("carol", roles=("compliance",)))

    response = client.get(f"/audit/requests/{decided.pk}/record/")

    assert response.status_code == 200
    html = response.content.decode()
    for event in events_of(decided, EventType.REQUEST_VOTED):
        assert f">#{event.sequence}</a>" in html
    assert "Pin the patch release." in html
    assert "Executed as approved" in html
    assert f'href="/audit/requests/{decided.pk}/record.pdf"' in html
    assert " style=" not in html
    (event,) = AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED)
    assert event.subject_label == f"approval_request:{decided.pk}"
    assert event.payload == {
        "report": "decision_record",
        "request_id": str(decided.pk),
        "format": "html",
    }
    # Its own generation is not part of the request's story.
    again = client.get(f"/audit/requests/{decided.pk}/record/")
    assert all(e.event_type != EventType.REPORT_GENERATED for e in again.context["record"].trail)


def test_the_pdf_opens_and_lists_votes_and_receipt_with_numbers(decided, make_user):
    client = client_for(make_user("mia", roles=("manager",)))

    response = client.get(f"/audit/requests/{decided.pk}/record.pdf")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Decision record" in text
    for event in events_of(decided, EventType.REQUEST_VOTED):
        assert f"#{event.sequence}" in text
    assert "Pin the patch release." in text
    assert "Executed as approved" in text
    assert re.search(r"Roll out the fix for the\s+login outage\.", text)
    (event,) = AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED)
    assert (event.payload["format"], event.actor_name) == ("pdf", "mia")


def test_text_in_any_script_survives_the_pdf(new_request, approvers):
    request = new_request(
        risk_level="medium", justification="Déployer le correctif — Ελληνικά → ok"
    )
    approvals.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="Нет.")
    text = "\n".join(
        page.extract_text()
        for page in PdfReader(io.BytesIO(pdf.record_pdf(records.build(request)))).pages
    )
    assert "Ελληνικά" in text
    assert "Нет." in text


@pytest.mark.parametrize(
    ("roles", "status"),
    [
        (("compliance",), 200),
        (("manager",), 200),
        (("approver",), 403),
        (("admin",), 403),
        ((), 403),
    ],
)
def test_compliance_and_managers_may_read_it_others_not(decided, make_user, roles, status):
    client = client_for(make_user(roles=roles, tier="director" if "approver" in roles else ""))
    assert client.get(f"/audit/requests/{decided.pk}/record/").status_code == status
    assert client.get(f"/audit/requests/{decided.pk}/record.pdf").status_code == status


def test_anonymous_visitors_are_sent_to_log_in(decided):
    response = Client().get(f"/audit/requests/{decided.pk}/record/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/?next=/audit/requests/")


def test_an_unknown_request_is_not_found(make_user):
    client = client_for(make_user(roles=("compliance",)))
    assert client.get(f"/audit/requests/{uuid.uuid4()}/record/").status_code == 404


def test_the_request_page_links_it_for_those_who_may_read_it(decided, make_user):
    url = f"/requests/{decided.pk}/"
    link = f'href="/audit/requests/{decided.pk}/record/"'
    for roles, tier, shown in (
        (("compliance",), "", True),
        (("manager",), "", True),
        (("approver",), "director", False),
    ):
        html = client_for(make_user(roles=roles, tier=tier)).get(url).content.decode()
        assert (link in html) is shown, roles


def test_the_audit_page_links_it_from_the_requests_events(decided, make_user):
    client = client_for(make_user(roles=("compliance",)))
    html = client.get(f"/audit/events/?subject=approval_request:{decided.pk}").content.decode()
    assert f'href="/audit/requests/{decided.pk}/record/"' in html
