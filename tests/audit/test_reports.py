"""The period report (SPEC §7): each figure on built data, the period's edges, the integrity
section with its covering checkpoint, the page (compliance only), the PDF read back, the
`audit_report` and `audit_public_key` commands, and the weekly summary email."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from pypdf import PdfReader

from approvals import services as approvals
from approvals.models import ApprovalRequest
from audit import checkpoints, pdf, reports, services, tasks
from audit.events import EventType
from audit.models import AuditEvent, ChainVerification, SummaryEmail
from audit.services import record_event
from audit.signing import signer
from oversight.outbox import DeliveryStatus
from tests.audit.db import tampering
from tests.conftest import shift_into_past

pytestmark = pytest.mark.django_db

UTC = dt.UTC
# A week of January 2026 (Monday to Monday), long past on this machine's clock.
SINCE = dt.datetime(2026, 1, 12, tzinfo=UTC)
UNTIL = dt.datetime(2026, 1, 19, tzinfo=UTC)
PERIOD = reports.Period(SINCE, UNTIL)


def head() -> int:
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


def date_events(first: int, last: int, at: dt.datetime) -> None:
    """Give events first..last the time `at` (the trail's times only grow: callers date the
    blocks in sequence order). Their hashes no longer match: the figures do not care."""
    with tampering(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE audit_auditevent SET occurred_at = %s WHERE sequence BETWEEN %s AND %s",
            [at, first, last],
        )


def date_request(request_id: Any, created: dt.datetime, decided_after: float | None) -> None:
    """Move a request to `created`, decided `decided_after` seconds later (None: leave it
    undecided; an expired request's decision time is its deadline)."""
    fields: dict[str, Any] = {
        "created_at": created,
        "escalates_at": created + dt.timedelta(hours=2),
        "expires_at": created + dt.timedelta(hours=4),
    }
    if decided_after is not None:
        fields["decided_at"] = created + dt.timedelta(seconds=decided_after)
    ApprovalRequest.objects.filter(pk=request_id).update(**fields)


# The audit events of the period, by type and payload, that the figures must count.
IN_PERIOD: list[tuple[str, dict[str, Any]]] = [
    (EventType.GUARDRAIL_VIOLATION, {"code": "forbidden_pattern"}),
    (EventType.GUARDRAIL_VIOLATION, {"code": "forbidden_pattern"}),
    (EventType.GUARDRAIL_VIOLATION, {"code": "rate_limited"}),
    (EventType.EXECUTION_MISMATCH, {"request_id": "x"}),
    (EventType.LOGIN_LOCKED_OUT, {"username": "mallory"}),
    (EventType.LOGIN_LOCKED_OUT, {"username": "mallory"}),
    (EventType.REQUEST_SELF_APPROVED, {"vote": "approve"}),
    (EventType.USER_CHANGED, {"username": "bob"}),
    (EventType.AGENT_STATUS_CHANGED, {"from": "active", "to": "disabled", "reason": "kill"}),
    (
        EventType.AGENT_STATUS_CHANGED,
        {"from": "active", "to": "paused", "reason": "circuit_breaker: 5 failures in a row"},
    ),
    (EventType.AGENT_STATUS_CHANGED, {"from": "active", "to": "paused", "reason": "maintenance"}),
    (EventType.BREAKER_OPENED, {"consecutive_failures": 3}),
    (EventType.BREAKER_OPENED, {"consecutive_failures": 3}),
    (EventType.BREAKER_CLOSED, {"consecutive_failures": 0}),
    (EventType.DATA_ACCESSED, {"policy": "customer_pii", "version": 2}),
    (EventType.DATA_ACCESSED, {"policy": "customer_pii", "version": 2}),
    (EventType.DATA_ACCESSED, {"policy": "payments", "version": 1}),
    (EventType.AUTONOMY_CHANGED, {"source": "manual"}),
    (EventType.AUTONOMY_CHANGED, {"source": "lowered"}),
    (EventType.AUTONOMY_CHANGED, {"source": "lowered"}),
    (EventType.BUDGET_ALERT, {"kind": "threshold", "threshold": 80}),
    (EventType.BUDGET_ALERT, {"kind": "threshold", "threshold": 100}),
    (EventType.BUDGET_ALERT, {"kind": "unknown_model", "model": "gpt-x"}),
    (EventType.POLICY_CHANGED, {"change": "created"}),
    (EventType.POLICY_CHANGED, {"change": "changed"}),
    (EventType.POLICY_CHANGED, {"change": "changed"}),
    (EventType.ROUTE_CHANGED, {}),
    (EventType.PRICE_CHANGED, {}),
]
# The same kinds outside the period: counted by none of its figures.
OUTSIDE: list[tuple[str, dict[str, Any]]] = [
    (EventType.GUARDRAIL_VIOLATION, {"code": "forbidden_pattern"}),
    (EventType.EXECUTION_MISMATCH, {}),
    (EventType.DATA_ACCESSED, {"policy": "customer_pii"}),
    (EventType.BUDGET_ALERT, {"kind": "threshold", "threshold": 80}),
    (EventType.POLICY_CHANGED, {"change": "deleted"}),
]


def record_all(events: list[tuple[str, dict[str, Any]]]) -> tuple[int, int]:
    first = head() + 1
    for event_type, payload in events:
        record_event(event_type=event_type, payload=payload)
    return first, head()


@pytest.fixture
def built(make_agent, new_request, approvers) -> dict[str, Any]:
    """A period holding the events above and six requests that ended in it, between events
    and requests outside it on both sides (the edges exactly: since is in, until is out)."""
    if head():  # the people the fixtures made: long before
        date_events(1, head(), SINCE - dt.timedelta(days=2))
    before = record_all(OUTSIDE)
    date_events(*before, SINCE - dt.timedelta(microseconds=1))

    first_request_event = head() + 1
    agent = make_agent("reporter").agent
    decided: list[tuple[Any, float | None]] = []
    versions = iter(range(100))

    def ask(risk: str) -> ApprovalRequest:
        # Other arguments each time: the same ones again and again are a loop (a violation).
        params = {"service": "api", "version": f"1.2.{next(versions)}"}
        return new_request(agent=agent, risk_level=risk, params=params)

    for seconds in (60, 120, 300):  # low risk, approved
        request = ask("low")
        approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        decided.append((request.pk, seconds))
    high = ask("high")  # rejected after 600 s
    approvals.reject_request(request_id=high.pk, reviewer=approvers["em"], reason="Too risky.")
    decided.append((high.pk, 600))
    late = ask("high")  # expired
    shift_into_past(late.pk, 5 * 3600)
    assert approvals.expire_request(request_id=late.pk)
    cancelled = ask("medium")
    approvals.cancel_request(request_id=cancelled.pk, agent=agent)
    decided.append((cancelled.pk, 30))
    outside = ask("low")  # decided after the period
    approvals.approve_request(request_id=outside.pk, reviewer=approvers["lead"])
    request_events = (first_request_event, head())
    date_events(*request_events, SINCE)  # the first instant of the period belongs to it

    for index, (request_id, decided_after) in enumerate(decided):
        date_request(request_id, SINCE + dt.timedelta(hours=index + 1), decided_after)
    # Its deadline: created 10:00, expires 14:00.
    date_request(late.pk, SINCE + dt.timedelta(hours=10), None)
    ApprovalRequest.objects.filter(pk=late.pk).update(decided_at=SINCE + dt.timedelta(hours=14))
    date_request(outside.pk, UNTIL - dt.timedelta(hours=1), 3600)  # decided at until: out

    inside = record_all(IN_PERIOD)
    date_events(*inside, SINCE + dt.timedelta(days=3))
    after = record_all(OUTSIDE)
    date_events(*after, UNTIL)
    return {
        "first": first_request_event,
        "last": inside[1],
        "events": inside[1] - first_request_event + 1,
        "request_events": request_events[1] - request_events[0] + 1,
    }


def figures(items: list[reports.Figure]) -> dict[str, int]:
    return {figure.key: figure.count for figure in items}


def test_each_figure_counts_only_the_periods_events(built):
    report = reports.build(PERIOD)

    assert report.total_events == built["events"]
    assert (report.first_sequence, report.last_sequence) == (built["first"], built["last"])
    assert report.requests_created == 7
    assert sum(f.count for f in report.events_by_type) == built["events"]
    assert figures(report.violations) == {"forbidden_pattern": 2, "rate_limited": 1}
    assert figures(report.security) == {
        EventType.EXECUTION_MISMATCH: 1,
        reports.AGENTS_DISABLED: 1,
        EventType.LOGIN_LOCKED_OUT: 2,
        EventType.LOGIN_FAILED: 0,
        EventType.REQUEST_SELF_APPROVED: 1,
        EventType.USER_CHANGED: 1,
        EventType.API_KEY_REVOKED: 0,
        EventType.SIGNING_KEY_ROTATED: 0,
    }
    assert figures(report.data_accesses) == {"customer_pii": 2, "payments": 1}
    assert figures(report.circuit) == {
        EventType.BREAKER_OPENED: 2,
        reports.BREAKER_PAUSES: 1,  # the maintenance pause is not the breaker's
        EventType.BREAKER_CLOSED: 1,
    }
    assert figures(report.autonomy) == {
        "lowered": 2,
        "manual": 1,
        "recommendation": 0,
        "trial_reverted": 0,
        "trial_ended": 0,
        "restored": 0,
    }
    assert figures(report.budget_alerts) == {
        "threshold:80": 1,
        "threshold:100": 1,
        "unknown_model": 1,
    }
    assert figures(report.policy_changes) == {"created": 1, "changed": 2, "deleted": 0}
    assert figures(report.configuration_changes) == {
        EventType.ROUTE_CHANGED: 1,
        EventType.BUDGET_CHANGED: 0,
        EventType.PRICE_CHANGED: 1,
        EventType.PRICE_DELETED: 0,
    }
    assert report.totals == {
        "events": built["events"],
        "requests": 7,
        "decisions": 4,
        "approved": 3,
        "rejected": 1,
        "expired": 1,
        "violations": 3,
        "security": 6,
        "data_accesses": 3,
        "circuit_breaks": 3,
        "autonomy_changes": 3,
        "budget_alerts": 3,
        "policy_changes": 3,
    }


def test_decisions_by_outcome_and_risk_with_time_to_decision(built):
    report = reports.build(PERIOD)

    rows = {row.risk: row for row in report.by_risk}
    assert [row.risk for row in report.by_risk] == ["low", "medium", "high", "critical"]
    low, medium, high, critical = rows["low"], rows["medium"], rows["high"], rows["critical"]
    assert (low.approved, low.rejected, low.expired, low.cancelled) == (3, 0, 0, 0)
    # percentile_cont over 60, 120, 300 s: the middle one, and 120 + 0.8 * (300 - 120).
    assert low.median_seconds == pytest.approx(120)
    assert low.p90_seconds == pytest.approx(264)
    assert (high.approved, high.rejected, high.expired) == (0, 1, 1)
    assert high.median_seconds == pytest.approx(600)  # an expiry has no decision time
    assert (medium.cancelled, medium.decided, medium.median_seconds) == (1, 0, None)
    assert (critical.ended, critical.median_seconds, critical.p90_seconds) == (0, None, None)
    together = report.decisions
    assert (together.approved, together.rejected, together.expired, together.cancelled) == (
        3,
        1,
        1,
        1,
    )
    # Over 60, 120, 300, 600 s: between the middle two, and 300 * 0.3 + 600 * 0.7.
    assert together.median_seconds == pytest.approx(210)
    assert together.p90_seconds == pytest.approx(510)


def test_an_empty_period_has_zeros_and_nothing_to_cover():
    record_event(event_type=EventType.LOGIN_FAILED)
    report = reports.build(reports.Period(SINCE, UNTIL))

    assert (report.total_events, report.first_sequence, report.last_sequence) == (0, None, None)
    assert report.events_by_type == []
    assert report.violations == []
    assert set(report.totals.values()) == {0}
    assert report.decisions.median_seconds is None
    assert report.integrity.checkpoint is None
    assert report.integrity.verification_covers_period is False  # never verified
    assert "nothing for a checkpoint to cover" in reports.integrity_sentence(report)


def test_the_integrity_section_names_the_checkpoint_that_covers_the_period():
    now = dt.datetime.now(UTC)
    week = reports.week_of(now)
    for _ in range(3):
        record_event(event_type=EventType.LOGIN_FAILED)
    signed = checkpoints.make(force=True)
    assert signed is not None
    assert signed.size == 3
    verification = services.run_verification()

    covered = reports.build(week)
    assert covered.integrity.checkpoint == signed
    assert covered.integrity.status == "intact"
    assert covered.integrity.verification_covers_period
    assert "Covering checkpoint: the signed checkpoint of 3 events" in reports.integrity_sentence(
        covered
    )

    record_event(event_type=EventType.LOGIN_FAILED)  # after the checkpoint and the verification
    uncovered = reports.build(week)
    assert uncovered.integrity.checkpoint is None
    assert uncovered.integrity.latest_checkpoint == signed
    assert not uncovered.integrity.verification_covers_period
    sentence = reports.integrity_sentence(uncovered)
    assert "No covering checkpoint" in sentence
    assert "#4" in sentence
    assert verification.head_sequence == 3


def test_a_broken_chain_is_reported_broken():
    for _ in range(3):
        record_event(event_type=EventType.LOGIN_FAILED)
    date_events(2, 2, dt.datetime.now(UTC))  # re-dated: its hash no longer matches
    services.run_verification()

    report = reports.build(reports.week_of(dt.datetime.now(UTC)))
    assert report.integrity.status == "broken"
    assert "BROKEN" in reports.integrity_sentence(report)
    assert "#2" in reports.integrity_sentence(report)


# --- the PDF ---------------------------------------------------------------------------------


def pdf_text(body: bytes) -> str:
    reader = PdfReader(io.BytesIO(body))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_pdf_opens_and_carries_the_reports_totals(built):
    report = reports.build(PERIOD)

    body = pdf.report_pdf(report)

    assert body.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(body))
    assert reader.metadata is not None
    assert "Compliance report" in (reader.metadata.title or "")
    text = pdf_text(body)
    assert "Compliance report" in text
    assert PERIOD.label in text
    for key, label in pdf.HEADLINE:
        assert re.search(rf"{re.escape(label)}\s+{report.totals[key]}\b", text), (label, text)
    assert "forbidden_pattern" in text
    assert "customer_pii" in text
    assert "2m 00s" in text
    assert "4m 24s" in text


