"""SIEM streaming (SPEC §7): the audit events reach a syslog collector (TCP, TLS) and an HTTPS
endpoint in order, at least once, resuming from the last accepted sequence after an outage, in
bounded time whatever the peer does; the backlog is visible. Against real local peers."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connections, transaction
from django.db.models import F

from audit import siem, tasks
from audit.chain import CANONICAL_FIELDS, canonical_event_bytes, canonical_json, format_timestamp
from audit.events import EventType
from audit.models import AuditEvent, SiemCursor
from audit.services import record_event
from tests.audit.db import execute, tampering
from tests.conftest import client_for
from tests.support import tls
from tests.support.peers import Peer
from tests.support.receivers import FakeDns, Receiver
from tests.support.syslog import SyslogCollector, parse_rfc5424

SIEM_NAME = "siem.test"
DEADLINE = 1.0
SLACK = 1.0  # scheduling noise on a busy machine


@pytest.fixture(autouse=True)
def _siem_settings(settings: Any) -> None:
    settings.OVERSIGHT_SIEM_SYSLOG_URL = ""
    settings.OVERSIGHT_SIEM_HTTPS_URL = ""
    settings.OVERSIGHT_SIEM_HTTPS_AUTHORIZATION = ""
    settings.OVERSIGHT_SIEM_ALLOW_PRIVATE = True  # the test's peers listen on loopback
    settings.OVERSIGHT_SIEM_ALLOW_NETWORKS = []


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns()
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kwargs: fake.getaddrinfo(real, *args, **kwargs)
    )
    fake.answers[SIEM_NAME] = [["127.0.0.1"]]
    return fake


def _server_context(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, name: str) -> ssl.SSLContext:
    """A TLS server context with a certificate for `name`, from a CA the sender trusts as an
    operator's private CA (SSL_CERT_FILE)."""
    certificates = tls.issue(tmp_path, dns_name=name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    return context


def _collector(
    kind: str, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> SyslogCollector:
    """A syslog collector over TCP or TLS, configured as the destination."""
    context = _server_context(tmp_path, monkeypatch, SIEM_NAME) if kind == "tls" else None
    server = SyslogCollector(tls_context=context)
    settings.OVERSIGHT_SIEM_SYSLOG_URL = server.url(SIEM_NAME)
    return server


@pytest.fixture(params=["tcp", "tls"])
def collector(
    request: pytest.FixtureRequest,
    settings: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    dns: FakeDns,
) -> Iterator[SyslogCollector]:
    server = _collector(request.param, settings, tmp_path, monkeypatch)
    yield server
    server.close()


@pytest.fixture
def tcp_collector(
    settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, dns: FakeDns
) -> Iterator[SyslogCollector]:
    server = _collector("tcp", settings, tmp_path, monkeypatch)
    yield server
    server.close()


def _events(count: int, **fields: Any) -> list[AuditEvent]:
    return [
        record_event(
            event_type=fields.get("event_type", EventType.POLICY_CHANGED),
            subject=fields.get("subject", ("policy", f"policy-{i}")),
            payload=fields.get("payload", {"i": i}),
        )
        for i in range(count)
    ]


def _ship() -> int:
    (destination,) = siem.destinations()
    return siem.ship(destination)


def _cursor() -> SiemCursor:
    return SiemCursor.objects.get()


def _past_the_backoff() -> None:
    """As if the last claim were long ago (instead of waiting out the backoff)."""
    SiemCursor.objects.update(last_attempt_at=F("last_attempt_at") - siem.RETRY_MAX)


def _canonical(event: AuditEvent) -> bytes:
    return canonical_event_bytes({name: getattr(event, name) for name in CANONICAL_FIELDS})


def _sequences(messages: list[bytes]) -> list[int]:
    return [int(parse_rfc5424(message).params["seq"]) for message in messages]


# --- syslog over TCP and TLS -----------------------------------------------------------------


@pytest.mark.django_db
def test_events_reach_the_syslog_collector_in_order_complete_and_well_formed(
    collector, monkeypatch, settings
):
    monkeypatch.setattr(siem, "BATCH_EVENTS", 2)  # several batches on one connection
    events = [
        *_events(3),
        *_events(1, event_type=EventType.EXECUTION_MISMATCH, subject=("request", "r-1")),
        *_events(1, event_type=EventType.REQUEST_DECIDED, payload={"note": "ünïcode ✓"}),
    ]

    assert _ship() == 5

    messages = collector.wait_for(5)
    assert _sequences(messages) == [1, 2, 3, 4, 5]
    assert collector.errors == []
    assert collector.leftovers == []
    for message, event in zip(messages, events, strict=True):
        parsed = parse_rfc5424(message)
        assert parsed.pri == 10 * 8 + siem.severity(event.event_type)
        assert parsed.version == 1
        assert parsed.timestamp == format_timestamp(event.occurred_at)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", parsed.timestamp)
        assert parsed.hostname == urlsplit(settings.OVERSIGHT_BASE_URL).hostname
        assert (parsed.app_name, parsed.procid, parsed.msgid) == (
            "oversight",
            "-",
            event.event_type,
        )
        assert parsed.sd_id == "oversight@32473"
        assert parsed.params["seq"] == str(event.sequence)
        assert parsed.params["hash"] == event.hash
        assert parsed.params["prev"] == event.prev_hash
        # The MSG is the canonical event: what the hash covers, checkable by the collector.
        assert parsed.msg == _canonical(event)
        assert hashlib.sha256(event.prev_hash.encode() + parsed.msg).hexdigest() == event.hash
    assert [parse_rfc5424(m).pri for m in messages][3] == 82  # the mismatch, critical
    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts, cursor.last_error) == (5, 0, "")
    assert cursor.delivered_at is not None
    assert collector.connections == 1


@pytest.mark.django_db
def test_brackets_quotes_and_backslashes_in_structured_data_are_escaped(collector):
    (event,) = _events(1, subject=("policy", 'x]"\\y'))

    assert _ship() == 1

    (message,) = collector.wait_for(1)
    assert b'subject="policy:x\\]\\"\\\\y"' in message
    parsed = parse_rfc5424(message)  # strict: an unescaped one would fail here
    assert parsed.params["subject"] == 'policy:x]"\\y'
    assert parsed.msg == _canonical(event)


@pytest.mark.django_db
def test_a_collector_that_is_down_loses_nothing_and_delivery_resumes_at_the_cursor(collector):
    _events(3)
    assert _ship() == 3
    assert _sequences(collector.wait_for(3)) == [1, 2, 3]
    port = collector.port
    collector.close()  # the collector goes away
    _events(3)

    assert _ship() == 0

    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts) == (3, 1)
    assert "ConnectionRefusedError" in cursor.last_error
    assert cursor.last_attempt_at is not None
    # Backing off: the next tick does not try again.
    assert _ship() == 0
    assert _cursor().attempts == 1

    back = SyslogCollector(port=port, tls_context=collector.tls_context)
    try:
        _past_the_backoff()
        assert _ship() == 3
        assert _sequences(back.wait_for(3)) == [4, 5, 6]  # from the cursor: no gap, no repeat
    finally:
        back.close()
    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts, cursor.last_error) == (6, 0, "")


