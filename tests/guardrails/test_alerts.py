"""What a check leaves behind (SPEC §6, §7): a deny records one violation with its audit event,
and the threshold-th within an hour by one agent alerts the managers once per clock hour —
live, by email and in the audit trail. An allow writes nothing, except that an allowed call of
a sensitive policy is recorded as a data access."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from approvals import live
from audit.models import AuditEvent
from guardrails import policies as policy_changes
from guardrails import services, tasks
from guardrails.models import (
    CheckRecord,
    Policy,
    PolicyVersion,
    Violation,
    ViolationAlert,
    ViolationAlertEmail,
)
from guardrails.policyfile import snapshot
from oversight.asgi import application
from oversight.outbox import DeliveryStatus
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

SECRET_PATH = "/srv/shop/config/production/credentials/.env"
VIOLATIONS_OF = "/policies/violations/?agent="


class Clock:
    """The guardrails' clock, started at half past the current hour and a millisecond later
    at each read: a test's violations never straddle two clock hours (alerts are once per
    clock hour, so a test run at 10:59:59.9 would otherwise see a second one)."""

    def __init__(self) -> None:
        self.at = timezone.now().replace(minute=30, second=0, microsecond=0)

    def now(self) -> dt.datetime:
        self.at += dt.timedelta(milliseconds=1)
        return self.at


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=clock.now))
    return clock


def deny(agent: Any, path: str = "/app/.env", **extra: Any) -> services.CheckOutcome:
    outcome = services.check_action(agent=agent, action="read_file", params={"path": path}, **extra)
    assert outcome.decision == "deny"
    return outcome


def events(event_type: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=event_type).order_by("sequence"))


def leftovers() -> dict[str, int]:
    """Every row a check could write."""
    return {
        "violations": Violation.objects.count(),
        "alerts": ViolationAlert.objects.count(),
        "emails": ViolationAlertEmail.objects.count(),
        "audit": AuditEvent.objects.count(),
        "checks": CheckRecord.objects.count(),
    }


# --- one denied check ------------------------------------------------------------------------


def test_a_denied_check_records_one_violation_and_its_audit_event(make_agent):
    agent = make_agent("leaky-bot").agent
    before = leftovers()
    outcome = deny(agent, SECRET_PATH, confidence=0.05)

    violation = Violation.objects.get()
    assert outcome.violation_id == violation.pk
    assert violation.agent == agent
    assert violation.action == "read_file"
    assert violation.code == "forbidden_pattern"
    assert violation.severity == "critical"
    assert violation.param == "path"
    assert violation.pattern == r"\.env$"
    assert violation.purpose == "check"
    assert violation.params_sha256 == outcome.params_sha256
    assert violation.policy_version == PolicyVersion.objects.get(name="read_file", version=1)
    assert [reason["code"] for reason in violation.reasons] == [
        "forbidden_pattern",
        "confidence_too_low",
    ]
    assert violation.excerpt.endswith("…")
    assert SECRET_PATH.startswith(violation.excerpt.removesuffix("…"))
    assert len(violation.excerpt) <= len(SECRET_PATH) // 2 + 1

    (event,) = events("guardrail.violation")
    assert (event.actor_type, event.actor_id, event.actor_name) == (
        "agent",
        str(agent.pk),
        "leaky-bot",
    )
    assert (event.subject_type, event.subject_id) == ("violation", str(violation.pk))
    payload = event.payload
    assert payload["code"] == "forbidden_pattern"
    assert payload["codes"] == ["forbidden_pattern", "confidence_too_low"]
    assert payload["severity"] == "critical"
    assert payload["param"] == "path"
    assert payload["pattern"] == r"\.env$"
    assert payload["action"] == "read_file"
    assert (payload["policy"], payload["version"]) == ("read_file", 1)
    assert payload["params_sha256"] == outcome.params_sha256
    assert SECRET_PATH not in json.dumps(payload)
    after = leftovers()
    assert after["violations"] == before["violations"] + 1
    assert after["audit"] == before["audit"] + 1, "one event: no alert below the threshold"
    assert after["alerts"] == after["emails"] == 0


def test_an_allowed_check_writes_nothing_to_the_database(make_agent):
    agent = make_agent().agent
    before = leftovers()
    with CaptureQueriesContext(connection) as queries:
        # The first loads the policies (reads); the second answers from this process's copy.
        for path in ("/app/README.md", "/app/src/main.py"):
            outcome = services.check_action(agent=agent, action="read_file", params={"path": path})
            assert outcome.decision == "allow"
            assert outcome.violation_id is None
    statements = [query["sql"].lstrip().upper() for query in queries.captured_queries]
    writes = [sql for sql in statements if not sql.startswith("SELECT") or "AUDIT_APPEND" in sql]
    assert writes == []
    assert leftovers() == before


def test_an_allowed_check_of_a_sensitive_policy_records_a_data_access(make_agent):
    policy = Policy.objects.get(name="read_file", scope="global")
    fields = snapshot(policy)
    fields["sensitive"] = True
    policy_changes.save_policy(fields=fields, policy=policy)
    agent = make_agent("reader-bot").agent
    before = leftovers()

    outcome = services.check_action(
        agent=agent, action="read_file", params={"path": "/data/customers.csv"}
    )
    assert outcome.decision == "allow"
    (event,) = events("data.accessed")
    assert (event.actor_type, event.actor_name) == ("agent", "reader-bot")
    assert (event.subject_type, event.subject_id) == ("agent", str(agent.pk))
    assert event.payload == {
        "action": "read_file",
        "policy": "read_file",
        "version": 2,
        "params_sha256": outcome.params_sha256,
    }
    assert leftovers() == {**before, "audit": before["audit"] + 1}

    # A refused call of the same policy is a violation, not a data access.
    deny(agent)
    assert len(events("data.accessed")) == 1
    assert len(events("guardrail.violation")) == 1


# --- repeated violations ---------------------------------------------------------------------


def test_three_denials_within_an_hour_alert_once_in_the_clock_hour(make_agent, clock):
    agent = make_agent("noisy-bot").agent
    deny(agent)
    deny(agent)
    assert not ViolationAlert.objects.exists()
    assert events("guardrail.alert") == []
    assert not ViolationAlertEmail.objects.exists()

    deny(agent)
    alert = ViolationAlert.objects.get()
    assert alert.agent == agent
    assert alert.count == 3
    assert alert.window_start == clock.at.replace(minute=0, second=0, microsecond=0)
    assert alert.message == (
        "Agent noisy-bot was refused 3 times by its guardrails within an hour "
        "(the alert threshold is 3)."
    )
    (event,) = events("guardrail.alert")
    assert (event.subject_type, event.subject_id) == ("agent", str(agent.pk))
    assert event.payload["count"] == 3
    assert event.payload["threshold"] == 3
    assert "window_start" in event.payload
    email = ViolationAlertEmail.objects.get()
    assert email.alert == alert
    assert email.status == DeliveryStatus.PENDING

    deny(agent)
    deny(agent)
    assert Violation.objects.filter(agent=agent).count() == 5
    assert len(events("guardrail.violation")) == 5
    assert ViolationAlert.objects.count() == 1
    assert len(events("guardrail.alert")) == 1
    assert ViolationAlertEmail.objects.count() == 1


def test_two_agents_violations_do_not_add_up(make_agent):
    one, other = make_agent("one-bot").agent, make_agent("other-bot").agent
    for _ in range(2):
        deny(one)
        deny(other)
    assert Violation.objects.count() == 4
    assert not ViolationAlert.objects.exists()
    deny(one)
    assert [alert.agent for alert in ViolationAlert.objects.all()] == [one]
    deny(other)
    assert sorted(alert.agent.name for alert in ViolationAlert.objects.all()) == [
        "one-bot",
        "other-bot",
    ]


def test_only_the_last_hours_violations_count(make_agent):
    agent = make_agent().agent
    deny(agent)
    deny(agent)
    Violation.objects.update(created_at=F("created_at") - dt.timedelta(minutes=61))
    deny(agent)
    assert not ViolationAlert.objects.exists(), "two of the three are more than an hour old"
    deny(agent)
    deny(agent)
    assert ViolationAlert.objects.get().count == 3


@pytest.mark.parametrize("threshold", [1, 5])
def test_the_threshold_setting_is_honoured(make_agent, settings, threshold):
    settings.OVERSIGHT_VIOLATION_ALERT_THRESHOLD = threshold
    agent = make_agent("tuned-bot").agent
    for _ in range(threshold - 1):
        deny(agent)
    assert not ViolationAlert.objects.exists()
    deny(agent)
    alert = ViolationAlert.objects.get()
    assert alert.count == threshold
    assert f"(the alert threshold is {threshold})" in alert.message
    (event,) = events("guardrail.alert")
    assert event.payload["threshold"] == threshold
    deny(agent)
    assert ViolationAlert.objects.count() == 1


def test_the_alert_email_goes_to_managers_admins_and_the_owner(
    make_user, make_agent, mailoutbox, settings
):
    settings.OVERSIGHT_BASE_URL = "https://oversight.example.com"
    people = {
        "mgr": make_user("mgr", roles=("manager",)),
        "adm": make_user("adm", roles=("admin",)),
        "owner": make_user("owner"),
        "apr": make_user("apr", roles=("approver",), tier="vp_engineering"),
        "cmp": make_user("cmp", roles=("compliance",)),
        "gone": make_user("gone", roles=("manager",)),
    }
    for name, user in people.items():
        user.email = f"{name}@example.com"
        user.is_active = name != "gone"
        user.save(update_fields=["email", "is_active"])
    agent = make_agent("noisy-bot", owner=people["owner"]).agent
    for _ in range(4):
        deny(agent, SECRET_PATH)

    assert tasks.sweep_alert_emails() == 1
    (message,) = mailoutbox
    assert message.to == ["adm@example.com", "mgr@example.com", "owner@example.com"]
    assert message.subject == "[Oversight] Repeated guardrail violations: agent noisy-bot"
    assert ViolationAlert.objects.get().message in message.body
    assert "https://oversight.example.com/policies/violations/?agent=noisy-bot" in message.body
    assert SECRET_PATH not in message.body
    email = ViolationAlertEmail.objects.get()
    assert email.status == DeliveryStatus.DELIVERED
    assert email.sent_to == message.to
    assert tasks.sweep_alert_emails() == 0, "sent once"
    assert len(mailoutbox) == 1


def test_the_live_notice_is_sent_when_the_alert_commits(
    make_agent, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[live.Notice] = []
    monkeypatch.setattr(live, "announce_to_managers", sent.append)
    agent = make_agent("noisy-bot").agent
    with django_capture_on_commit_callbacks() as callbacks:
        for _ in range(3):
            deny(agent)
        assert sent == [], "not before the alert is committed"
    assert sent == []
    for callback in callbacks:
        callback()
    assert sent == [
        live.Notice(
            title="Repeated guardrail violations",
            message=ViolationAlert.objects.get().message,
            url=VIOLATIONS_OF + "noisy-bot",
        )
    ]
    with django_capture_on_commit_callbacks(execute=True):
        deny(agent)
    assert len(sent) == 1, "once per hour"


def test_managers_pages_open_the_notice_socket_and_others_do_not(make_user):
    manager = client_for(make_user(roles=("manager",))).get("/policies/").content.decode()
    assert 'ws-connect="/ws/notices/"' in manager
    assert 'id="notices"' in manager
    compliance = client_for(make_user(roles=("compliance",))).get("/policies/")
    assert "/ws/notices/" not in compliance.content.decode()


# --- live, over the notice socket ------------------------------------------------------------


def session_cookie(user: Any) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{django_settings.SESSION_COOKIE_NAME}={session.session_key}"


async def connect(cookie: str | None) -> tuple[WebsocketCommunicator, bool, Any]:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, "/ws/notices/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
def test_a_manager_sees_the_alert_live_once_it_commits(make_user, make_agent):
    cookie = session_cookie(make_user("mgr-live", roles=("manager",)))
    agent = make_agent("noisy-bot").agent

    async def scenario() -> None:
        communicator, connected, _ = await connect(cookie)
        assert connected
        for _ in range(2):
            await sync_to_async(deny)(agent)
        assert await communicator.receive_nothing(timeout=0.3)
        await sync_to_async(deny)(agent)
        pushed = await communicator.receive_from(timeout=5)
        assert 'id="notices" hx-swap-oob="afterbegin"' in pushed
        assert "Repeated guardrail violations" in pushed
        assert "Agent noisy-bot was refused 3 times by its guardrails within an hour" in pushed
        assert f'href="{VIOLATIONS_OF}noisy-bot"' in pushed
        await sync_to_async(deny)(agent)
        assert await communicator.receive_nothing(timeout=0.3), "once per hour"
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("roles", "tier"), [(("approver",), "vp_engineering"), (("compliance",), ""), ((), "")]
)
def test_a_non_manager_socket_is_refused(make_user, roles, tier):
    cookie = session_cookie(make_user(roles=roles, tier=tier))

    async def scenario() -> None:
        _communicator, connected, code = await connect(cookie)
        assert not connected
        assert code == 4403
        _communicator, connected, code = await connect(None)
        assert not connected
        assert code == 4401  # no session: log in

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_a_manager_who_loses_the_role_is_disconnected_on_the_next_notice(make_user):
    staying = make_user("mgr-stays", roles=("manager",))
    leaving = make_user("mgr-leaves", roles=("manager",))
    cookies = session_cookie(staying), session_cookie(leaving)
    notice = live.Notice(title="Heads up", message="Something happened.", url=VIOLATIONS_OF)

    async def scenario() -> None:
        kept, connected, _ = await connect(cookies[0])
        assert connected
        lost, connected, _ = await connect(cookies[1])
        assert connected
        await sync_to_async(leaving.groups.clear)()
        await sync_to_async(live.announce_to_managers)(notice)
        assert "Something happened." in await kept.receive_from(timeout=5)
        closed = await lost.receive_output(timeout=5)
        assert closed["type"] == "websocket.close"
        assert closed["code"] == 4403
        await kept.disconnect()

    async_to_sync(scenario)()