# --- the page ----------------------------------------------------------------------------------


@pytest.fixture
def compliance(make_user) -> Client:
    client = Client()
    client.force_login(make_user("carol", roles=("compliance",)))
    return client


def test_anonymous_visitors_are_sent_to_log_in():
    for url in ("/audit/report/", "/audit/report.pdf"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login/?next=/audit/report")


@pytest.mark.parametrize("roles", [("approver",), ("manager",), ("admin",), ()])
def test_people_without_the_compliance_role_are_refused(make_user, roles):
    client = Client()
    client.force_login(make_user(roles=roles, tier="team_lead" if "approver" in roles else ""))
    assert client.get("/audit/report/").status_code == 403
    assert client.get("/audit/report.pdf?first=2026-01-12&last=2026-01-18").status_code == 403
    assert not AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED).exists()


def test_the_page_shows_the_period_asked_for_and_audits_it(compliance, built):
    response = compliance.get("/audit/report/?first=2026-01-12&last=2026-01-18")

    assert response.status_code == 200
    report = response.context["report"]
    assert report.period == PERIOD
    assert report.total_events == built["events"]
    html = response.content.decode()
    assert "2026-01-12 00:00 to 2026-01-19 00:00 UTC" in html
    assert 'href="/audit/report.pdf?first=2026-01-12&amp;last=2026-01-18"' in html
    assert "forbidden_pattern" in html
    assert "Agents paused by their circuit breaker" in html
    assert " style=" not in html
    (event,) = AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED)
    assert event.actor_name == "carol"
    assert event.payload == {
        "report": "period",
        "since": SINCE.isoformat(),
        "until": UNTIL.isoformat(),
        "format": "html",
        "via": "page",
    }


