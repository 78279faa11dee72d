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
extension (documented by httpcore) carries the original name, which httpcore hands to
`SSLContext.wrap_socket(server_hostname=...)`. So the server sees the name in SNI and its
certificate is verified against the name, exactly as when connecting by name.

Also: environment proxies and .netrc play no part (httpcore reads no environment; a proxy would
resolve the name itself), and redirects are never followed (httpcore follows none: a 3xx names
a second destination that nobody checked).

**Time and size** (SPEC §9.6). A peer must not hold a worker however it misbehaves: hang after
the connection, drip its headers or body a byte at a time, stream without end. HTTP clients
time out per read (a byte every few seconds never trips a 10 s read timeout) and read whole
bodies into memory, so each attempt has one **total deadline**
(`OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS`, 10 s) covering resolution, connection, TLS, sending, the
status line, the headers and the body, and reads at most
`OVERSIGHT_OUTBOUND_MAX_RESPONSE_BYTES` (64 KiB) of the body; the status code decides, the rest
of the body is never read. The deadline holds two ways:

- every blocking step gets only what is left of it: httpcore (httpx's transport, used directly
  here) runs over a network backend whose streams cap each connect, read and write timeout at
  the time left, and fail at once when none is; the name is resolved in a helper thread that is
  abandoned at the deadline (`getaddrinfo` takes no timeout);
- a watchdog timer shuts the attempt's socket down at the deadline, which wakes any call still
  blocked on it, should some step (a partial write, a library change) escape the first rule.

So an attempt returns within the deadline plus scheduling noise. httpcore's h11 parser refuses
headers over 100 KiB, and the body is read in chunks of at most 64 KiB: memory stays bounded.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from django.conf import settings

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
    allow_private: bool,
    allowed_networks: Sequence[IPNetwork] = (),
    timeout: float | None = None,
    max_response_bytes: int | None = None,
) -> Answer:
    """POST `content` to `url`, connecting only to addresses the rules above allow, and return
    within `timeout` seconds (default `OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS`) having read at most
    `max_response_bytes` of the answer's body (default `OVERSIGHT_OUTBOUND_MAX_RESPONSE_BYTES`).

    Raises RefusedAddress when any address of the host is not allowed (one private answer
    among public ones is enough: which one a connection would use is not ours to choose),
    DeadlineExceeded when no status line and headers came within the time, and httpcore's
    exceptions for other network failures."""
    clock = _Clock(settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS if timeout is None else timeout)
    limit = (
        settings.OVERSIGHT_OUTBOUND_MAX_RESPONSE_BYTES
        if max_response_bytes is None
        else max_response_bytes
    )
    target = httpx.URL(url)
    if target.scheme not in _DEFAULT_PORTS:
        raise RefusedAddress(f"Only http and https URLs are posted to, not {target.scheme!r}.")
    host = target.raw_host.decode("ascii")  # the IDNA (ASCII) form that DNS and TLS use
    port = target.port or _DEFAULT_PORTS[target.scheme]
    addresses = _resolve_within(clock, host, port)
    if not addresses:
        raise RefusedAddress(f"{host} has no address")
    for address in addresses:
        if not is_allowed(address, allow_private=allow_private, allowed_networks=allowed_networks):
            raise RefusedAddress(f"{host} resolves to {address}, which is not a public address")

    request_headers = [*headers.items(), ("Host", target.netloc.decode("ascii"))]
    extensions: dict[str, Any] = {
        "timeout": dict.fromkeys(("connect", "read", "write", "pool"), clock.seconds)
    }
    if target.scheme == "https" and not _is_ip_literal(host):
        extensions["sni_hostname"] = host
    with _Watchdog(clock) as watchdog:
        pool = httpcore.ConnectionPool(
            ssl_context=_tls_context(),
            retries=0,
            network_backend=_DeadlineBackend(clock, watchdog),
        )
        with pool:
            failure: httpcore.ConnectError | None = None
            for address in addresses:
                pinned = httpcore.URL(
                    scheme=target.raw_scheme,
                    host=str(address).encode("ascii"),
                    port=port,
                    target=target.raw_path,
                )
                try:
                    return _exchange(
                        pool, pinned, content, request_headers, extensions, limit, clock
                    )
                except httpcore.ConnectError as exc:
                    # Nothing was sent, so the name's next address may be tried (an IPv6
                    # address on a host without an IPv6 route, say). A timeout is not retried:
                    # it has used the attempt's time.
                    failure = exc
            assert failure is not None  # there was at least one address
            raise failure


