"""Thousands of agents long-polling one web process (SPEC §3 `?wait=N`: "must not hold a worker
thread per waiting agent hostage"; issue 19: no OS thread parked per waiter, or a documented
cap with 429 + Retry-After past it; other requests unaffected while thousands wait)."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.faults import figures, harness, procs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.faults]

WAITERS = 2000
AGENTS = 20
WAIT = 15  # seconds each long-poll may wait


@dataclass
class Answer:
    request_id: str
    sent: float  # time.time()
    answered: float
    status: int  # 0: no answer
    body: dict[str, Any]
    retry_after: str | None = None
    error: str = ""


async def long_poll(url: str, key: str, request_id: str) -> Answer:
    """One GET …?wait=WAIT over a connection of its own (HTTP/1.1, then closed)."""
    parts = urlsplit(url)
    sent = time.time()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port), timeout=30
        )
        writer.write(
            f"GET /api/v1/approval-requests/{request_id}?wait={WAIT} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=WAIT + 15)
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


async def all_at_once(url: str, targets: list[tuple[str, str]]) -> list[Answer]:
    """Open every long-poll, a hundred at a time 10 ms apart, and wait for all answers."""
    tasks = []
    for n, (key, request_id) in enumerate(targets):
        tasks.append(asyncio.create_task(long_poll(url, key, request_id)))
        if n % 100 == 99:
            await asyncio.sleep(0.01)
    return list(await asyncio.gather(*tasks))


def most_in_flight(answers: list[Answer]) -> int:
    edges = sorted([(a.sent, 1) for a in answers] + [(a.answered, -1) for a in answers])
    current = best = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def misanswered(answer: Answer, kind: str, happened: datetime | None) -> str:
    """What is wrong with one long-poll's answer ('' if nothing): `happened` is when its request
    was decided or expired (None: still pending)."""
    if answer.status == 429:
        return "" if answer.retry_after else f"429 without Retry-After: {answer.body}"
    if answer.status != 200:
        return f"{kind}: HTTP {answer.status} {answer.error or answer.body}"
    got, held = answer.body.get("status"), answer.answered - answer.sent
    at = happened.timestamp() if happened else math.inf
    if at > answer.sent + WAIT + 1:  # nothing to tell: the wait runs out
        ok = got == "pending" and WAIT - 0.5 <= held <= WAIT + 3
        return "" if ok else f"{kind}: {got} after {held:.1f} s, with nothing to tell"
    if at > answer.sent + WAIT - 1 and got == "pending":
        return ""  # it happened as the wait ran out: either answer is right
    late = answer.answered - max(answer.sent, at)
    want = "expired" if kind == "expire" else "approved"
    return "" if got == want and late <= 2 else f"{kind}: {got}, {late:.1f} s after it happened"


@pytest.mark.xfail(
    strict=True,
    reason="Issue 19, still open: the burst of 2,000 arrivals is served one process's CPU at a "
    "time; with 1,000 admitted and 1,000 refused (429) creates p99 was 5.5 s during it, and a "
    "few dozen waiters answered up to 3 s after their 15 s (docs/performance.md, Under faults).",
)
def test_two_thousand_long_polls_on_one_web_process(scene, make_agent):
    """2,000 simultaneous `?wait=15` long-polls from 20 agents on one web process, while an
    agent creates requests and timers run out: each waiter answered right and in time (within
    2 s of its request's decision or expiry; `pending` after 15 s when nothing happened) or
    refused with 429 + Retry-After, never a 5xx or a hang; creates p99 < 1 s; timers punctual;
    no OS thread parked per waiter (unless a cap refuses the excess)."""
    stack = scene.stack
    agents = {a.key: harness.AgentApi(stack.web.url, a.key)
              for a in (make_agent(f"poller-{n}") for n in range(AGENTS))}  # fmt: skip
    # Per agent: two requests that expire during the wait, two that a person approves during
    # it, one that stays pending.
    plan = [(key, kind, timeout) for key in agents
            for kind, timeout in (("expire", 9), ("expire", 11), ("decide", 3600),
                                  ("decide", 3600), ("pending", 3600))]  # fmt: skip
    ids = harness.in_parallel(lambda item: agents[item[0]].create(timeout_seconds=item[2]), plan)
    kind_of = {rid: kind for rid, (_, kind, _) in zip(ids, plan, strict=True) if rid}
    targets = [(key, rid) for rid, (key, _, _) in zip(ids, plan, strict=True) if rid]
    targets *= WAITERS // len(plan)

    web = procs.tree(stack.web.proc.process.pid)
    threads_before = thread_peak = sum(procs.threads(pid) for pid in web)
    answers: list[Answer] = []
    polling = threading.Thread(
        target=lambda: answers.extend(asyncio.run(all_at_once(stack.web.url, targets)))
    )
    polling.start()
    started = time.monotonic()
    time.sleep(2)  # the waiters are up
    timed = harness.create_timed(scene.api, count=30)
    harness.in_parallel(scene.person.approve, [i for i, k in kind_of.items() if k == "decide"])
    while polling.is_alive() and time.monotonic() - started < WAIT + 20:
        thread_peak = max(thread_peak, sum(procs.threads(pid) for pid in web))
        if time.monotonic() - started < WAIT - 1:
            scene.api.create(timeout_seconds=3600)  # the creates whose latency is measured
        time.sleep(0.1)
    polling.join(timeout=30)
    timers = harness.wait_for_timers(stack.db, timed)
    for api in agents.values():
        api.close()

    requests = stack.db.requests(list(kind_of))
    problems = timers.problems() + [f"agent {api.calls[-1]}" for api in agents.values()
                                    if api.server_errors()][:3]  # fmt: skip
    if len(answers) != len(targets):
        problems.append(f"only {len(answers)} of {len(targets)} long-polls ended")
    wrong = [w for a in answers if (w := misanswered(a, kind_of[a.request_id],
                                                     requests[a.request_id][1]))]  # fmt: skip
    if wrong:
        problems.append(f"{len(wrong)} long-polls answered wrong or late, e.g. {wrong[:4]}")
    if (create_p99 := scene.api.create_p99()) > 1:
        problems.append(f"creates p99 {create_p99:.2f} s while thousands wait")
    refused = sum(a.status == 429 for a in answers)
    waited = len(answers) - refused
    if not refused and thread_peak - threads_before > waited / 4:
        problems.append(f"{thread_peak} threads in the web process for {waited} waiters")
    figures.record(
        "2,000 long-polls on one web process",
        timers,
        api=scene.api,
        others=(scene.person,),
        watchdog=None,
        note=(
            f"{most_in_flight(answers)} in flight at once, {refused} refused (429), "
            f"web threads {threads_before}->{thread_peak}"
        ),
    )
    harness.judge(problems, stack, [scene.api, scene.person])