class _Killed(BaseException):
    """The worker dies (SIGKILL, the OOM killer): nothing after it runs."""


@pytest.mark.django_db
def test_a_worker_killed_between_sending_and_recording_sends_the_batch_again(
    collector, monkeypatch
):
    _events(3)

    def killed(self: Any, to: int) -> None:
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(siem._Claim, "advance", killed)
        with pytest.raises(_Killed):
            _ship()
    assert _sequences(collector.wait_for(3)) == [1, 2, 3]
    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts) == (0, 1)

    # Its claim holds until the lease is over: nobody sends meanwhile...
    assert _ship() == 0
    assert _cursor().attempts == 1
    # ... and then the batch is sent again: at least once, in order, never a gap.
    _past_the_backoff()
    assert _ship() == 3
    assert _sequences(collector.wait_for(6)) == [1, 2, 3, 1, 2, 3]
    assert _cursor().delivered_sequence == 3


@pytest.mark.django_db
def test_a_gap_in_the_trail_stops_the_stream_before_it(tcp_collector):
    _events(5)
    with tampering():
        execute("DELETE FROM audit_auditevent WHERE sequence = 3")

    assert _ship() == 2

    assert _sequences(tcp_collector.wait_for(2)) == [1, 2]
    cursor = _cursor()
    assert cursor.delivered_sequence == 2
    assert "event #3 is missing" in cursor.last_error


