"""Where callbacks may go (SPEC §9.11): public addresses only, unless configuration allows
more; the address checked is the address connected to. Real connections to local servers; only
DNS answers are made up."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

import pytest

from approvals import services, tasks
from approvals.models import CallbackDelivery
from oversight.outbox import DeliveryStatus
from tests.support import tls
from tests.support.receivers import Receiver

pytestmark = pytest.mark.django_db

REBINDING = "hooks.rebinding.test"


def _two_receivers_on_one_port(first_host: str, second_host: str) -> tuple[Receiver, Receiver]:
    """Two servers on the same port of two loopback addresses, so one callback URL can reach
    either, depending only on the address its host name is resolved to."""
    for _ in range(20):
        try:
            first = Receiver(first_host)
        except OSError:  # macOS has only 127.0.0.1 on loopback; Linux has 127/8
            pytest.skip(f"{first_host} is not a local address here")
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