def test_the_page_defaults_to_this_week(compliance):
    response = compliance.get("/audit/report/")
    assert response.status_code == 200
    assert response.context["report"].period == reports.week_of(dt.datetime.now(UTC))


@pytest.mark.parametrize(
    "query",
    [
        "first=2026-01-18&last=2026-01-12",
        "first=nonsense&last=2026-01-12",
        "first=2020-01-01&last=2026-01-01",
    ],
)
def test_a_bad_period_is_explained_not_reported(compliance, query):
    response = compliance.get(f"/audit/report/?{query}")
    assert response.status_code == 400
    assert "report" not in response.context
    assert compliance.get(f"/audit/report.pdf?{query}").status_code == 400
    assert not AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED).exists()


def test_the_pdf_download_is_the_same_report(compliance, built):
    response = compliance.get("/audit/report.pdf?first=2026-01-12&last=2026-01-18")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert (
        "oversight-report-2026-01-12-to-2026-01-18.pdf" in response.headers["Content-Disposition"]
    )
    text = pdf_text(response.content)
    assert re.search(rf"Audit events\s+{built['events']}\b", text)
    (event,) = AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED)
    assert (event.payload["format"], event.payload["since"]) == ("pdf", SINCE.isoformat())


# --- the commands --------------------------------------------------------------------------