def _exchange(
    pool: httpcore.ConnectionPool,
    url: httpcore.URL,
    content: bytes,
    headers: Sequence[tuple[str, str]],
    extensions: dict[str, Any],
    limit: int,
    clock: _Clock,
) -> Answer:
    try:
        with pool.stream(
            "POST", url, headers=headers, content=content, extensions=extensions
        ) as response:
            body = bytearray()
            complete = True
            try:
                for chunk in response.iter_stream():
                    room = limit - len(body)
                    if len(chunk) > room:  # the rest is left unread: closing drops the connection
                        body += chunk[:room]
                        complete = False
                        break
                    body += chunk
            except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
                complete = False  # the status line came: it is the answer
            return Answer(status_code=response.status, body=bytes(body), complete=complete)
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
        # Every step is given at most what is left, so a timeout is the deadline; after it, a
        # broken connection is the watchdog's doing.
        if not isinstance(exc, httpcore.TimeoutException) and clock.left() > 0:
            raise
        raise DeadlineExceeded(
            f"{url.host.decode()} gave no answer within {clock.seconds:g} s"
        ) from exc


@dataclass(frozen=True)
class Answer:
    """What a peer answered. The status code decides; `body` is what was read of the body:
    `complete` is False when it was cut at the size cap or the deadline, or broken off."""

    status_code: int
    body: bytes
    complete: bool


class DeadlineExceeded(TimeoutError):
    """The attempt's total time ran out before an answer (status line and headers) came."""


class _Clock:
    """An attempt's deadline, and what is left of it for each blocking step."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def cap(self, timeout: float | None, expired: type[Exception]) -> float:
        """The time one socket operation may take: what it asks, never more than is left."""
        left = self.left()
        if left <= 0:
            raise expired(f"the attempt's {self.seconds:g} s are up")
        return left if timeout is None else min(timeout, left)


def _resolve_within(clock: _Clock, host: str, port: int) -> list[IPAddress]:
    """`resolve`, in a helper thread that is abandoned at the deadline: `getaddrinfo` takes no
    timeout, and a stalled resolver could hold it for the resolver's own timeouts (seconds to a
    minute). The abandoned thread ends when the resolver gives up; nothing waits for it."""
    found: Future[list[IPAddress]] = Future()

    def run() -> None:
        try:
            found.set_result(resolve(host, port))
        except BaseException as exc:  # handed to the caller
            found.set_exception(exc)

    threading.Thread(target=run, name=f"resolve {host}", daemon=True).start()
    try:
        return found.result(timeout=max(clock.left(), 0))
    except TimeoutError:
        if found.done():  # the resolver's own error, not ours
            raise
        raise DeadlineExceeded(
            f"resolving {host} took longer than the attempt's {clock.seconds:g} s"
        ) from None


class _Watchdog:
    """At the deadline, shuts down every socket of the attempt, which wakes a call blocked on
    it (`shutdown`, unlike `close`, does that from another thread). It holds a duplicate of each
    socket's descriptor: TLS detaches the original socket object, the kernel socket stays."""

    def __init__(self, clock: _Clock) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._fired = False
        self._timer = threading.Timer(max(clock.left(), 0), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            duplicate = sock.dup()
            self._sockets.append(duplicate)
            if self._fired:
                _shut(duplicate)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed or never connected
        sock.shutdown(socket.SHUT_RDWR)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each step given only what is left of the deadline."""

    def __init__(self, clock: _Clock, watchdog: _Watchdog) -> None:
        self._inner = httpcore.SyncBackend()
        self._clock = clock
        self._watchdog = watchdog

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=self._clock.cap(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        self._watchdog.watch(stream.get_extra_info("socket"))
        return _DeadlineStream(stream, self._clock)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, clock: _Clock) -> None:
        self._inner = inner
        self._clock = clock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout=self._clock.cap(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout=self._clock.cap(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # CPython bounds the whole handshake by the socket's timeout, not each read of it.
        secured = self._inner.start_tls(
            ssl_context,
            server_hostname=server_hostname,
            timeout=self._clock.cap(timeout, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(secured, self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tls_context() -> ssl.SSLContext:
    # httpcore reads no environment, so SSL_CERT_FILE / SSL_CERT_DIR, which an operator with a
    # private CA relies on, are read here.
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _tls_context_for(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """Loading a CA bundle takes ~30 ms, so a process builds each context once."""
    if cafile or capath:
        return ssl.create_default_context(cafile=cafile or None, capath=capath or None)
    return httpx.create_ssl_context()  # certifi's bundle, httpx's default
