"""Outbound requests: which addresses they may reach (SPEC §9.11), the rule as a table; and
their time and size limits (SPEC §9.6), against real local servers that misbehave."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpcore
import pytest
from django.core.exceptions import ImproperlyConfigured

from oversight import outbound
from oversight.env import env_networks
from tests.support.peers import Peer


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8: how an IPv6-only network reaches it
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.100.100.200", False),  # Alibaba Cloud's metadata, in the shared (CGNAT) space
        ("192.0.2.1", False),  # documentation
        ("0.0.0.0", False),  # noqa: S104
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),  # AWS's IPv6 metadata address
        ("ff0e::1", False),  # global-scope multicast is still not a host
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),  # IPv4-mapped: judged by the IPv4 address inside
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::a00:8", False),
        ("::127.0.0.1", False),
        ("::8.8.8.8", False),  # IPv4-compatible: deprecated, refused whatever it carries
        ("2002:7f00:1::1", False),
        ("2002:808:808::1", False),  # 6to4 is deprecated (RFC 7526); Python says not global
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo
        # Found by review: Python counts these as global.
        ("::ffff:0:7f00:1", False),  # IPv4-translated (SIIT) loopback
        ("::ffff:0:a9fe:a9fe", False),  # ... and cloud metadata
        ("fec0::1", False),  # site-local (deprecated, still routed inside some networks)
        ("3fff::1", False),  # documentation (RFC 9637)
        ("5f00::1", False),  # SRv6 segment identifiers
    ],
)
def test_only_public_unicast_addresses_are_public(address, public):
    assert outbound.is_public(ipaddress.ip_address(address)) is public


def test_configured_networks_are_allowed_and_nothing_else():
    networks = [ipaddress.ip_network("10.20.0.0/16")]
    allowed = [
        address
        for address in ("10.20.3.4", "10.21.0.1", "169.254.169.254", "::ffff:10.20.3.4")
        if outbound.is_allowed(
            ipaddress.ip_address(address), allow_private=False, allowed_networks=networks
        )
    ]
    assert allowed == ["10.20.3.4"]
    metadata = ipaddress.ip_address("169.254.169.254")
    assert outbound.is_allowed(metadata, allow_private=True)


def test_the_networks_setting_is_parsed_strictly(monkeypatch):
    monkeypatch.setenv("OVERSIGHT_CALLBACK_ALLOW_NETWORKS", "10.20.0.0/16, fd12::/48,192.0.2.7")
    assert [str(n) for n in env_networks("OVERSIGHT_CALLBACK_ALLOW_NETWORKS")] == [
        "10.20.0.0/16",
        "fd12::/48",
        "192.0.2.7/32",
    ]
    for bad in ("10.20.0.1/16", "intranet", "10.0.0.0/33"):
        monkeypatch.setenv("OVERSIGHT_CALLBACK_ALLOW_NETWORKS", bad)
        with pytest.raises(ImproperlyConfigured, match="OVERSIGHT_CALLBACK_ALLOW_NETWORKS"):
            env_networks("OVERSIGHT_CALLBACK_ALLOW_NETWORKS")


# --- time and size (SPEC §9.6): real local servers that misbehave -------------------------------

DEADLINE = 2.0
SLACK = 1.0  # scheduling noise on a busy machine; the point is "not per read, not forever"


def _post(url: str, **limits: Any) -> outbound.Answer:
    return outbound.post(
        url,
        content=b'{"ok": true}',
        headers={"Content-Type": "application/json"},
        allow_private=True,
        timeout=limits.pop("timeout", DEADLINE),
        **limits,
    )


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    server = Peer(request.param)
    yield server
    server.close()


def _within_the_deadline(started: float) -> None:
    elapsed = time.monotonic() - started
    assert DEADLINE - 0.05 <= elapsed <= DEADLINE + SLACK, f"took {elapsed:.2f} s"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("peer", "scheme"),
    [("hang", "http"), ("hang", "https"), ("drip_headers", "http")],
    indirect=["peer"],
)
def test_a_peer_that_never_completes_its_headers_is_cut_at_the_deadline(peer, scheme):
    # https: the TLS handshake never completes. drip_headers: a byte every 0.5 s, so no single
    # read ever waits long; only a deadline over the whole attempt stops it.
    started = time.monotonic()
    with pytest.raises(outbound.DeadlineExceeded, match=f"within {DEADLINE:g} s"):
        _post(peer.url.replace("http:", f"{scheme}:"))
    _within_the_deadline(started)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("peer", ["drip_headers"], indirect=True)
def test_the_watchdog_cuts_a_step_that_escapes_the_time_left(peer, monkeypatch):
    # As if a step ignored the time left (a library change, a partial write): each read may
    # take the whole deadline again, and only the watchdog's shutdown of the socket ends it.
    monkeypatch.setattr(outbound._Clock, "cap", lambda self, timeout, expired: self.seconds)
    started = time.monotonic()
    with pytest.raises(outbound.DeadlineExceeded):
        _post(peer.url)
    _within_the_deadline(started)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("peer", ["hang_after_headers", "drip_body"], indirect=True)
def test_a_peer_that_stalls_or_drips_its_body_is_cut_at_the_deadline_and_its_status_counts(peer):
    started = time.monotonic()
    answer = _post(peer.url)
    _within_the_deadline(started)
    assert answer.status_code == 200
    assert not answer.complete
    assert len(answer.body) < 20  # the drips that came in the time


@pytest.mark.timeout(60)
@pytest.mark.parametrize("peer", ["endless"], indirect=True)
def test_an_endless_body_is_read_up_to_the_cap_and_no_further(peer):
    tracemalloc.start()
    try:
        started = time.monotonic()
        answer = _post(peer.url, max_response_bytes=65536)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1, "the cap ends it, not the deadline"
    assert answer.status_code == 200
    assert len(answer.body) == 65536
    assert not answer.complete
    assert peak < 1_000_000, f"{peak} bytes allocated while reading"
    assert peer.sent < peer.stream_limit, "the client stopped reading"


@pytest.mark.parametrize("peer", ["reset"], indirect=True)
def test_a_connection_reset_is_a_network_error_at_once(peer):
    started = time.monotonic()
    with pytest.raises((httpcore.ReadError, httpcore.RemoteProtocolError)):
        _post(peer.url)
    assert time.monotonic() - started < 1


@pytest.mark.timeout(60)
def test_a_resolver_that_stalls_is_abandoned_at_the_deadline(monkeypatch):
    real = socket.getaddrinfo

    def stalling(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "stalls.dns.test":
            time.sleep(DEADLINE + 3)  # a resolver waiting out its own timeouts
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stalling)
    started = time.monotonic()
    with pytest.raises(outbound.DeadlineExceeded, match=r"resolving stalls\.dns\.test"):
        _post("http://stalls.dns.test:9/hook")
    _within_the_deadline(started)


def test_the_limits_default_to_10_s_and_64_kib_and_a_deadline_past_the_lease_is_refused(settings):
    assert settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS == 10
    assert settings.OVERSIGHT_OUTBOUND_MAX_RESPONSE_BYTES == 65536
    env = {**os.environ, "DEBUG": "true", "OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS": "60"}
    started = subprocess.run(
        [sys.executable, "-c", "import oversight.settings"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert started.returncode != 0
    assert "OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS=60 must be at most 30" in started.stderr
