"""Misbehaving peers, real sockets on loopback: callback servers that hang, drip, stream, flood,
fail or reset, and an SMTP server that accepts connections and stalls.

Each records what it saw from its side of the wire (which delivery each POST carried, how long
each connection stayed open), so a test can judge the product from outside.
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field

from tests.support.peers import read_request
from tests.support.smtp import SmtpSink

# The kinds of callback server (CallbackPeer.kind):
OK = "ok"  # answers 200 at once
HANG = "hang"  # reads the POST, never answers
DRIP = "drip"  # answers one byte every DRIP_SECONDS, so no single read ever times out
STREAM = "stream"  # answers 200 and a chunked body that never ends (~2 MB/s)
FLOOD = "flood"  # answers 200 and gigabytes, as fast as loopback carries them
ERROR = "error500"  # answers 500, every time
RESET = "reset"  # reads the POST, then resets the connection (TCP RST)
HOLD_FIRST = "hold_first"  # holds each delivery's first POST unanswered; answers 200 after

DRIP_SECONDS = 3.0
_STREAM_CHUNK = b"x" * 65536
_FLOOD_BLOCK = b"x" * (1 << 20)


@dataclass
class Connection:
    opened: float  # time.monotonic()
    closed: float | None = None
    delivery: str = ""  # the X-Oversight-Delivery header of the POST it carried

    def held(self, now: float) -> float:
        """Seconds the client kept this connection open (so far, if it still is)."""
        return (self.closed or now) - self.opened


@dataclass
class Received:
    delivery: str
    at: float  # time.monotonic()
    answered: bool  # whether this peer answered it 2xx, in full


class CallbackPeer:
    """An HTTP server for callbacks that behaves as `kind` says (see the constants above)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.connections: list[Connection] = []
        self.received: list[Received] = []
        self._closing = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                peer._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def deliveries(self) -> dict[str, int]:
        """How many POSTs each delivery id reached this peer with."""
        counts: dict[str, int] = {}
        for received in list(self.received):
            counts[received.delivery] = counts.get(received.delivery, 0) + 1
        return counts

    def longest_hold(self) -> float:
        now = time.monotonic()
        return max((c.held(now) for c in list(self.connections)), default=0.0)

    def close(self) -> None:
        """Stop, and drop every connection still open (releasing whoever is stuck on one)."""
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    # --- one connection ---------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        connection = Connection(opened=time.monotonic())
        self.connections.append(connection)
        with self._lock:
            self._sockets.add(sock)
        try:
            request = read_request(sock)
            if request is None:  # the client closed first
                return
            delivery = request[0].get(b"x-oversight-delivery", b"").decode()
            connection.delivery = delivery
            self._answer(sock, delivery)
        except OSError:
            pass  # the client went away: that is its right
        finally:
            connection.closed = time.monotonic()
            with self._lock:
                self._sockets.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _answer(self, sock: socket.socket, delivery: str) -> None:
        kind = self.kind
        if kind == HOLD_FIRST:
            kind = OK if any(r.delivery == delivery for r in self.received) else HANG
        received = Received(delivery, time.monotonic(), answered=False)
        self.received.append(received)
        if kind == OK:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            received.answered = True
        elif kind == ERROR:
            sock.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")
        elif kind == RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == HANG:
            self._until_client_leaves(sock)
        elif kind == DRIP:
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            for byte in answer:
                sock.sendall(bytes([byte]))
                if self._until_client_leaves(sock, DRIP_SECONDS):
                    return
        elif kind == STREAM:
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (len(_STREAM_CHUNK), _STREAM_CHUNK)
            while not self._closing.wait(0.03):
                sock.sendall(chunk)
        elif kind == FLOOD:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (8 << 30))
            while not self._closing.is_set():
                sock.sendall(_FLOOD_BLOCK)
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _until_client_leaves(self, sock: socket.socket, seconds: float = math.inf) -> bool:
        """Wait up to `seconds` for the client to close; True if it did (or this peer closes):
        the moment it lets go is what a test measures."""
        until = time.monotonic() + seconds
        while not self._closing.is_set() and time.monotonic() < until:
            if _client_left(sock, wait=min(0.05, max(0.0, until - time.monotonic()))):
                return True
        return self._closing.is_set()


def _client_left(sock: socket.socket, wait: float = 0.0) -> bool:
    if not _readable([sock], wait):
        return False
    try:
        return sock.recv(4096, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _readable(sockets: list[socket.socket], wait: float) -> list[socket.socket]:
    """The sockets ready to read within `wait` seconds (poll: the test process may hold more
    than select's 1,024 descriptors, e.g. while thousands of long-polls wait)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in sockets}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(wait * 1000)]


@dataclass
class StallingSmtp:
    """An SMTP server that can stall: a TCP front for a real SMTP sink (tests.support.smtp). While
    stalled it accepts connections and says nothing (not even the greeting); when resumed,
    held connections whose clients still wait, and new ones, reach the sink."""

    sink: SmtpSink = field(default_factory=SmtpSink)
    held: int = 0  # connections that arrived while stalled

    def __post_init__(self) -> None:
        self._flowing = threading.Event()
        self._flowing.set()
        self._closing = threading.Event()
        front = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                front._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closing.set()
        self._flowing.set()
        self.server.shutdown()
        self.server.server_close()
        self.sink.close()

    def _serve(self, client: socket.socket) -> None:
        if not self._flowing.is_set():
            self.held += 1
            self._flowing.wait()
        if self._closing.is_set() or _client_left(client):
            return
        with socket.create_connection(("127.0.0.1", self.sink.port)) as upstream:
            sockets = [client, upstream]
            while not self._closing.is_set():
                for source in _readable(sockets, 0.5):
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is client else client).sendall(data)
