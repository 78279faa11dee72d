"""A flood of long-polls, from a process of its own (`flood`): the agents waiting are not the
agent whose creates a test times, and their thousands of sockets must not slow that agent's
client (in one process, its calls waited on the flood's event loop for the interpreter's lock:
creates "took" 1.4 s that the server had answered in 50 ms)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


def flood(url: str, targets: list[tuple[str, str]], wait: int) -> list[Answer]:
    """Every `(key, request_id)` long-polled with `?wait=wait` at once; their answers."""
    return asyncio.run(all_at_once(url, targets, wait))


@dataclass
class Answer:
    request_id: str
    sent: float  # time.time()
    answered: float
    status: int  # 0: no answer
    body: dict[str, Any]
    retry_after: str | None = None
    error: str = ""


async def long_poll(url: str, key: str, request_id: str, wait: int) -> Answer:
    """One GET …?wait=WAIT over a connection of its own (HTTP/1.1, then closed)."""
    parts = urlsplit(url)
    sent = time.time()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), timeout=30
        )
        writer.write(
            f"GET /api/v1/approval-requests/{request_id}?wait={wait} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=wait + 15)
    except (OSError, TimeoutError) as exc:
        return Answer(request_id, sent, time.time(), 0, {}, error=f"{type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()
    answered = time.time()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 "):
        return Answer(request_id, sent, answered, 0, {}, error=f"no answer: {data[:100]!r}")
    headers = {n.strip().lower(): v.strip() for n, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {"unparsed": body[:200].decode("latin-1")}
    return Answer(request_id, sent, answered, int(lines[0].split()[1]), parsed,
                  headers.get("retry-after"))  # fmt: skip


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


async def all_at_once(url: str, targets: list[tuple[str, str]], wait: int) -> list[Answer]:
    """Open every long-poll, a hundred at a time 10 ms apart, and wait for all answers."""
    tasks = []
    for n, (key, request_id) in enumerate(targets):
        tasks.append(asyncio.create_task(long_poll(url, key, request_id, wait)))
        if n % 100 == 99:
            await asyncio.sleep(0.01)
    return list(await asyncio.gather(*tasks))