@pytest.mark.django_db
def test_a_collector_with_another_names_certificate_is_refused(
    settings, tmp_path, monkeypatch, dns
):
    context = _server_context(tmp_path, monkeypatch, "someone-else.test")
    server = SyslogCollector(tls_context=context)
    settings.OVERSIGHT_SIEM_SYSLOG_URL = server.url(SIEM_NAME)
    try:
        _events(1)
        assert _ship() == 0
    finally:
        server.close()
    assert server.messages == []
    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts) == (0, 1)
    assert "certificate" in cursor.last_error.lower()


@pytest.mark.django_db
def test_private_addresses_are_refused_unless_configuration_allows_them(settings):
    settings.OVERSIGHT_SIEM_ALLOW_PRIVATE = False
    server = SyslogCollector()
    settings.OVERSIGHT_SIEM_SYSLOG_URL = server.url()
    try:
        _events(1)
        assert _ship() == 0
        assert "not a public address" in _cursor().last_error
        assert server.connections == 0  # nothing was even connected

        settings.OVERSIGHT_SIEM_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
        _past_the_backoff()
        assert _ship() == 1
        assert _sequences(server.wait_for(1)) == [1]
    finally:
        server.close()


# --- slow peers: cut at the deadline ---------------------------------------------------------


def _cut_at_the_deadline(started: float, deadline: float = DEADLINE) -> None:
    elapsed = time.monotonic() - started
    assert deadline - 0.05 <= elapsed <= deadline + SLACK, f"took {elapsed:.2f} s"