def run_report(*args: str) -> bytes:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    call_command("audit_report", *args, stdout=out, stderr=io.StringIO())
    out.flush()
    return raw.getvalue()


def test_the_command_writes_the_pdf(built):
    body = run_report("--since", "2026-01-12", "--until", "2026-01-19T00:00:00Z", "--pdf")

    text = pdf_text(body)
    assert re.search(rf"Audit events\s+{built['events']}\b", text)
    assert re.search(r"Guardrail violations\s+3\b", text)
    (event,) = AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED)
    assert event.actor_type == "system"
    assert (event.payload["format"], event.payload["via"]) == ("pdf", "command")


def test_the_command_writes_a_standalone_html_file(built):
    html = run_report("--since", "2026-01-12", "--until", "2026-01-19", "--html").decode()

    assert html.startswith("<!doctype html>")
    assert "<style>" in html
    assert "stat-cards" in html
    assert "Compliance report" in html
    assert "forbidden_pattern" in html
    assert "/static/" not in html


def test_the_command_can_verify_first(built):
    run_report("--since", "2026-01-12", "--until", "2026-01-19", "--html", "--verify")
    assert AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED).count() == 1
    assert ChainVerification.objects.count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday", "--until", "2026-01-19", "--pdf"],
        ["--since", "2026-01-19", "--until", "2026-01-12", "--pdf"],
    ],
)
def test_the_command_refuses_a_bad_period(args):
    with pytest.raises(CommandError):
        run_report(*args)


