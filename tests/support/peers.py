"""Misbehaving peers for tests: real local servers that hang, drip, stream without end or reset
the connection, as a hostile or broken callback receiver (or mail server) would (SPEC §9.6);
and the task time limit that stops a worker blocked on one."""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

# One byte this often: far below any per-read timeout, so only a total deadline cuts it.
DRIP_INTERVAL = 0.5
CHUNK = b"x" * 65536


class Peer:
    """A local TCP server whose every connection is handled by `behaviour`, one thread each.
    `sent` counts the bytes it wrote; `stop` ends every connection's wait."""

    def __init__(self, behaviour: str, *, stream_limit: int = 50 * 2**20) -> None:
        self.behaviour = behaviour
        self.stream_limit = stream_limit
        self.sent = 0
        self.connections = 0
        self.stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._handle: Callable[[socket.socket], None] = getattr(self, f"_{behaviour}")
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self._listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client gave up: that is the point
            self._handle(conn)

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    # --- behaviours ---------------------------------------------------------------------------

    def _hang(self, conn: socket.socket) -> None:
        """Accept, then never read nor write (over HTTPS: the TLS handshake never starts)."""
        self.stop.wait()

    def _hang_after_headers(self, conn: socket.socket) -> None:
        read_request(conn)
        self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        self.stop.wait()

    def _drip_headers(self, conn: socket.socket) -> None:
        read_request(conn)
        self._send(conn, b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not self.stop.wait(DRIP_INTERVAL):
            self._send(conn, b"a")

    def _drip_body(self, conn: socket.socket) -> None:
        read_request(conn)
        self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while not self.stop.wait(DRIP_INTERVAL):
            self._send(conn, b"a")

    def _endless(self, conn: socket.socket) -> None:
        """A body without end, as fast as the client reads (up to `stream_limit`, a safety net
        for a client that reads it all into memory)."""
        read_request(conn)
        self._send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        while self.sent < self.stream_limit and not self.stop.is_set():
            self._send(conn, CHUNK)
        self.stop.wait()

    def _reset(self, conn: socket.socket) -> None:
        read_request(conn)
        # SO_LINGER with a zero timeout: close() sends a TCP RST instead of a FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@contextlib.contextmanager
def soft_time_limit(seconds: float) -> Iterator[None]:
    """Celery's soft time limit, as billiard delivers it: a signal whose handler raises
    SoftTimeLimitExceeded in the task, wherever it is blocked."""

    def expire(*_: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def read_request(sock: socket.socket) -> tuple[dict[bytes, bytes], bytes] | None:
    """Read one HTTP request: its headers (names in lower case) and body, or None if the client
    closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return headers, body
