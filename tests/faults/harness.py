"""What the fault tests share: the processes (web, worker, beat) started as `make` starts them,
an agent and a person using them over HTTP, and the measures taken from outside: the audit
events' times against the deadlines, the outbox's rows, every answer the clients got.

Reads go through a connection of their own (raw SQL on the database the processes use), so
they see what the processes committed, on the test database or on a private cluster alike.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from approvals.models import ApprovalRequest, CallbackAttempt, CallbackDelivery, EmailDelivery
from audit.models import AuditEvent
from tests.conftest import PASSWORD
from tests.faults import peers, procs
from tests.faults.procs import MB, MemoryWatchdog
from tests.support import live

# Fast timers, so that a test sees escalations and expiries within seconds (as
# tests/approvals/test_timers_live.py does).
TIMER_ENV = {
    "OVERSIGHT_TIMER_TICK_SECONDS": "0.5",
    "OVERSIGHT_TIMER_HORIZON_SECONDS": "4",
    "OVERSIGHT_BROKER_VISIBILITY_TIMEOUT": "60",
}
# SPEC §9.6 and §10.3.
PUNCTUAL_P99 = 1.0
WORKER_RSS_LIMIT = 300 * MB
ATTEMPT_DEADLINE = 10.0  # per outbound attempt, the body included
# How long an attempt cut short (its worker killed, its database gone) may take to be made
# again: the outbox's lease on the row (60 s) runs out, then a sweep sends it.
REDELIVERY_WAIT = 75.0
# The machine's share (two cores, shared) and the peer's view of when the client let go.
ATTEMPT_SLACK = 1.5

REQUESTS = ApprovalRequest._meta.db_table
EVENTS = AuditEvent._meta.db_table
DELIVERIES = CallbackDelivery._meta.db_table
ATTEMPTS = CallbackAttempt._meta.db_table
EMAILS = EmailDelivery._meta.db_table
FINAL_EVENTS = ["request.decided", "request.expired", "request.cancelled"]


# --- the agent and the person, over HTTP -------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    status: int  # 0: no answer (refused, reset, or past the client's timeout)
    seconds: float
    at: float  # time.monotonic() when sent
    retry_after: str | None = None
    error: str = ""

    def __str__(self) -> str:
        answer = f"HTTP {self.status}" if self.status else "no answer"
        return f"{self.method} {self.path}: {answer} {self.error}".strip()


class Recorder:
    """Every answer a client got, to judge afterwards."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def _send(
        self, http: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        sent = time.monotonic()
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.calls.append(Call(method, path, 0, time.monotonic() - sent, sent, error=error))
            return None
        retry_after = response.headers.get("Retry-After")
        error = _error_code(response)
        self.calls.append(Call(method, path, response.status_code, time.monotonic() - sent, sent,
                               retry_after, error))  # fmt: skip
        return response

    def server_errors(self, *, during: tuple[float, float] | None = None) -> list[Call]:
        """Calls answered 5xx or not at all; `during` a dependency's outage (monotonic times),
        a 503 with Retry-After is the right answer and not counted."""
        return [c for c in self.calls if (c.status == 0 or c.status >= 500)
                and not (during and during[0] <= c.at < during[1] and c.status == 503
                         and c.retry_after)]  # fmt: skip


def _error_code(response: httpx.Response) -> str:
    if response.status_code < 400:
        return ""
    try:
        return str(response.json()["error"]["code"])
    except Exception:
        return response.text[:200]


class AgentApi(Recorder):
    """An agent with an API key, calling the API of a running web server."""

    def __init__(self, base_url: str, key: str) -> None:
        super().__init__()
        self.http = httpx.Client(
            base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )

    def create(self, *, timeout_seconds: int, callback_url: str = "") -> str | None:
        """A low-risk request (its route's first tier: team leads); its id, None if refused."""
        body: dict[str, Any] = {
            "action": "read_file",
            "params": {"path": f"/srv/data/{uuid.uuid4()}"},
            "risk_level": "low",
            "justification": "fault drill",
            "timeout_seconds": timeout_seconds,
        }
        if callback_url:
            body["callback_url"] = callback_url
        response = self._send(self.http, "POST", "/api/v1/approval-requests", json=body)
        if response is None or response.status_code != 201:
            return None
        return str(response.json()["id"])

    def cancel(self, request_id: str) -> int:
        path = f"/api/v1/approval-requests/{request_id}/cancel"
        response = self._send(self.http, "POST", path, json={})
        return response.status_code if response is not None else 0

    def read(self, request_id: str) -> int:
        response = self._send(self.http, "GET", f"/api/v1/approval-requests/{request_id}")
        return response.status_code if response is not None else 0

    def check(self, action: str) -> dict[str, Any] | None:
        body = {"action": action, "params": {"query": "select 1"}}
        response = self._send(self.http, "POST", "/api/v1/guardrails/check", json=body)
        if response is None or response.status_code != 200:
            return None
        return dict(response.json())

    def create_p99(self) -> float:
        return percentile([c.seconds for c in self.calls if c.method == "POST"
                           and c.path == "/api/v1/approval-requests"], 99)  # fmt: skip

    def close(self) -> None:
        self.http.close()


