"""A real SMTP server for tests: just enough of the protocol to receive what the product sends
through Django's SMTP mailer (a worker process, or this test process)."""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from email.message import Message


class SmtpSink:
    """Just enough of an SMTP server to receive what the product sends."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text: str) -> None:
                self.wfile.write(f"{text}\r\n".encode())

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                recipients: list[str] = []
                while line := self.rfile.readline():
                    command = line.strip().upper()
                    if command.startswith((b"EHLO", b"HELO")):
                        self.reply("250 sink")
                    elif command.startswith(b"MAIL"):
                        recipients = []
                        self.reply("250 OK")
                    elif command.startswith(b"RCPT"):
                        recipients.append(line.split(b":", 1)[1].strip().strip(b"<>").decode())
                        self.reply("250 OK")
                    elif command == b"DATA":
                        self.reply("354 go on")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk[1:] if chunk.startswith(b"..") else chunk
                        # Parsed as a mail client would show it: headers unfolded and decoded.
                        parsed = email.message_from_bytes(data, policy=email.policy.default)
                        sink.messages.append((recipients, parsed))
                        self.reply("250 OK")
                    elif command == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 OK")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, address: str) -> list[Message]:
        return [message for recipients, message in self.messages if address in recipients]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
