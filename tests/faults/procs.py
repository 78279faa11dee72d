"""The processes under test, seen from outside through /proc (Linux): a process tree, each
process's resident memory and threads, who holds a TCP connection to a port, and a watchdog
standing in for the kernel's OOM killer."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MB = 1 << 20


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(child) for child in text.split())
    except OSError:  # gone meanwhile
        pass
    return found


def tree(root: int) -> list[int]:
    """`root` and every process under it (a supervisor, its Celery workers, their pools)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children(pid))
    return found


def _status(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss(pid: int) -> int:
    """Resident memory in bytes (0 when the process is gone)."""
    return _status(pid, "VmRSS") * 1024


def threads(pid: int) -> int:
    return _status(pid, "Threads")


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _inodes_connected_to(port: int) -> set[str]:
    """Inodes of the established TCP sockets whose remote port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    return inodes


def connected_to(root: int, port: int) -> list[int]:
    """The processes under `root` holding a TCP connection to `port` on this machine."""
    wanted = _inodes_connected_to(port)
    return [pid for pid in tree(root) if _socket_inodes(pid) & wanted]


@dataclass
class Kill:
    pid: int
    rss: int
    command: str


@dataclass
class MemoryWatchdog:
    """Samples the resident memory of every process under the roots every `interval` s, keeps
    the peak, and — the OOM killer's stand-in, a memory cap on the worker — SIGKILLs any process
    past `cap` bytes. Also keeps a machine shared by other people from being eaten by a worker
    that reads a peer's endless body into memory."""

    roots: list[int]
    cap: int = 300 * MB
    interval: float = 0.02
    peak: int = 0
    peak_command: str = ""
    kills: list[Kill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        """Start a new measurement window (one test's)."""
        self.peak, self.peak_command, self.kills = 0, "", []

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids: list[int] = []
        refreshed = 0.0
        while not self._stop.wait(self.interval):
            if time.monotonic() - refreshed > 0.1:  # new pool processes appear now and then
                pids = [pid for root in self.roots for pid in tree(root)]
                refreshed = time.monotonic()
            for pid in pids:
                size = rss(pid)
                if size > self.peak:
                    self.peak, self.peak_command = size, command_line(pid)
                if size > self.cap:
                    kill = Kill(pid, size, command_line(pid))
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        continue
                    self.kills.append(kill)
