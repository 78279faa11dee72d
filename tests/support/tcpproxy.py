"""A TCP proxy in a process of its own, in front of a real server, for outage tests.

The processes under test connect to the proxy instead of the server; the test then makes the
server look gone, or stuck, without touching the real one (which other tests share):

- `cut()`: every connection through the proxy is reset and new ones are refused, as when the
  server's host goes away or it restarts;
- `stall()`: connections are accepted and nothing more is ever forwarded either way, as when
  the server hangs or a firewall drops its packets;
- `restore()`: new connections go through again (the ones cut or stalled stay dead).

Run as `python -m tests.support.tcpproxy LISTEN_PORT TARGET_HOST TARGET_PORT STATE_FILE`;
SIGUSR1 cuts, SIGHUP stalls, SIGUSR2 restores, and the proxy writes its mode to STATE_FILE once
in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

from tests.support.live import BASE_DIR, wait_until
from tools.services import free_port

UP, CUT, STALLED = "up", "cut", "stalled"


class TcpProxy:
    """The test's handle on a proxy process (see the module's docstring)."""

    def __init__(self, tmp: Path, target_host: str, target_port: int) -> None:
        self.port = free_port()
        self.target = (target_host, target_port)
        self.state = tmp / f"tcpproxy-{self.port}.state"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "tests.support.tcpproxy", str(self.port), self.target[0],
                   str(self.target[1]), str(self.state)]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=BASE_DIR, start_new_session=True)
        self._wait_for(UP)

    def cut(self) -> None:
        self._switch(signal.SIGUSR1, CUT)

    def stall(self) -> None:
        self._switch(signal.SIGHUP, STALLED)

    def restore(self) -> None:
        self._switch(signal.SIGUSR2, UP)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _switch(self, sig: signal.Signals, mode: str) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self._wait_for(mode)

    def _wait_for(self, mode: str) -> None:
        def reached() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, "the proxy died"
            return self.state.exists() and self.state.read_text() == mode

        wait_until(reached, timeout=10)


# --- the proxy process -----------------------------------------------------------------------


class _Proxy:
    def __init__(self, port: int, target: tuple[str, int], state: Path) -> None:
        self.port = port
        self.target = target
        self.state = state
        self.server: asyncio.Server | None = None
        self.resumed = asyncio.Event()  # set while not stalled
        self.resumed.set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(self.cut()))
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.stall()))
        loop.add_signal_handler(signal.SIGUSR2, lambda: loop.create_task(self.restore()))
        await self.listen()
        self.write_state(UP)
        await asyncio.Event().wait()

    async def listen(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self.accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.reset_all()
        self.resumed.set()
        self.write_state(CUT)

    async def stall(self) -> None:
        self.resumed.clear()
        await self.listen()
        self.write_state(STALLED)

    async def restore(self) -> None:
        self.reset_all()  # what was cut or stalled does not come back to life
        self.resumed.set()
        await self.listen()
        self.write_state(UP)

    def reset_all(self) -> None:
        for writer in list(self.writers):
            # A zero linger turns close() into a reset (RST), as a host that went away sends.
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.writers.clear()

    def write_state(self, mode: str) -> None:
        partial = self.state.with_suffix(".tmp")
        partial.write_text(mode)
        partial.replace(self.state)

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        await self.resumed.wait()  # a connection made while stalled is held, never answered
        if writer not in self.writers:
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.writers.discard(writer)
            writer.transport.abort()
            return
        self.writers.add(up_writer)
        await asyncio.gather(
            self.pipe(reader, up_writer), self.pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            self.writers.discard(end)
            end.transport.abort()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.resumed.wait()
            if writer not in self.writers:
                return
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


def main(argv: list[str]) -> None:
    port, host, target_port, state = argv
    os.chdir(BASE_DIR)
    asyncio.run(_Proxy(int(port), (host, int(target_port)), Path(state)).run())


if __name__ == "__main__":
    main(sys.argv[1:])
