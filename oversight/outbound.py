"""Outbound HTTP that cannot be aimed inside the network (SPEC §9.11).

An agent chooses its callback URL, so without care it could make the server post to 127.0.0.1,
the cloud metadata address or a database on the private network (SSRF). Two rules hold:

1. **Where.** Every address the host name resolves to must be public (`is_public`), otherwise
   nothing is sent — unless configuration allows private destinations (all of them, or given
   networks). IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) are
   judged by the IPv4 address inside too, because a NAT64 gateway, a dual-stack socket or a
   tunnel delivers them there.
2. **The address checked is the address connected to.** The name is resolved once per attempt;
   the connection goes to an address from that answer, never to a second lookup's (DNS
   rebinding: a name with a zero TTL answers a public address to the check and 127.0.0.1 to the
   connection).

How the connection is pinned to the checked address: the request's URL carries the IP address,
the `Host` header carries the original host and port, and for HTTPS the `sni_hostname` request
extension (documented by httpx and httpcore) carries the original name, which httpcore hands to
`SSLContext.wrap_socket(server_hostname=...)`. So the server sees the name in SNI and its
certificate is verified against the name, exactly as when connecting by name. (The other way, an
httpcore network backend that overrides `connect_tcp`, can only be installed through httpx's
private `_pool` attribute.)

Also: environment proxies and .netrc are ignored (a proxy would resolve the name itself), and
redirects are never followed (a 3xx names a second destination that nobody checked).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping, Sequence

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052; the IPv4 in the low 32 bits
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_DEFAULT_PORTS = {"http": 80, "https": 443}


class RefusedAddress(Exception):
    """The destination is, or resolves to, an address this deployment does not send to."""


# IPv4-translated addresses (SIIT, RFC 2765/7915): an IPv4 address in the low 32 bits.
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
# Ranges Python's `is_global` counts as global that no public host has: deprecated site-local
# (RFC 3879), the documentation prefix 3fff::/20 (RFC 9637) and SRv6 SIDs 5f00::/16 (RFC 9602).
_NOT_GLOBAL_V6 = tuple(
    ipaddress.IPv6Network(net) for net in ("fec0::/10", "3fff::/20", "5f00::/16")
)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, where some network path delivers it."""
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _NAT64_WELL_KNOWN or address in _IPV4_TRANSLATED:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # the Teredo server, and the client (de-obfuscated)
    return found


def is_public(address: IPAddress) -> bool:
    """True for a unicast address on the public internet; False for loopback, private,
    link-local (cloud metadata), shared (CGNAT), reserved, multicast and documentation
    addresses, and for IPv6 addresses that carry such an IPv4 address.

    A network-specific NAT64 prefix (RFC 6052 §2.2, chosen by an operator) cannot be recognised
    here; deployments behind one allow only what they mean to through the networks setting."""
    if address.is_multicast or not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        # No real host has an IPv4-compatible address, and some stacks route one to the IPv4
        # address in its low bits; Python counts ::/96 (beyond ::1 and ::) as global.
        if address in _IPV4_COMPATIBLE or any(address in net for net in _NOT_GLOBAL_V6):
            return False
        return all(is_public(inner) for inner in embedded_ipv4(address))
    return True


def is_allowed(
    address: IPAddress, *, allow_private: bool, allowed_networks: Sequence[IPNetwork] = ()
) -> bool:
    return allow_private or is_public(address) or any(address in net for net in allowed_networks)


def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses `host` has now, in the resolver's order of preference, each once.
    An IP literal resolves to itself."""
    addresses: list[IPAddress] = []
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    allow_private: bool,
    allowed_networks: Sequence[IPNetwork] = (),
) -> httpx.Response:
    """POST `content` to `url`, connecting only to addresses the rules above allow.

    Raises RefusedAddress when any address of the host is not allowed (one private answer
    among public ones is enough: which one a connection would use is not ours to choose), and
    httpx's exceptions for network failures."""
    target = httpx.URL(url)
    if target.scheme not in _DEFAULT_PORTS:
        raise RefusedAddress(f"Only http and https URLs are posted to, not {target.scheme!r}.")
    host = target.raw_host.decode("ascii")  # the IDNA (ASCII) form that DNS and TLS use
    addresses = resolve(host, target.port or _DEFAULT_PORTS[target.scheme])
    if not addresses:
        raise RefusedAddress(f"{host} has no address")
    for address in addresses:
        if not is_allowed(address, allow_private=allow_private, allowed_networks=allowed_networks):
            raise RefusedAddress(f"{host} resolves to {address}, which is not a public address")

    pinned_headers = {**headers, "Host": target.netloc.decode("ascii")}
    extensions: dict[str, str] = {}
    if target.scheme == "https" and not _is_ip_literal(host):
        extensions["sni_hostname"] = host
    client = httpx.Client(
        trust_env=False, verify=_tls_context(), follow_redirects=False, timeout=timeout
    )
    with client:
        failure: httpx.ConnectError | None = None
        for address in addresses:
            try:
                return client.post(
                    target.copy_with(host=str(address)),
                    content=content,
                    headers=pinned_headers,
                    extensions=extensions,
                )
            except httpx.ConnectError as exc:
                # Nothing was sent, so the name's next address may be tried (an IPv6 address
                # on a host without an IPv6 route, say). A timeout is not retried: it has used
                # the attempt's time.
                failure = exc
        assert failure is not None  # there was at least one address
        raise failure


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tls_context() -> ssl.SSLContext:
    # trust_env=False (no proxies) would also stop httpx reading SSL_CERT_FILE / SSL_CERT_DIR,
    # which an operator with a private CA relies on, so they are read here.
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _tls_context_for(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """Loading a CA bundle takes ~30 ms, so a process builds each context once."""
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return httpx.create_ssl_context()  # certifi's bundle, httpx's default
