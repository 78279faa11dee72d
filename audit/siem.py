"""SIEM streaming: the audit events, shipped as they commit to a syslog collector (RFC 5424
messages over TCP with octet-counting framing, RFC 6587, or over TLS, RFC 5425) and/or an HTTPS
endpoint (a JSON array of events per POST) (SPEC §7). docs/compliance.md is the operator's guide.

**In order, at-least-once, resumable.** Each destination has a `SiemCursor`: the last sequence
it accepted. A run reads the events after it in sequence order, sends a batch, and moves the
cursor only once the peer has accepted that batch: over syslog, when the whole batch was written
to the connection (TCP has no acknowledgement of its own); over HTTPS, when it answered 2xx. So
after an outage or a restart delivery resumes at the first unaccepted event. A worker that dies
between sending a batch and recording it leaves the cursor behind, and the batch is sent again:
a collector may see an event twice (same sequence, same hash) and never misses one. The trail
is gapless, so a missing sequence (which only tampering makes) stops the stream there, with the
error on the cursor, instead of being skipped.

**One run at a time per destination**, without holding a transaction over network I/O: a run
takes the cursor by a conditional UPDATE that counts the attempt beforehand, as the outbox does
(`oversight.outbox`): `attempts` goes up and `last_attempt_at` becomes the run's claim, which
also serves as its token. The cursor is due again when its run reported success (attempts back
to 0) or, after a failure or a run that never reported back, `retry_after(attempts)` after the
claim: at least the outbox's LEASE, longer than any run lasts, so no second worker ever sends
while the first may still be sending. Every move of the cursor names the claim and the position
it moves from, so a run that outlived its claim can only stop.

**Bounded time.** A run's network I/O has one deadline (OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS), as
an outbound call's attempt (`oversight.outbound`, whose address checks, deadline clock and
watchdog it reuses for syslog, and whose `post` it calls for HTTPS); it starts no batch in the
second half of it, so a slow or dead peer holds a worker for at most that long, and the next
tick continues. A failing destination backs off (`retry_after`); it is never given up: events
are not dropped, the backlog grows and `status()` shows it.

Beat drives it (`audit.tasks.ship_siem`, every timer tick); nothing runs on the append path.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from audit.chain import canonical_event_bytes, canonical_json, format_timestamp
from audit.events import EventType
from audit.models import AuditEvent, SiemCursor
from oversight import outbound, outbox

logger = logging.getLogger(__name__)

# Events read per query, and the most bytes sent as one batch (at least one event is): a batch
# is what one write or one POST carries, and the cursor moves batch by batch. Payloads reach
# 256 KiB (the API's body limit), so a read stays within tens of MB.
BATCH_EVENTS = 100
BATCH_BYTES = 512 * 1024
# The longest wait before a failing destination is tried again: it keeps the lag after the
# collector comes back to minutes, and trying costs one connection.
RETRY_MAX = timedelta(minutes=5)
# A task ships every destination in turn; it starts none that could end after this (the task's
# soft time limit is 45 s, settings: _SENDING).
TASK_BUDGET_SECONDS = 40.0


# --- what is sent: pure functions over an event ----------------------------------------------


class Severity(enum.IntEnum):
    """RFC 5424 §6.2.1, table 2."""

    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7


# authpriv (security/authorization, private): the messages name people and carry agents'
# arguments, and collectors route authpriv to a restricted file (/var/log/secure), not to a
# world-readable one.
FACILITY = 10
# SD-ID of the structured data: a name "@" an IANA Private Enterprise Number. 32473 is the one
# reserved for documentation (RFC 5612); Oversight has none of its own.
SD_ID = "oversight@32473"
APP_NAME = "oversight"

_E = EventType
# Security events above the rest: what may be an attack or a control failing (critical,
# warning), then changes to who may do what and to the controls themselves (notice), then the
# ordinary flow of requests (informational). A new event type gets NOTICE until placed here
# (tests/audit/test_siem.py insists that every type is).
SEVERITY_BY_EVENT_TYPE: dict[str, Severity] = {
    _E.EXECUTION_MISMATCH: Severity.CRITICAL,
    _E.LOGIN_LOCKED_OUT: Severity.WARNING,
    _E.LOGIN_FAILED: Severity.WARNING,
    _E.GUARDRAIL_VIOLATION: Severity.WARNING,
    _E.GUARDRAIL_ALERT: Severity.WARNING,
    _E.BUDGET_ALERT: Severity.WARNING,
    _E.BUDGET_RAISED: Severity.NOTICE,
    _E.BREAKER_OPENED: Severity.WARNING,
    _E.AGENT_ALERT: Severity.WARNING,
    _E.MONITOR_ALERT_FIRED: Severity.WARNING,
    _E.REQUEST_SELF_APPROVED: Severity.WARNING,
    _E.USER_CREATED: Severity.NOTICE,
    _E.USER_CHANGED: Severity.NOTICE,
    # Who decides for whom changes while someone is away.
    _E.DELEGATION_SET: Severity.NOTICE,
    _E.DELEGATION_ENDED: Severity.INFORMATIONAL,
    _E.AGENT_CREATED: Severity.NOTICE,
    _E.AGENT_CHANGED: Severity.NOTICE,
    _E.AGENT_STATUS_CHANGED: Severity.NOTICE,
    _E.AGENT_REENABLE_REQUESTED: Severity.NOTICE,
    _E.AGENT_WEBHOOK_SECRET_ROTATED: Severity.NOTICE,
    _E.API_KEY_CREATED: Severity.NOTICE,
    _E.API_KEY_REVOKED: Severity.NOTICE,
    _E.DATA_ACCESSED: Severity.NOTICE,
    _E.AUTONOMY_CHANGED: Severity.NOTICE,
    _E.POLICY_CHANGED: Severity.NOTICE,
    _E.ROUTE_CHANGED: Severity.NOTICE,
    _E.BUDGET_CHANGED: Severity.NOTICE,
    _E.PRICE_CHANGED: Severity.NOTICE,
    _E.PRICE_DELETED: Severity.NOTICE,
    _E.CALLBACK_RETRIED: Severity.NOTICE,
    # A grant lets an agent act without a person: making, revoking and voiding one changes
    # who may do what; each use is the ordinary flow it allows.
    _E.GRANT_CREATED: Severity.NOTICE,
    _E.GRANT_REVOKED: Severity.NOTICE,
    _E.GRANT_VOIDED: Severity.NOTICE,
    _E.EXPORT_MADE: Severity.NOTICE,
    _E.REPORT_GENERATED: Severity.NOTICE,
    _E.SIGNING_KEY_ROTATED: Severity.NOTICE,
    _E.LOGIN_SUCCEEDED: Severity.INFORMATIONAL,
    _E.REQUEST_CREATED: Severity.INFORMATIONAL,
    _E.REQUEST_VOTED: Severity.INFORMATIONAL,
    _E.REQUEST_EDITED: Severity.INFORMATIONAL,
    _E.REQUEST_DECIDED: Severity.INFORMATIONAL,
    _E.REQUEST_ESCALATED: Severity.INFORMATIONAL,
    _E.REQUEST_EXPIRED: Severity.INFORMATIONAL,
    _E.REQUEST_CANCELLED: Severity.INFORMATIONAL,
    _E.OUTCOME_REPORTED: Severity.INFORMATIONAL,
    _E.GRANT_USED: Severity.INFORMATIONAL,
    _E.BREAKER_CLOSED: Severity.INFORMATIONAL,
    _E.MONITOR_ALERT_RESOLVED: Severity.INFORMATIONAL,
}


def severity(event_type: str) -> Severity:
    return SEVERITY_BY_EVENT_TYPE.get(event_type, Severity.NOTICE)


def priority(event_type: str) -> int:
    """The PRI value: facility * 8 + severity (RFC 5424 §6.2.1)."""
    return FACILITY * 8 + severity(event_type)


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: `"`, `\\` and `]` escaped with a backslash (RFC 5424 §6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_field(value: str, limit: int) -> str:
    """A header field (HOSTNAME, MSGID): printable US-ASCII without spaces, at most `limit`
    characters, `-` (the nil value) when nothing is left (RFC 5424 §6)."""
    text = "".join(c if "!" <= c <= "~" else "_" for c in value)[:limit]
    return text or "-"


def syslog_message(event: AuditEvent, *, hostname: str) -> bytes:
    """One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME oversight - MSGID [SD] MSG`, where MSGID is
    the event type, the structured data names the event's place in the chain, and MSG is the
    canonical event: the very bytes its hash covers, so that a collector can check
    `hash = SHA-256(prev ‖ MSG)` (audit/README.md)."""
    header = (
        f"<{priority(event.event_type)}>1 {format_timestamp(event.occurred_at)} "
        f"{header_field(hostname, 255)} {APP_NAME} - {header_field(event.event_type, 32)}"
    )
    params = {
        "seq": str(event.sequence),
        "hash": event.hash,
        "prev": event.prev_hash,
        "actor": f"{event.actor_type}:{event.actor_id}" if event.actor_id else event.actor_type,
        "subject": event.subject_label or "-",
    }
    data = " ".join(f'{name}="{sd_escape(value)}"' for name, value in params.items())
    # The MSG is ASCII JSON (canonical), so it needs no BOM (RFC 5424 §6.4: MSG-ANY).
    return f"{header} [{SD_ID} {data}] ".encode() + canonical_event_bytes(_fields(event))


def frame(message: bytes) -> bytes:
    """Octet-counting framing: `MSG-LEN SP SYSLOG-MSG` (RFC 6587 §3.4.1, RFC 5425 §4.3)."""
    return b"%d %s" % (len(message), message)


def event_json(event: AuditEvent) -> dict[str, Any]:
    """One event of an HTTPS batch: the canonical fields (as the hash covers them) with its
    hash and the previous one."""
    return {
        **_fields(event),
        "occurred_at": format_timestamp(event.occurred_at),
        "hash": event.hash,
        "prev_hash": event.prev_hash,
    }


def _fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at,
        "event_type": event.event_type,
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "payload": event.payload,
    }


def _encode_batch(
    events: Sequence[AuditEvent], encode: Callable[[AuditEvent], bytes]
) -> list[bytes]:
    """The first events, encoded, as many as fit in BATCH_BYTES together; at least one. Encoded
    one by one, so the events past the batch cost nothing."""
    batch: list[bytes] = []
    size = 0
    for event in events:
        item = encode(event)
        if batch and size + len(item) > BATCH_BYTES:
            break
        batch.append(item)
        size += len(item)
    return batch


# --- the decision: when a destination is due -------------------------------------------------


def retry_after(attempts: int) -> timedelta:
    """How long after a claim its destination may be claimed again, when that run failed or
    never reported back: the outbox's backoff (10 s, 20 s, 40 s …), but never within the lease
    (a run may still be sending) and never more than RETRY_MAX."""
    return min(max(outbox.backoff(attempts), outbox.LEASE), RETRY_MAX)


def due(attempts: int, last_attempt_at: datetime | None, now: datetime) -> bool:
    if attempts == 0 or last_attempt_at is None:  # the last run succeeded, or none ran
        return True
    return now >= last_attempt_at + retry_after(attempts)


# --- destinations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    """A configured endpoint: `url` as configured, `name` the key of its cursor (the URL without
    credentials, query or fragment, which may hold secrets: the admin shows the name)."""

    url: str
    name: str
    protocol: str  # "syslog" or "https"


def destinations() -> list[Destination]:
    found = []
    if settings.OVERSIGHT_SIEM_SYSLOG_URL:
        found.append(_destination(settings.OVERSIGHT_SIEM_SYSLOG_URL, "syslog"))
    if settings.OVERSIGHT_SIEM_HTTPS_URL:
        found.append(_destination(settings.OVERSIGHT_SIEM_HTTPS_URL, "https"))
    return found


def _destination(url: str, protocol: str) -> Destination:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    path = parts.path if protocol == "https" else ""
    name = urlunsplit((parts.scheme, netloc, path, "", ""))
    return Destination(url=url, name=name[:300], protocol=protocol)


def status() -> list[dict[str, Any]]:
    """How far each configured destination got (the admin, the compliance page): `destination`,
    `protocol`, `delivered_sequence`, `backlog` (events committed and not yet accepted),
    `delivered_at`, `attempts` (failed in a row, or the one in progress), `last_attempt_at`
    and `last_error`. A destination that never ran shows its whole trail as backlog."""
    configured = destinations()
    if not configured:
        return []
    head = _head()
    cursors = {
        cursor.destination: cursor
        for cursor in SiemCursor.objects.filter(destination__in=[d.name for d in configured])
    }
    rows = []
    for destination in configured:
        cursor = cursors.get(destination.name) or SiemCursor(destination=destination.name)
        rows.append(
            {
                "destination": destination.name,
                "protocol": destination.protocol,
                "delivered_sequence": cursor.delivered_sequence,
                "backlog": max(head - cursor.delivered_sequence, 0),
                "delivered_at": cursor.delivered_at,
                "attempts": cursor.attempts,
                "last_attempt_at": cursor.last_attempt_at,
                "last_error": cursor.last_error,
            }
        )
    return rows


def _head() -> int:
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


# --- running ---------------------------------------------------------------------------------


def ship_all() -> dict[str, int]:
    """Beat: ship what each configured destination has not accepted yet. Returns the events
    each destination accepted in this run, by name."""
    started = time.monotonic()
    shipped: dict[str, int] = {}
    for destination in destinations():
        # Each run may take up to the deadline; start none that could overrun the task.
        elapsed = time.monotonic() - started
        if elapsed + settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS > TASK_BUDGET_SECONDS:
            break  # the next tick
        shipped[destination.name] = ship(destination)
    return shipped


def ship(destination: Destination) -> int:
    """One run for one destination, if it is due and has a backlog: send batches in sequence
    order, moving its cursor after each one the peer accepted, until the backlog is shipped or
    half the deadline is used. Records a failure's error on the cursor (its attempt is already
    counted). Returns how many events were accepted."""
    cursor = SiemCursor.objects.filter(destination=destination.name).first()
    now = timezone.now()
    position = cursor.delivered_sequence if cursor else 0
    if _head() <= position:
        return 0  # the usual case, every tick: one query, nothing written
    if cursor is not None and not due(cursor.attempts, cursor.last_attempt_at, now):
        return 0
    claim = _claim(destination.name, now)
    if claim is None:
        return 0  # another worker took it first
    clock = outbound._Clock(settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS)
    sent = 0
    error = ""
    interrupted: SoftTimeLimitExceeded | None = None
    try:
        with _sender(destination, clock) as sender:
            # New batches only in the first half of the deadline: each has time to complete.
            while clock.left() > clock.seconds / 2:
                events = _next_events(claim.position)
                if not events:
                    break
                accepted = sender.send(events)
                last = events[accepted - 1].sequence
                claim.advance(last)
                sent += accepted
    except SoftTimeLimitExceeded as exc:  # recorded as a failure, then the task stops
        error, interrupted = "stopped at the task's time limit", exc
    except Exception as exc:  # a refused connection, a 5xx, a deadline: back off and retry
        error = (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:2000]
    claim.finish(error)
    if error:
        logger.warning("SIEM %s: %s events shipped, then: %s", destination.name, sent, error)
    else:
        logger.info("SIEM %s: %s events shipped, up to #%s", destination.name, sent, claim.position)
    if interrupted is not None:
        raise interrupted
    return sent


def _next_events(after: int) -> list[AuditEvent]:
    """The events after sequence `after`, in order, as far as they run without a gap."""
    events = list(AuditEvent.objects.filter(sequence__gt=after).order_by("sequence")[:BATCH_EVENTS])
    for offset, event in enumerate(events):
        if event.sequence != after + 1 + offset:
            if offset == 0:
                raise MissingEvent(f"event #{after + 1} is missing from the trail")
            return events[:offset]
    return events


class MissingEvent(Exception):
    """The trail has a gap where the next event should be (only tampering makes one)."""


class LostClaim(Exception):
    """Another run took the cursor (this one outlived its lease): this one stops."""


@dataclass
class _Claim:
    """A run's hold on a cursor: `taken_at` (its `last_attempt_at`) is the token every write
    names, and `position` how far the cursor is."""

    pk: int
    taken_at: datetime
    position: int

    def advance(self, to: int) -> None:
        """The peer accepted everything up to `to`: the attempt in progress is the only one
        since this progress, and the last error is history."""
        moved = SiemCursor.objects.filter(
            pk=self.pk, last_attempt_at=self.taken_at, delivered_sequence=self.position
        ).update(delivered_sequence=to, delivered_at=timezone.now(), attempts=1, last_error="")
        if not moved:
            raise LostClaim("another run took over this destination")
        self.position = to

    def finish(self, error: str) -> None:
        """Release the cursor: due again at once after a success, at its backoff after a
        failure (the attempt was counted when it was claimed)."""
        mine = SiemCursor.objects.filter(pk=self.pk, last_attempt_at=self.taken_at)
        if error:
            mine.update(last_error=error)
        else:
            mine.update(attempts=0, last_error="")


def _claim(name: str, now: datetime) -> _Claim | None:
    """Take the cursor for one run, counting the attempt, if it is due and nobody else took it
    meanwhile (a conditional UPDATE on what was read: one claimer wins)."""
    cursor, _ = SiemCursor.objects.get_or_create(destination=name)
    if not due(cursor.attempts, cursor.last_attempt_at, now):
        return None
    taken = SiemCursor.objects.filter(
        pk=cursor.pk, attempts=cursor.attempts, last_attempt_at=cursor.last_attempt_at
    ).update(attempts=F("attempts") + 1, last_attempt_at=now)
    if not taken:
        return None
    return _Claim(pk=cursor.pk, taken_at=now, position=cursor.delivered_sequence)


# --- senders ---------------------------------------------------------------------------------


class _Sender(Protocol):
    def send(self, events: Sequence[AuditEvent]) -> int:
        """Send the first events (one or more) as a batch; how many, once accepted; or raise."""
        ...


@contextlib.contextmanager
def _sender(destination: Destination, clock: outbound._Clock) -> Iterator[_Sender]:
    if destination.protocol == "https":
        yield _HttpsSender(destination.url, clock)
        return
    with _SyslogSender(destination.url, clock) as sender:
        yield sender


def _allow() -> dict[str, Any]:
    return {
        "allow_private": settings.OVERSIGHT_SIEM_ALLOW_PRIVATE,
        "allowed_networks": settings.OVERSIGHT_SIEM_ALLOW_NETWORKS,
    }


class _HttpsSender:
    """A POST of a JSON array of events per batch (`event_json`), through `outbound.post`:
    checked addresses, no redirects, within what is left of the run's deadline."""

    def __init__(self, url: str, clock: outbound._Clock) -> None:
        self._url = url
        self._clock = clock
        self._headers = {"Content-Type": "application/json", "User-Agent": "Oversight-SIEM/1"}
        if settings.OVERSIGHT_SIEM_HTTPS_AUTHORIZATION:
            self._headers["Authorization"] = settings.OVERSIGHT_SIEM_HTTPS_AUTHORIZATION

    def send(self, events: Sequence[AuditEvent]) -> int:
        items = _encode_batch(events, lambda event: canonical_json(event_json(event)).encode())
        answer = outbound.post(
            self._url,
            content=b"[" + b",".join(items) + b"]",
            headers=self._headers,
            timeout=max(self._clock.left(), 0.001),
            max_response_bytes=1024,  # the status code decides
            **_allow(),
        )
        if not 200 <= answer.status_code < 300:
            raise RejectedBatch(f"HTTP {answer.status_code}")
        return len(items)


class RejectedBatch(Exception):
    """The HTTPS endpoint answered something other than 2xx."""


class _SyslogSender:
    """One connection per run to a syslog collector, made as `oversight.outbound` makes its
    connections: the name resolved once within the deadline, every address checked (SPEC
    §9.11), the connection made to a checked one, TLS verified against the name; every step
    given what is left of the deadline, and a watchdog that shuts the socket at the deadline
    (an SSL socket's `sendall` waits per write, not in total). Connects at the first batch."""

    def __init__(self, url: str, clock: outbound._Clock) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or not parts.port:
            raise ValueError(f"{url!r} is not tcp://host:port or tls://host:port")
        self._tls = parts.scheme == "tls"
        self._host = parts.hostname
        self._port = parts.port
        self._clock = clock
        self._watchdog = outbound._Watchdog(clock)
        self._sock: socket.socket | None = None

    def __enter__(self) -> _SyslogSender:
        self._watchdog.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._sock is not None:
                self._close(self._sock)
        finally:
            self._watchdog.__exit__(*exc_info)

    def send(self, events: Sequence[AuditEvent]) -> int:
        hostname = _hostname()
        frames = _encode_batch(
            events, lambda event: frame(syslog_message(event, hostname=hostname))
        )
        with self._deadline():
            sock = self._sock or self._connect()
            sock.settimeout(self._left())
            sock.sendall(b"".join(frames))
        return len(frames)

    def _connect(self) -> socket.socket:
        addresses = outbound._resolve_within(self._clock, self._host, self._port)
        if not addresses:
            raise outbound.RefusedAddress(f"{self._host} has no address")
        for address in addresses:
            if not outbound.is_allowed(address, **_allow()):
                raise outbound.RefusedAddress(
                    f"{self._host} resolves to {address}, which is not a public address"
                )
        failure: OSError | None = None
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._left())
                sock.connect((str(address), self._port))
            except TimeoutError:
                sock.close()
                raise
            except OSError as exc:  # refused, unreachable: nothing sent, the next address
                sock.close()
                failure = exc
                continue
            self._watchdog.watch(sock)
            if self._tls:
                # The handshake, bounded by the socket's timeout as a whole; verified against
                # the name (an IP literal: against the certificate's addresses).
                try:
                    sock = outbound._tls_context().wrap_socket(sock, server_hostname=self._host)
                except BaseException:
                    sock.close()
                    raise
            self._sock = sock
            return sock
        assert failure is not None  # there was at least one address
        raise failure

    def _left(self) -> float:
        return self._clock.cap(None, outbound.DeadlineExceeded)

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[None]:
        """A timeout, or a socket error after the deadline (the watchdog shut the socket), is
        the deadline."""
        try:
            yield
        except (outbound.DeadlineExceeded, outbound.RefusedAddress):
            raise
        except OSError as exc:
            if not isinstance(exc, TimeoutError) and self._clock.left() > 0:
                raise
            raise outbound.DeadlineExceeded(
                f"sending to {self._host}:{self._port} took longer than the run's "
                f"{self._clock.seconds:g} s"
            ) from exc

    def _close(self, sock: socket.socket) -> None:
        """Close; over TLS with a close_notify first (RFC 5425 §4.4: collectors log a
        connection closed without one). Not waiting for the collector's: the closer need not,
        and a collector that never answers one would cost every run the wait."""
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                sock.setblocking(False)  # send ours; the collector's is not waited for
                sock.unwrap()
        sock.close()


def _hostname() -> str:
    """The HOSTNAME of every message: the deployment's name (OVERSIGHT_BASE_URL's host), the
    same from every worker; container host names are random."""
    return urlsplit(settings.OVERSIGHT_BASE_URL).hostname or socket.gethostname()
