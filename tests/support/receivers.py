"""Test doubles for outbound calls: a real local HTTP(S) receiver, and a fake DNS resolver."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


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


def signature(secret: str, sent: dict[str, Any]) -> str:
    """The signature a receiver holding `secret` expects on what it was sent (docs/api.md)."""
    timestamp = sent["headers"]["X-Oversight-Timestamp"]
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + sent["body"], hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


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