class Person(Recorder):
    """A person logged in to the pages, voting as a browser does (forms, CSRF token)."""

    def __init__(self, base_url: str, username: str) -> None:
        super().__init__()
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.http.get("/login/")
        form = {"username": username, "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"]}  # fmt: skip
        response = self._send(self.http, "POST", "/login/", data=form)
        assert response is not None
        assert response.status_code == 302, f"{username} could not log in"

    def approve(self, request_id: str) -> int:
        return self._vote(request_id, "approve", comment="ok")

    def reject(self, request_id: str) -> int:
        return self._vote(request_id, "reject", reason="not now")

    def _vote(self, request_id: str, verb: str, **fields: str) -> int:
        data = {"csrfmiddlewaretoken": self.http.cookies["csrftoken"], **fields}
        response = self._send(self.http, "POST", f"/requests/{request_id}/{verb}", data=data)
        return response.status_code if response is not None else 0

    def close(self) -> None:
        self.http.close()


def in_parallel[T, R](work: Callable[[T], R], items: Iterable[T], threads: int = 4) -> list[R]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, items))


def create_timed(api: AgentApi, count: int = 50, shortest: int = 2, spread: int = 6) -> list[str]:
    """`count` requests, one every 0.125 s, that escalate at half-time and expire `shortest` to
    `shortest + spread - 1` seconds after their creation: the timers whose punctuality a test
    measures, about eight a second (a rate two timer processes keep up with on two shared
    cores, so that a late timer is the fault's doing). A refused create is judged with the
    agent's other answers."""
    ids = []
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n * 0.125 - time.monotonic()))
        ids.append(api.create(timeout_seconds=shortest + n % spread))
    return [i for i in ids if i]


def decide_at_once(api: AgentApi, person: Person, callback_url: str, count: int) -> dict[str, str]:
    """`count` requests with callbacks to `callback_url`, each made final as soon as it exists:
    the agent cancels a third, the person approves or rejects the others through the pages.
    Returns the state each must end in."""
    ids = in_parallel(
        lambda _: api.create(timeout_seconds=3600, callback_url=callback_url), range(count)
    )
    plan = {rid: ("cancelled", "approved", "rejected")[n % 3] for n, rid in enumerate(ids) if rid}

    def finalise(request_id: str) -> int:
        match plan[request_id]:
            case "cancelled":
                return api.cancel(request_id)
            case "approved":
                return person.approve(request_id)
            case _:
                return person.reject(request_id)

    in_parallel(finalise, plan)
    return plan


class Mix(threading.Thread):
    """A steady mix until stopped: the agent creates a request (its callback to `callback_url`),
    checks an action and reads the request back, and the person approves it in the page."""

    def __init__(self, api: AgentApi, person: Person, callback_url: str) -> None:
        super().__init__(daemon=True)
        self.api, self.person, self.callback_url = api, person, callback_url
        self.approved: list[str] = []  # the approvals the page accepted
        self.checks: list[tuple[float, dict[str, Any] | None]] = []  # (monotonic time, answer)
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            request_id = self.api.create(timeout_seconds=3600, callback_url=self.callback_url)
            self.checks.append((time.monotonic(), self.api.check("database_query")))
            if request_id:
                self.api.read(request_id)
                if self.person.approve(request_id) == 302:
                    self.approved.append(request_id)
            self._stopping.wait(0.5)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


# --- the database the processes use ------------------------------------------------------------