def test_the_command_needs_one_format():
    with pytest.raises(CommandError):
        run_report("--since", "2026-01-12", "--until", "2026-01-19")
    with pytest.raises(CommandError):
        run_report("--since", "2026-01-12", "--until", "2026-01-19", "--pdf", "--html")


def test_audit_public_key_prints_the_vkey_alone():
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    assert out.getvalue() == signer().vkey + "\n"
    name, key_id, key = signer().vkey.split("+", 2)
    assert name == settings.OVERSIGHT_CHECKPOINT_ORIGIN
    assert re.fullmatch(r"[0-9a-f]{8}", key_id)
    assert key


# --- periods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "since"),
    [
        (dt.datetime(2026, 12, 7, 0, 0, tzinfo=UTC), dt.datetime(2026, 11, 30, tzinfo=UTC)),
        (dt.datetime(2026, 12, 6, 23, 59, tzinfo=UTC), dt.datetime(2026, 11, 23, tzinfo=UTC)),
        (dt.datetime(2026, 12, 13, 12, 0, tzinfo=UTC), dt.datetime(2026, 11, 30, tzinfo=UTC)),
    ],
)
def test_the_previous_week_runs_monday_to_monday_utc(moment, since):
    week = reports.previous_week(moment)
    assert (week.since, week.until) == (since, since + dt.timedelta(days=7))
    assert week.since.weekday() == 0


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-01-12", dt.datetime(2026, 1, 12, tzinfo=UTC)),
        ("2026-01-12T08:30", dt.datetime(2026, 1, 12, 8, 30, tzinfo=UTC)),
        ("2026-01-12T08:30:00+02:00", dt.datetime(2026, 1, 12, 6, 30, tzinfo=UTC)),
    ],
)
def test_iso_moments(text, moment):
    assert reports.parse_moment(text) == moment


