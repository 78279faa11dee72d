"""Signed callbacks through the transactional outbox, delivered by a real Celery worker."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import signal
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from approvals import services, tasks
from approvals.models import CallbackDelivery
from oversight.outbox import DeliveryStatus
from tests import live, tls

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class Receiver:
    """A local HTTP(S) endpoint that records what it is sent and answers with `status`."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.received: list[dict[str, Any]] = []
        self.server_names: list[str | None] = []  # TLS SNI, as each client sent it
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        scheme = "http"
        if tls_context is not None:
            tls_context.sni_callback = lambda _sock, name, _ctx: receiver.server_names.append(name)
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{host}:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class FakeDns:
    """The resolver, answering made-up names from `answers`: the first list on the first lookup,
    the next on the next, the last one from then on. DNS is outside a test's control, so it is
    the one thing faked here; every connection a test makes is real. Other names resolve as
    usual (the test's own servers are reached by address)."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def getaddrinfo(self, real: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return real(host, port, *args, **kwargs)
        self.lookups.append(name)
        turn = min(self.lookups.count(name), len(self.answers[name])) - 1
        results: list[tuple[Any, ...]] = []
        for text in self.answers[name][turn]:
            sockaddr: tuple[Any, ...]
            if ipaddress.ip_address(text).version == 4:
                family, sockaddr = socket.AF_INET, (text, int(port))
            else:
                family, sockaddr = socket.AF_INET6, (text, int(port), 0, 0)
            results.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return results


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDns()
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *args, **kwargs: fake.getaddrinfo(real, *args, **kwargs)
    )
    return fake


def test_a_decision_is_posted_signed_to_the_callback_url(
    celery_worker_process, receiver, new_request, make_agent, approvers
):
    agent = make_agent().agent
    request = new_request(agent=agent, callback_url=receiver.url)
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    live.wait_until(lambda: receiver.received, timeout=15)
    sent = receiver.received[0]
    body = json.loads(sent["body"])
    assert body["id"] == str(request.pk)
    assert body["status"] == "approved"
    timestamp = sent["headers"]["X-Oversight-Timestamp"]
    expected = hmac.new(
        agent.webhook_secret.encode(), f"{timestamp}.".encode() + sent["body"], hashlib.sha256
    )
    assert sent["headers"]["X-Oversight-Signature"] == f"sha256={expected.hexdigest()}"
    delivery = live.wait_until(
        lambda: CallbackDelivery.objects.filter(
            request=request, status=DeliveryStatus.DELIVERED
        ).first()
    )
    assert delivery.attempt_log.count() == 1


def test_a_rolled_back_decision_sends_nothing(receiver, new_request, approvers):
    request = new_request(callback_url=receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        raise RuntimeError("rolled back")
    assert not CallbackDelivery.objects.filter(request=request).exists()
    assert tasks.sweep_callbacks() == 0
    assert receiver.received == []


def test_failures_are_recorded_and_retried_with_backoff(receiver, new_request, approvers):
    receiver.status = 500
    request = new_request(callback_url=receiver.url)
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    delivery = CallbackDelivery.objects.get(request=request)
    assert tasks.sweep_callbacks() == 1  # first attempt: the receiver answers 500
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.attempt_log.get().status_code == 500
    assert tasks.sweep_callbacks() == 0, "not due again before its backoff"
    receiver.status = 204
    CallbackDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert tasks.sweep_callbacks() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 204]


def test_a_callback_survives_a_worker_killed_before_it_ran(
    tmp_path, receiver, new_request, approvers
):
    # No worker is running while the decision commits: the task waits in Redis.
    worker = live.start_worker(tmp_path)
    worker.stop(signal.SIGKILL)
    request = new_request(callback_url=receiver.url)
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert receiver.received == []
    restarted = live.start_worker(tmp_path)
    try:
        live.wait_until(lambda: receiver.received, timeout=20)
    finally:
        restarted.stop()
    assert json.loads(receiver.received[0]["body"])["id"] == str(request.pk)


def test_an_unusable_callback_url_is_recorded_and_does_not_stop_the_others(
    receiver, new_request, approvers
):
    bad = new_request(callback_url="http://example.com/hook")
    good = new_request(callback_url=receiver.url)
    services.reject_request(request_id=bad.pk, reviewer=approvers["lead"], reason="no")
    services.reject_request(request_id=good.pk, reviewer=approvers["lead"], reason="no")
    # As if it had slipped past validation: a host the HTTP client cannot even encode.
    CallbackDelivery.objects.filter(request=bad).update(url="http://xn--a.com/hook")
    assert tasks.sweep_callbacks() == 2
    assert CallbackDelivery.objects.get(request=good).status == DeliveryStatus.DELIVERED
    poisoned = CallbackDelivery.objects.get(request=bad)
    assert poisoned.status == DeliveryStatus.PENDING
    assert poisoned.attempts == 1
    assert poisoned.attempt_log.get().error


# --- where callbacks may go (SPEC §9.11) -------------------------------------------------------

REBINDING = "hooks.rebinding.test"


def _two_receivers_on_one_port(first_host: str, second_host: str) -> tuple[Receiver, Receiver]:
    """Two servers on the same port of two loopback addresses, so one callback URL can reach
    either, depending only on the address its host name is resolved to."""
    for _ in range(20):
        first = Receiver(first_host)
        try:
            return first, Receiver(second_host, port=first.port)
        except OSError:  # that port is taken on the second address: try another
            first.close()
    raise RuntimeError(f"no port free on both {first_host} and {second_host}")


def test_a_name_rebound_to_an_internal_address_after_the_check_is_not_connected_to(
    settings, dns, new_request, approvers
):
    # 127.0.0.2 plays the agent's public host (no test may reach the internet): the
    # configuration allows it, as it would allow an agents' network; 127.0.0.1 stays refused.
    settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE = False
    settings.OVERSIGHT_CALLBACK_ALLOW_NETWORKS = [ipaddress.ip_network("127.0.0.2/32")]
    allowed, internal = _two_receivers_on_one_port("127.0.0.2", "127.0.0.1")
    try:
        # The attacker's DNS answers the allowed address to the check, loopback afterwards.
        dns.answers[REBINDING] = [["127.0.0.2"], ["127.0.0.1"]]
        request = new_request(callback_url=f"http://{REBINDING}:{allowed.port}/hook")
        services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
        assert tasks.sweep_callbacks() == 1
    finally:
        allowed.close()
        internal.close()
    assert internal.received == [], "the callback reached the internal address"
    assert len(allowed.received) == 1, "the callback went to the address that was checked"
    assert allowed.received[0]["headers"]["Host"] == f"{REBINDING}:{allowed.port}"
    assert dns.lookups == [REBINDING], "the name is resolved once per attempt"
    assert CallbackDelivery.objects.get(request=request).status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    "answer",
    [
        ["::ffff:127.0.0.1"],  # IPv4-mapped loopback
        ["::ffff:169.254.169.254"],  # IPv4-mapped cloud metadata
        ["64:ff9b::7f00:1"],  # NAT64 (RFC 6052 well-known prefix) of 127.0.0.1
        ["64:ff9b::a9fe:a9fe"],  # NAT64 of 169.254.169.254
        ["64:ff9b::a00:8"],  # NAT64 of 10.0.0.8
        ["64:ff9b:1::a00:8"],  # the local-use NAT64 prefix (RFC 8215)
        ["2002:7f00:1::1"],  # 6to4 of 127.0.0.1
        ["2001:0:4136:e378:8000:63bf:80ff:fffe"],  # Teredo, client 127.0.0.1
        ["::127.0.0.1"],  # IPv4-compatible (deprecated) loopback
        ["::a00:8"],  # IPv4-compatible 10.0.0.8
        ["fd00:ec2::254"],  # AWS's IPv6 metadata address (unique local)
        ["100.100.100.200"],  # Alibaba Cloud's metadata address (shared address space)
        ["224.0.0.1"],  # multicast
        ["0.0.0.0"],  # "this host"  # noqa: S104
        ["93.184.215.14", "127.0.0.1"],  # one public address among the answers is not enough
    ],
)
def test_private_addresses_in_any_disguise_are_refused(
    settings, dns, new_request, approvers, answer
):
    settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE = False
    dns.answers[REBINDING] = [answer]
    request = new_request(callback_url=f"http://{REBINDING}:8080/hook")
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    assert tasks.sweep_callbacks() == 1
    attempt = CallbackDelivery.objects.get(request=request).attempt_log.get()
    assert attempt.status_code is None
    assert "not a public address" in attempt.error


@pytest.mark.parametrize(
    "literal", ["[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]", "[::127.0.0.1]", "[2002:a9fe:a9fe::]"]
)
def test_private_address_literals_in_any_disguise_are_refused(
    settings, new_request, approvers, literal
):
    settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE = False
    request = new_request(callback_url=f"http://{literal}:8080/hook")
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    assert tasks.sweep_callbacks() == 1
    attempt = CallbackDelivery.objects.get(request=request).attempt_log.get()
    assert "not a public address" in attempt.error


HTTPS_NAME = "hooks.agents.test"


def _tls_server(tmp_path: Any, monkeypatch: Any, *, certificate_for: str) -> Receiver:
    certificates = tls.issue(tmp_path, dns_name=certificate_for)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    # The sender trusts the test CA as an operator's private CA would be trusted.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_file))
    return Receiver(tls_context=context)


def test_an_https_callback_is_verified_against_its_host_name_not_the_address(
    tmp_path, monkeypatch, settings, dns, new_request, approvers
):
    settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE = True  # the TLS server listens on loopback
    server = _tls_server(tmp_path, monkeypatch, certificate_for=HTTPS_NAME)
    try:
        dns.answers[HTTPS_NAME] = [["127.0.0.1"]]
        request = new_request(callback_url=f"https://{HTTPS_NAME}:{server.port}/hook")
        services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
        assert tasks.sweep_callbacks() == 1
    finally:
        server.close()
    delivery = CallbackDelivery.objects.get(request=request)
    assert delivery.status == DeliveryStatus.DELIVERED, delivery.attempt_log.get().error
    assert server.server_names == [HTTPS_NAME]
    assert server.received[0]["headers"]["Host"] == f"{HTTPS_NAME}:{server.port}"


def test_an_https_callback_to_a_server_with_another_names_certificate_is_refused(
    tmp_path, monkeypatch, settings, dns, new_request, approvers
):
    settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE = True
    server = _tls_server(tmp_path, monkeypatch, certificate_for="someone-else.test")
    try:
        dns.answers[HTTPS_NAME] = [["127.0.0.1"]]
        request = new_request(callback_url=f"https://{HTTPS_NAME}:{server.port}/hook")
        services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
        assert tasks.sweep_callbacks() == 1
    finally:
        server.close()
    attempt = CallbackDelivery.objects.get(request=request).attempt_log.get()
    assert attempt.status_code is None
    assert "CERTIFICATE_VERIFY_FAILED" in attempt.error
    assert server.received == []
