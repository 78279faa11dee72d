"""A real local syslog collector for tests: TCP, or TLS (RFC 5425), reading octet-counted frames
(RFC 6587 §3.4.1) and keeping each message; and a strict parser of RFC 5424 messages."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass


class SyslogCollector:
    """Listens on 127.0.0.1 (`port`, or a free one); each connection is read on a thread of its
    own and every complete frame lands in `messages`, in arrival order. `reading=False` makes a
    collector that accepts and never reads (its receive buffer kept small), so a sender's
    writes stall once the buffers are full. Whatever a connection left unframed at its end is
    in `leftovers` (an incomplete frame), and framing errors in `errors`."""

    def __init__(
        self,
        *,
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        reading: bool = True,
        handshake_delay: float = 0.0,
    ) -> None:
        self.messages: list[bytes] = []
        self.leftovers: list[bytes] = []
        self.errors: list[str] = []
        self.connections = 0
        self.tls_context = tls_context
        self._reading = reading
        self._handshake_delay = handshake_delay
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not reading:  # inherited by accepted connections: a small window, soon full
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        self._listener = listener
        self.port = listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'tls' if self.tls_context else 'tcp'}://{host}:{self.port}"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """The messages, once there are at least `count` (polled, with a deadline)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        # shutdown first: a bare close() leaves a listener that a thread is blocked accepting
        # on still listening (Linux), and connections would still be taken.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in list(self._open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self._handshake_delay:
                self._stop.wait(self._handshake_delay)
            stream: socket.socket = conn
            if self.tls_context is not None:
                stream = self.tls_context.wrap_socket(conn, server_side=True)
            if not self._reading:
                self._stop.wait()
                return
            self._read_frames(stream)

    def _read_frames(self, stream: socket.socket) -> None:
        buffer = b""
        while chunk := stream.recv(65536):
            buffer += chunk
            while True:
                match = re.match(rb"([1-9][0-9]{0,8}) ", buffer)
                if match is None:
                    if len(buffer) > 10 or (buffer and not buffer[:1].isdigit()):
                        self.errors.append(f"not an octet-counted frame: {buffer[:40]!r}")
                        return
                    break
                end = match.end() + int(match.group(1))
                if len(buffer) < end:
                    break
                self.messages.append(buffer[match.end() : end])
                buffer = buffer[end:]
        if buffer:
            self.leftovers.append(buffer)


@dataclass(frozen=True)
class Rfc5424:
    """The parts of one RFC 5424 message with one SD-ELEMENT."""

    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd_id: str
    params: dict[str, str]  # unescaped
    msg: bytes


_HEADER = re.compile(rb"<([0-9]{1,3})>([1-9][0-9]{0,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SD_NAME = re.compile(rb"[!#-<>-\\^-~]{1,32}")  # PRINTUSASCII except '=', SP, ']', '"'


def parse_rfc5424(message: bytes) -> Rfc5424:
    """Parse strictly: a PARAM-VALUE may hold `"`, `\\` and `]` only escaped (RFC 5424 §6.3.3),
    so an unescaped one fails here. Raises ValueError."""
    header = _HEADER.match(message)
    if header is None:
        raise ValueError(f"not an RFC 5424 header: {message[:80]!r}")
    for field, limit in ((3, 255), (4, 48), (5, 128), (6, 32)):
        if len(header.group(field + 1)) > limit:
            raise ValueError(f"header field {field + 1} longer than {limit}")
    rest = message[header.end() :]
    if not rest.startswith(b"["):
        raise ValueError("no structured data")
    sd_id = _SD_NAME.match(rest, 1)
    if sd_id is None:
        raise ValueError("no SD-ID")
    position = sd_id.end()
    params: dict[str, str] = {}
    while rest[position : position + 1] == b" ":
        name = _SD_NAME.match(rest, position + 1)
        if name is None or rest[name.end() : name.end() + 2] != b'="':
            raise ValueError(f"bad SD-PARAM at {rest[position : position + 20]!r}")
        position = name.end() + 2
        value = bytearray()
        while True:
            char = rest[position : position + 1]
            if not char:
                raise ValueError("unterminated PARAM-VALUE")
            if char == b"\\" and rest[position + 1 : position + 2] in (b'"', b"\\", b"]"):
                value += rest[position + 1 : position + 2]
                position += 2
                continue
            if char == b"]":
                raise ValueError("an unescaped ']' in a PARAM-VALUE")
            position += 1
            if char == b'"':
                break
            value += char
        params[name.group().decode()] = value.decode("utf-8")
    if rest[position : position + 2] != b"] ":
        raise ValueError(f"structured data not closed before the MSG: {rest[position:][:20]!r}")
    return Rfc5424(
        pri=int(header.group(1)),
        version=int(header.group(2)),
        timestamp=header.group(3).decode(),
        hostname=header.group(4).decode(),
        app_name=header.group(5).decode(),
        procid=header.group(6).decode(),
        msgid=header.group(7).decode(),
        sd_id=sd_id.group().decode(),
        params=params,
        msg=rest[position + 2 :],
    )
