"""Which addresses outbound requests may reach (SPEC §9.11): the rule, as a table."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.exceptions import ImproperlyConfigured

from oversight import outbound
from oversight.env import env_networks


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