class Db:
    """Reads of what the processes committed, a connection per read (so that a restart of the
    database between two reads does no harm)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as connection:
            return connection.execute(sql, params).fetchall()

    def busy_backends(self) -> int:
        """Other connections to this database inside a statement or a transaction."""
        rows = self.rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state <> 'idle'"
        )
        return int(rows[0][0])

    def now(self) -> datetime:
        return self.rows("SELECT now()")[0][0]

    def requests(self, ids: Sequence[str]) -> dict[str, tuple[str, datetime | None]]:
        """Status and decided_at (an expired request's: its deadline) of each request."""
        rows = self.rows(
            f"SELECT id::text, status, decided_at FROM {REQUESTS} WHERE id = ANY(%s::uuid[])",  # noqa: S608
            [list(ids)],
        )
        return {request_id: (status, decided_at) for request_id, status, decided_at in rows}

    def final_events(self, ids: Sequence[str]) -> dict[str, int]:
        """How many final-state audit events (decided, expired, cancelled) each request has."""
        rows = self.rows(
            f"SELECT subject_id, count(*) FROM {EVENTS} "  # noqa: S608
            "WHERE subject_id = ANY(%s) AND event_type = ANY(%s) GROUP BY subject_id",
            [list(ids), FINAL_EVENTS],
        )
        return {**dict.fromkeys(ids, 0), **dict(rows)}

    def deliveries(self, request_ids: Sequence[str]) -> list[Delivery]:
        rows = self.rows(
            "SELECT d.id::text, d.request_id::text, d.status, d.attempts, count(a.id), "  # noqa: S608
            f"coalesce(max(a.duration_ms), 0) FROM {DELIVERIES} d "
            f"LEFT JOIN {ATTEMPTS} a ON a.delivery_id = d.id "
            "WHERE d.request_id = ANY(%s::uuid[]) GROUP BY d.id",
            [list(request_ids)],
        )
        return [Delivery(*row) for row in rows]

    def emails(self, request_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(request id, kind, status) of each email row of the requests."""
        return self.rows(
            f"SELECT request_id::text, kind, status FROM {EMAILS} "  # noqa: S608
            "WHERE request_id = ANY(%s::uuid[])",
            [list(request_ids)],
        )

    def timers(self, ids: Sequence[str]) -> list[Timers]:
        rows = self.rows(
            "SELECT r.id::text, r.escalates_at, r.expires_at, "  # noqa: S608
            "coalesce(array_agg(e.occurred_at ORDER BY e.sequence) "
            "  FILTER (WHERE e.event_type = 'request.escalated'), '{}'), "
            "coalesce(array_agg(e.occurred_at ORDER BY e.sequence) "
            "  FILTER (WHERE e.event_type = 'request.expired'), '{}'), "
            "min(e.occurred_at) FILTER (WHERE e.event_type = 'request.created') "
            f"FROM {REQUESTS} r LEFT JOIN {EVENTS} e ON e.subject_id = r.id::text "
            "  AND e.event_type IN ('request.created', 'request.escalated', 'request.expired') "
            "WHERE r.id = ANY(%s::uuid[]) GROUP BY r.id",
            [list(ids)],
        )
        return [Timers(*row) for row in rows]


@dataclass
class Delivery:
    id: str
    request_id: str
    status: str
    attempts: int  # the row's attempt counter
    attempt_rows: int  # attempts in the attempt log
    longest_ms: int

    @property
    def recorded(self) -> int:
        """Attempts on record, whether the outbox counts them on the row or logs them."""
        return max(self.attempts, self.attempt_rows)


@dataclass
class Timers:
    """A request's two deadlines, and the times of its escalation and expiry audit events
    (the moment each change was made)."""

    request_id: str
    escalates_at: datetime
    expires_at: datetime
    escalated: list[datetime]
    expired: list[datetime]
    created: datetime | None  # its creation's audit event: about when the creation committed

    def each(self) -> list[tuple[str, datetime, list[datetime]]]:
        return [("escalation", self.escalates_at, self.escalated),
                ("expiry", self.expires_at, self.expired)]  # fmt: skip


# --- what must hold ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: below 100 samples, p99 is the largest."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Punctuality:
    """Lateness in seconds of each escalation and expiry: its audit event's time minus its
    deadline."""

    lateness: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # what each lateness is of, and when due
    missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    early: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.lateness, 50)

    @property
    def p99(self) -> float:
        return percentile(self.lateness, 99)

    @property
    def worst(self) -> float:
        return max(self.lateness, default=math.nan)

    def latest(self, count: int) -> list[str]:
        ranked = sorted(zip(self.lateness, self.labels, strict=True), reverse=True)[:count]
        return [f"{label} {late:.2f} s late" for late, label in ranked]

    def problems(self) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{len(self.missing)} timers had not run well past their deadline, "
                         f"e.g. {self.missing[:2]}")  # fmt: skip
        if self.doubled:
            found.append(f"{len(self.doubled)} timers ran twice, e.g. {self.doubled[:2]}")
        if self.early:
            found.append(f"{len(self.early)} timers ran early, e.g. {self.early[:2]}")
        if self.lateness and not self.p99 < PUNCTUAL_P99:
            found.append(f"timers late: p99 {self.p99:.2f} s (limit {PUNCTUAL_P99:.0f} s), "
                         f"max {self.worst:.2f} s, over {len(self.lateness)}; the latest: "
                         f"{self.latest(3)}")  # fmt: skip
        return found


def punctuality(db: Db, ids: Sequence[str]) -> Punctuality:
    """Every request of `ids` was due to escalate and expire by now: how punctually it did."""
    result = Punctuality()
    if not ids:
        result.missing.append("all: no timed request could be created")
    for request in db.timers(ids):
        for what, deadline, events in request.each():
            label = f"{what} of {request.request_id}"
            if not events:
                result.missing.append(label)
                continue
            if len(events) > 1:
                result.doubled.append(label)
            late = (events[0] - deadline).total_seconds()
            if late < 0:
                result.early.append(f"{label} by {-late:.3f} s")
            result.lateness.append(late)
            committed = (
                f"{(request.created - deadline).total_seconds():+.2f} s" if request.created else "?"
            )
            result.labels.append(f"{label} (due {deadline:%H:%M:%S.%f}, created at {committed})")
    return result


def wait_for_timers(db: Db, ids: Sequence[str], grace: float = 2.5) -> Punctuality:
    """Wait until every request of `ids` has escalated and expired, or until `grace` seconds
    past the last deadline (a timer that has not run by then is late beyond doubt); measure."""
    if ids:
        last = max(t.expires_at for t in db.timers(ids))
        give_up = time.monotonic() + max(0.0, (last - db.now()).total_seconds()) + grace
        while time.monotonic() < give_up:
            if all(t.escalated and t.expired for t in db.timers(ids)):
                break
            time.sleep(0.25)
        time.sleep(0.5)  # a second run of a timer would show by now
    return punctuality(db, ids)


def final_state_problems(db: Db, plan: dict[str, str]) -> list[str]:
    """Each request of `plan` in the state it was put in, with one final-state audit event."""
    requests, events = db.requests(list(plan)), db.final_events(list(plan))
    found = [f"{i} is {requests.get(i, ('missing',))[0]}, not {want}"
             for i, want in plan.items() if requests.get(i, ("",))[0] != want]  # fmt: skip
    found += [f"{i} has {n} final-state audit events" for i, n in events.items() if n != 1]
    return found[:5]


NEVER_ANSWERED_2XX = {peers.HANG, peers.DRIP, peers.ERROR, peers.RESET}


def callback_problems(db: Db, plan: dict[str, str], peer: peers.CallbackPeer) -> list[str]:
    """One outbox row per request (never two); no POST out before its attempt is on record;
    no attempt past the deadline; nothing marked delivered that the peer never answered."""
    deliveries = db.deliveries(list(plan))
    found = []
    if sorted(d.request_id for d in deliveries) != sorted(plan):
        found.append(f"{len(deliveries)} callback rows for {len(plan)} requests")
    by_id = {d.id: d for d in deliveries}
    received = peer.deliveries()
    if strangers := set(received) - set(by_id):
        found.append(f"POSTs for deliveries of other requests: {sorted(strangers)[:2]}")
    unrecorded = {i: n for i, n in received.items() if i in by_id and n > by_id[i].recorded}
    if unrecorded:
        found.append(
            f"{len(unrecorded)} callbacks reached the peer before their attempt was on record "
            f"(a worker killed then sends again, uncounted), e.g. {list(unrecorded.items())[:2]}"
        )
    limit = ATTEMPT_DEADLINE + ATTEMPT_SLACK
    if (longest := peer.longest_hold()) > limit:
        found.append(f"an attempt held its connection {longest:.1f} s (limit {limit:.1f} s)")
    if (slowest := max((d.longest_ms for d in deliveries), default=0) / 1000) > limit:
        found.append(f"an attempt on record took {slowest:.1f} s (limit {limit:.1f} s)")
    lies = [d.id for d in deliveries if d.status == "delivered"]
    if peer.kind in NEVER_ANSWERED_2XX and lies:
        found.append(f"{len(lies)} callbacks marked delivered that the peer never answered")
    return found


def judge(
    problems: list[str],
    stack: Stack,
    recorders: Sequence[Recorder],
    *,
    outage: tuple[float, float] | None = None,
) -> None:
    """Fail with every problem found, and those every test checks: answers 5xx (or none) to
    the agent and on the pages, worker processes past 300 MB, processes that exited."""
    found = list(problems)
    for recorder in recorders:
        errors = recorder.server_errors(during=outage)
        found += [f"{type(recorder).__name__}: {call}" for call in errors][:5]
    found += [f"worker process past 300 MB, killed as by the OOM killer: {k}"
              for k in stack.watchdog.kills][:3]  # fmt: skip
    found += [f"the {name} process exited" for name in stack.dead()]
    if found:
        pytest.fail("\n".join(found), pytrace=False)


# --- the processes -----------------------------------------------------------------------------


@dataclass
class Stack:
    """Web, worker and beat on one database and one Redis, an SMTP server that can stall for
    their email, and a watchdog on the worker's processes."""

    web: live.Server
    worker: live.Proc
    beat: live.Proc
    smtp: peers.StallingSmtp
    watchdog: MemoryWatchdog
    db: Db

    def dead(self) -> list[str]:
        """The processes that exited (none may, whatever a peer does)."""
        running = {"web": self.web.proc, "worker": self.worker, "beat": self.beat}
        return [name for name, proc in running.items() if proc.process.poll() is not None]

    def pause(self) -> None:
        """Freeze every process (SIGSTOP) at a moment when none is inside a transaction, so
        that the test database can be emptied between tests (a TRUNCATE racing a worker's
        transaction deadlocks); `resume` thaws them."""
        pids = [pid for proc in self.processes() for pid in procs.tree(proc.process.pid)]
        for _ in range(100):
            procs.signal_all(pids, signal.SIGSTOP)
            if not self.db.busy_backends():
                return
            procs.signal_all(pids, signal.SIGCONT)
            time.sleep(0.1)

    def resume(self) -> None:
        pids = [pid for proc in self.processes() for pid in procs.tree(proc.process.pid)]
        procs.signal_all(pids, signal.SIGCONT)

    def processes(self) -> list[live.Proc]:
        return [self.web.proc, self.worker, self.beat]

    def stop(self) -> None:
        self.resume()
        self.watchdog.stop()
        in_parallel(lambda proc: proc.stop(), [self.beat, self.worker, self.web.proc], threads=3)
        self.smtp.close()


def start_stack(tmp: Path, database_url: str, **env: str) -> Stack:
    smtp = peers.StallingSmtp()
    env = {
        **TIMER_ENV,
        "DATABASE_URL": database_url,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "OVERSIGHT_BASE_URL": "https://oversight.example.com",
        "OVERSIGHT_CALLBACK_ALLOW_PRIVATE": "true",  # the peers listen on loopback
        # The scenes have people reject a third of one agent's many requests: its circuit
        # breaker (SPEC §6) would pause it after five in a row, which is not what they test.
        "OVERSIGHT_BREAKER_OPEN_AFTER": "1000000",
        "OVERSIGHT_BREAKER_PAUSE_AFTER": "1000000",
        **env,
    }
    # Side by side: each takes seconds to come up.
    with ThreadPoolExecutor(3) as pool:
        web = pool.submit(live.start_web, tmp, **env)
        worker = pool.submit(live.start_worker, tmp, **env)
        beat = pool.submit(live.start_beat, tmp, **env)
    failures = [f.exception() for f in (web, worker, beat) if f.exception() is not None]
    if failures:
        for proc in [f.result() for f in (worker, beat) if f.exception() is None]:
            proc.stop()
        if web.exception() is None:
            web.result().proc.stop()
        smtp.close()
        raise failures[0]  # type: ignore[misc]
    watchdog = MemoryWatchdog([worker.result().process.pid], cap=WORKER_RSS_LIMIT)
    return Stack(web.result(), worker.result(), beat.result(), smtp, watchdog, Db(database_url))