# --- the weekly summary -------------------------------------------------------------------------

MONDAY = dt.datetime(2026, 1, 19, 0, 4, tzinfo=UTC)


def test_the_weekly_summary_is_written_once_per_week():
    first = reports.queue_weekly_summary(now=MONDAY)
    assert first is not None
    assert (first.period_start, first.period_end) == (SINCE, UNTIL)
    # Beat runs every few minutes, and two beats may run: the week has its one summary.
    assert reports.queue_weekly_summary(now=MONDAY + dt.timedelta(minutes=10)) is None
    assert reports.queue_weekly_summary(now=UNTIL + dt.timedelta(days=6)) is None
    assert SummaryEmail.objects.count() == 1
    (event,) = AuditEvent.objects.filter(event_type=EventType.REPORT_GENERATED)
    assert (event.payload["format"], event.payload["since"]) == ("email", SINCE.isoformat())

    following = reports.queue_weekly_summary(now=UNTIL + dt.timedelta(days=7))
    assert following is not None
    assert following.period_start == UNTIL
    assert SummaryEmail.objects.count() == 2


def test_the_beat_task_writes_last_weeks_summary():
    assert tasks.write_weekly_summary() is not None
    assert tasks.write_weekly_summary() is None
    (email,) = SummaryEmail.objects.all()
    assert email.period_start == reports.previous_week(dt.datetime.now(UTC)).since


def test_the_summary_is_sent_to_the_compliance_staff(make_user, smtp_sink, built, settings):
    settings.OVERSIGHT_BASE_URL = "https://oversight.example.com"
    people = {
        "carol": make_user("carol", roles=("compliance",)),
        "dave": make_user("dave", roles=("compliance", "manager")),
        "erin": make_user("erin", roles=("compliance",)),  # inactive
        "frank": make_user("frank", roles=("manager",)),
        "gina": make_user("gina", roles=("compliance",)),  # no email
    }
    for name, person in people.items():
        person.email = "" if name == "gina" else f"{name}@example.com"
        person.is_active = name != "erin"
        person.save(update_fields=["email", "is_active"])
    email = reports.queue_weekly_summary(now=MONDAY)
    assert email is not None

    assert tasks.sweep_summary_emails() == 1

    email.refresh_from_db()
    assert email.status == DeliveryStatus.DELIVERED
    assert email.sent_to == ["carol@example.com", "dave@example.com"]
    assert sorted(address for recipients, _ in smtp_sink.messages for address in recipients) == [
        "carol@example.com",
        "dave@example.com",
    ]
    (message,) = smtp_sink.to("carol@example.com")
    assert message["Subject"] == ("[Oversight] Weekly compliance summary, 2026-01-12 to 2026-01-18")
    body = message.get_content()
    assert f"Audit events:              {built['events']}" in body
    assert "Decisions:                 4 (3 approved, 1 rejected)" in body
    assert "Guardrail violations:      3" in body
    assert "forbidden_pattern: 2" in body
    assert "Login lockouts: 2" in body
    assert "median 3m 30s, p90 8m 30s" in body
    assert "https://oversight.example.com/audit/report/?first=2026-01-12&last=2026-01-18" in body
    # Sent once: the next sweep finds nothing due.
    assert tasks.sweep_summary_emails() == 0
    assert len(smtp_sink.messages) == 2


def test_beat_writes_and_sends_the_summary_on_the_email_queue():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert schedule["write-weekly-summary"]["task"] == "audit.tasks.write_weekly_summary"
    assert schedule["sweep-summary-emails"]["task"] == "audit.tasks.sweep_summary_emails"
    assert settings.CELERY_TASK_ROUTES["audit.tasks.sweep_summary_emails"] == {"queue": "email"}