def _send_buffer_max() -> int:
    """The most a TCP socket buffers for sending (Linux autotuning's ceiling)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 2**20


@pytest.mark.django_db
@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheme", ["tls", "https"])
def test_a_peer_that_never_answers_is_cut_at_the_deadline(settings, scheme):
    # TLS: the handshake never starts; HTTPS: neither the handshake nor an answer.
    settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS = DEADLINE
    peer = Peer("hang")
    if scheme == "tls":
        settings.OVERSIGHT_SIEM_SYSLOG_URL = f"tls://127.0.0.1:{peer.port}"
    else:
        settings.OVERSIGHT_SIEM_HTTPS_URL = f"https://127.0.0.1:{peer.port}/hook"
    _events(2)
    try:
        started = time.monotonic()
        assert _ship() == 0
        _cut_at_the_deadline(started)
    finally:
        peer.close()
    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts) == (0, 1)
    assert "DeadlineExceeded" in cursor.last_error


@pytest.mark.django_db
@pytest.mark.timeout(60)
def test_a_syslog_collector_that_stops_reading_is_cut_at_the_deadline(settings):
    # Plain TCP has no answer to wait for: writes land in the socket buffers until they are
    # full (the collector's is kept small), and then only the deadline ends the run.
    deadline = 2.0  # big events take a while to read: half of it to start batches in
    settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS = deadline
    server = SyslogCollector(reading=False)
    settings.OVERSIGHT_SIEM_SYSLOG_URL = server.url()
    blob = 2**20
    count = _send_buffer_max() // blob + 4
    _events(count, payload={"blob": "x" * blob})
    try:
        started = time.monotonic()
        _ship()
        _cut_at_the_deadline(started, deadline)
    finally:
        server.close()
    cursor = _cursor()
    assert cursor.delivered_sequence < count  # the rest waits for the next run
    assert "DeadlineExceeded" in cursor.last_error


# --- HTTPS JSON ------------------------------------------------------------------------------


@pytest.fixture
def endpoint(
    settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, dns: FakeDns
) -> Iterator[Receiver]:
    receiver = Receiver(tls_context=_server_context(tmp_path, monkeypatch, SIEM_NAME))
    settings.OVERSIGHT_SIEM_HTTPS_URL = f"https://{SIEM_NAME}:{receiver.port}/hook?token=abc"
    yield receiver
    receiver.close()


def _posted(endpoint: Receiver) -> list[list[dict[str, Any]]]:
    return [json.loads(sent["body"]) for sent in endpoint.received]


@pytest.mark.django_db
def test_events_are_posted_as_json_arrays_in_order_with_their_hashes(
    endpoint, settings, monkeypatch
):
    settings.OVERSIGHT_SIEM_HTTPS_AUTHORIZATION = "Splunk 0123-abcd"
    monkeypatch.setattr(siem, "BATCH_EVENTS", 2)
    events = _events(5)

    assert _ship() == 5

    batches = _posted(endpoint)
    assert [[item["sequence"] for item in batch] for batch in batches] == [[1, 2], [3, 4], [5]]
    items = [item for batch in batches for item in batch]
    for item, event in zip(items, events, strict=True):
        assert set(item) == {*CANONICAL_FIELDS, "hash", "prev_hash"}
        assert (item["hash"], item["prev_hash"]) == (event.hash, event.prev_hash)
        # What a receiver does to check the chain: the canonical fields, hashed after prev.
        canonical = canonical_json({name: item[name] for name in CANONICAL_FIELDS})
        assert hashlib.sha256((item["prev_hash"] + canonical).encode()).hexdigest() == item["hash"]
    headers = endpoint.received[0]["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Splunk 0123-abcd"
    assert endpoint.server_names == [SIEM_NAME] * 3  # verified against the name
    cursor = _cursor()
    # The cursor's name leaves out the query (it may hold a secret): the admin shows it.
    assert cursor.destination == f"https://{SIEM_NAME}:{endpoint.port}/hook"
    assert (cursor.delivered_sequence, cursor.attempts, cursor.last_error) == (5, 0, "")


@pytest.mark.django_db
def test_a_5xx_counts_an_attempt_with_its_error_and_nothing_is_lost(endpoint):
    endpoint.status = 503
    _events(2)

    assert _ship() == 0

    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts) == (0, 1)
    assert cursor.last_error == "RejectedBatch: HTTP 503"
    assert _ship() == 0  # backing off: no second request yet
    assert len(endpoint.received) == 1

    endpoint.status = 200
    _past_the_backoff()
    assert _ship() == 2
    assert [[item["sequence"] for item in b] for b in _posted(endpoint)] == [[1, 2], [1, 2]]
    cursor = _cursor()
    assert (cursor.delivered_sequence, cursor.attempts, cursor.last_error) == (2, 0, "")


# --- one runner at a time, status, wiring ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(60)
def test_two_workers_never_ship_the_same_batch_at_once(settings, monkeypatch):
    # Both workers read the cursor as due before either takes it (the barrier holds each in
    # `due` until the other is there too): only the database can settle who runs.
    server = SyslogCollector()
    settings.OVERSIGHT_SIEM_SYSLOG_URL = server.url()
    with transaction.atomic():
        _events(6)
    (destination,) = siem.destinations()
    SiemCursor.objects.create(destination=destination.name)
    together = threading.Barrier(2)
    real_due = siem.due

    def due_together(*args: Any) -> bool:
        together.wait(timeout=10)
        return real_due(*args)

    monkeypatch.setattr(siem, "due", due_together)
    shipped: list[int] = []

    def worker() -> None:
        try:
            shipped.append(siem.ship(destination))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(shipped) == [0, 6]
        assert _sequences(server.wait_for(6)) == [1, 2, 3, 4, 5, 6]
        assert server.connections == 1
    finally:
        server.close()
    assert _cursor().delivered_sequence == 6


@pytest.mark.django_db
def test_status_shows_each_destinations_backlog(settings, tcp_collector):
    settings.OVERSIGHT_SIEM_HTTPS_URL = "https://siem.example.com/ingest?token=secret"
    assert [row["backlog"] for row in siem.status()] == [0, 0]
    _events(4)

    syslog, https = siem.status()
    assert syslog["destination"] == tcp_collector.url(SIEM_NAME)
    assert (syslog["delivered_sequence"], syslog["backlog"], syslog["delivered_at"]) == (0, 4, None)
    assert https["destination"] == "https://siem.example.com/ingest"
    assert https["backlog"] == 4

    siem.ship(siem.destinations()[0])
    _events(1)
    syslog, https = siem.status()
    assert (syslog["delivered_sequence"], syslog["backlog"], syslog["last_error"]) == (4, 1, "")
    assert syslog["delivered_at"] is not None
    assert (https["delivered_sequence"], https["backlog"]) == (0, 5)


@pytest.mark.django_db
def test_no_destination_configured_means_no_status_and_nothing_done():
    _events(2)
    assert siem.status() == []
    assert tasks.ship_siem() == {}
    assert not SiemCursor.objects.exists()


@pytest.mark.django_db
def test_beat_ships_every_configured_destination_on_the_outbound_queue(
    settings, tcp_collector, endpoint
):
    _events(3)

    shipped = tasks.ship_siem()

    assert sorted(shipped.values()) == [3, 3]
    assert _sequences(tcp_collector.wait_for(3)) == [1, 2, 3]
    assert [item["sequence"] for item in _posted(endpoint)[0]] == [1, 2, 3]
    assert settings.CELERY_TASK_ROUTES[tasks.ship_siem.name] == {"queue": "outbound"}


@pytest.mark.parametrize("configured", [True, False], ids=["configured", "off"])
def test_beat_ships_every_tick_only_when_a_destination_is_configured(configured):
    """A task per tick that has nothing to do still costs the worker its round trip."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERSIGHT_SIEM")}
    env.update(
        DEBUG="true",
        SECRET_KEY="test-only-" + "x" * 50,
        DJANGO_SETTINGS_MODULE="oversight.settings",
    )
    if configured:
        env["OVERSIGHT_SIEM_HTTPS_URL"] = "https://siem.example.com/in"
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([[e['task'], e['schedule']] for e in s.CELERY_BEAT_SCHEDULE.values()]"
        " + [s.OVERSIGHT_TIMER_TICK_SECONDS]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    *entries, tick = json.loads(out.stdout)
    shipping = [schedule for task, schedule in entries if task == tasks.ship_siem.name]
    assert shipping == ([tick] if configured else [])


@pytest.mark.django_db
def test_the_admin_lists_each_cursor_with_its_backlog(tcp_collector, make_user):
    root = make_user("root-admin", roles=("admin",))
    root.is_superuser = True
    root.save()
    _events(3)
    siem.ship(siem.destinations()[0])
    _events(2)

    page = client_for(root).get("/admin/audit/siemcursor/")

    assert page.status_code == 200
    html = page.content.decode()
    assert tcp_collector.url(SIEM_NAME) in html
    # What status() says, read after the page (logging in is audited too).
    (row,) = siem.status()
    assert row["backlog"] >= 2
    assert f'<td class="field-backlog">{row["backlog"]}</td>' in html
    assert client_for(root).get("/admin/audit/siemcursor/add/").status_code == 403
