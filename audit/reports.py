"""The period report (SPEC §7): the seed's compliance summary over any period, as figures.

Every figure is computed by the database over the period, grouped in SQL, whatever the number of
events: the period is turned into a range of sequence numbers through `occurred_at` (it never
decreases along the chain), and each figure reads one event type's rows in that range through
the (event_type, sequence) index. Decisions and time to decision come from the requests
themselves (their risk may have been raised by an edit after the create event was written);
everything else comes from the audit trail, which the integrity section vouches for.

The same `Report` feeds the page, the PDF (`audit.pdf`), `manage.py audit_report` and the weekly
summary email (`audit.tasks`). Periods are half-open, [since, until), in UTC; weeks start on
Monday 00:00 UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from approvals.models import ApprovalRequest, RiskLevel, Status
from audit import checkpoints
from audit.events import EventType
from audit.models import AuditEvent, ChainVerification, Checkpoint, SummaryEmail
from audit.services import Actor, record_event
from oversight import sql

UTC = dt.UTC
WEEK = dt.timedelta(days=7)


# --- periods ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[since, until) in UTC."""

    since: dt.datetime
    until: dt.datetime

    def __post_init__(self) -> None:
        if timezone.is_naive(self.since) or timezone.is_naive(self.until):
            raise ValueError("A report period needs aware datetimes.")
        if self.since >= self.until:
            raise ValueError("A report period must end after it starts.")

    @property
    def first_day(self) -> dt.date:
        return self.since.astimezone(UTC).date()

    @property
    def last_day(self) -> dt.date:
        """The last day the period touches (its end is excluded)."""
        return (self.until.astimezone(UTC) - dt.timedelta(microseconds=1)).date()

    @property
    def label(self) -> str:
        """ "2026-11-30 00:00 to 2026-12-07 00:00 UTC"."""
        return f"{_utc(self.since)} to {_utc(self.until)} UTC"

    def as_payload(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def days(first: dt.date, last: dt.date) -> Period:
    """The whole days from `first` to `last`, both included (the page's period picker)."""
    return Period(_midnight(first), _midnight(last + dt.timedelta(days=1)))


def week_of(moment: dt.datetime) -> Period:
    """The week (Monday 00:00 UTC to the next Monday) that holds `moment`."""
    day = moment.astimezone(UTC).date()
    start = _midnight(day - dt.timedelta(days=day.weekday()))
    return Period(start, start + WEEK)


def previous_week(moment: dt.datetime) -> Period:
    """The last complete week before `moment`."""
    this = week_of(moment)
    return Period(this.since - WEEK, this.since)


def month_of(moment: dt.datetime) -> Period:
    day = moment.astimezone(UTC).date().replace(day=1)
    following = (day + dt.timedelta(days=32)).replace(day=1)
    return Period(_midnight(day), _midnight(following))


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def parse_moment(text: str) -> dt.datetime:
    """An ISO 8601 date or datetime (`manage.py audit_report`); a date is its midnight and a
    time without an offset is UTC. Raises ValueError for anything else."""
    text = text.strip()
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise ValueError(f"{text!r} is not an ISO 8601 date or date and time.")
        return _midnight(day)
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One labelled count of the report."""

    key: str
    label: str
    count: int


@dataclass(frozen=True)
class Decisions:
    """The requests that ended in the period (by `decided_at`): one risk level, or all."""

    risk: str  # "" for all risks together
    label: str
    approved: int = 0
    rejected: int = 0
    expired: int = 0
    cancelled: int = 0
    # Time to decision (creation to the approval or rejection that decided it), in seconds.
    median_seconds: float | None = None
    p90_seconds: float | None = None

    @property
    def decided(self) -> int:
        return self.approved + self.rejected

    @property
    def ended(self) -> int:
        return self.approved + self.rejected + self.expired + self.cancelled


@dataclass(frozen=True)
class Integrity:
    """What vouches for the trail the figures come from."""

    last_sequence: int | None  # the period's last event
    verification: ChainVerification | None  # the last run of the chain verification
    # The latest signed checkpoint whose size reaches the period's last event, if one does.
    checkpoint: Checkpoint | None
    latest_checkpoint: Checkpoint | None

    @property
    def status(self) -> str:
        """ "intact", "broken" or "unverified" (never verified)."""
        if self.verification is None:
            return "unverified"
        return "intact" if self.verification.intact else "broken"

    @property
    def verification_covers_period(self) -> bool:
        """The last verification read every event of the period."""
        if self.verification is None:
            return False
        if self.last_sequence is None:
            return True
        return (self.verification.head_sequence or 0) >= self.last_sequence


@dataclass(frozen=True)
class Report:
    period: Period
    generated_at: dt.datetime
    first_sequence: int | None
    last_sequence: int | None
    total_events: int
    events_by_type: list[Figure]
    requests_created: int
    by_risk: list[Decisions]
    decisions: Decisions  # all risks together
    violations: list[Figure]  # guardrail violations by reason code
    security: list[Figure]
    data_accesses: list[Figure]  # sensitive-data accesses by policy
    circuit: list[Figure]  # circuit breaks
    autonomy: list[Figure]  # autonomy changes by source
    budget_alerts: list[Figure]
    policy_changes: list[Figure]  # by kind of change
    configuration_changes: list[Figure]  # routes, budgets, prices
    integrity: Integrity

    @property
    def totals(self) -> dict[str, int]:
        """The headline figures: the page's cards, the PDF's first lines, the email."""
        return {
            "events": self.total_events,
            "requests": self.requests_created,
            "decisions": self.decisions.decided,
            "approved": self.decisions.approved,
            "rejected": self.decisions.rejected,
            "expired": self.decisions.expired,
            "violations": _sum(self.violations),
            "security": _sum(self.security),
            "data_accesses": _sum(self.data_accesses),
            "circuit_breaks": _sum(
                f for f in self.circuit if f.key in (EventType.BREAKER_OPENED, BREAKER_PAUSES)
            ),
            "autonomy_changes": _sum(self.autonomy),
            "budget_alerts": _sum(self.budget_alerts),
            "policy_changes": _sum(self.policy_changes),
        }

    @property
    def ongoing(self) -> bool:
        """The period has not ended yet: the figures will still grow."""
        return self.period.until > self.generated_at


# Security-relevant events beyond the decisions themselves. An agent disabled is counted here
# whatever disabled it (the kill switch, or an execution mismatch, counted also on its own).
SECURITY_TYPES: tuple[tuple[str, str], ...] = (
    (EventType.EXECUTION_MISMATCH, "Execution mismatches"),
    (EventType.LOGIN_LOCKED_OUT, "Login lockouts"),
    (EventType.LOGIN_FAILED, "Failed logins (older trails)"),
    (EventType.REQUEST_SELF_APPROVED, "Self-approvals"),
    (EventType.USER_CHANGED, "Changes to people's access"),
    (EventType.API_KEY_REVOKED, "API keys revoked"),
    (EventType.SIGNING_KEY_ROTATED, "Checkpoint signing key rotations"),
)
AGENTS_DISABLED = "agent.disabled"
BREAKER_PAUSES = "agent.breaker_paused"
# The reason `controls.breaker` pauses an agent with.
BREAKER_REASON_PREFIX = "circuit_breaker"

_AUTONOMY_SOURCES = {
    "manual": "Set by a manager",
    "recommendation": "Recommendation accepted",
    "lowered": "Lowered automatically",
    "trial_reverted": "Trial reverted",
    "trial_ended": "Trial ended",
    "restored": "Restored",
}
_POLICY_CHANGES = {
    "created": "Policies created",
    "changed": "Policies changed",
    "deleted": "Policies deleted",
}
CONFIGURATION_TYPES: tuple[tuple[str, str], ...] = (
    (EventType.ROUTE_CHANGED, "Escalation routes changed"),
    (EventType.BUDGET_CHANGED, "Budgets changed"),
    (EventType.PRICE_CHANGED, "Model prices changed"),
    (EventType.PRICE_DELETED, "Model prices deleted"),
)


def build(period: Period, *, now: dt.datetime | None = None) -> Report:
    """Every figure of the report over `period`."""
    generated_at = now or timezone.now()
    first, last = sequence_range(period)
    in_range = AuditEvent.objects.none() if first is None else _range(first, last)
    by_type = dict(
        in_range.order_by()
        .values_list("event_type")
        .annotate(n=Count("*"))
        .values_list("event_type", "n")
    )
    events_by_type = sorted(
        (Figure(key, _type_label(key), n) for key, n in by_type.items()),
        key=lambda figure: (-figure.count, figure.key),
    )

    def of_type(event_type: str) -> QuerySet[AuditEvent]:
        return in_range.filter(event_type=event_type)

    security = [Figure(key, label, by_type.get(key, 0)) for key, label in SECURITY_TYPES]
    disabled = of_type(EventType.AGENT_STATUS_CHANGED).filter(payload__to="disabled").count()
    security.insert(1, Figure(AGENTS_DISABLED, "Agents disabled (kill switch, mismatch)", disabled))

    paused = (
        of_type(EventType.AGENT_STATUS_CHANGED)
        .filter(payload__to="paused", payload__reason__startswith=BREAKER_REASON_PREFIX)
        .count()
    )
    opened = by_type.get(EventType.BREAKER_OPENED, 0)
    circuit = [
        Figure(EventType.BREAKER_OPENED, "Circuit breakers opened", opened),
        Figure(BREAKER_PAUSES, "Agents paused by their circuit breaker", paused),
        Figure(
            EventType.BREAKER_CLOSED,
            "Circuit breakers closed",
            by_type.get(EventType.BREAKER_CLOSED, 0),
        ),
    ]
    decisions, by_risk = _decisions(period)
    return Report(
        period=period,
        generated_at=generated_at,
        first_sequence=first,
        last_sequence=last,
        total_events=sum(by_type.values()),
        events_by_type=events_by_type,
        requests_created=by_type.get(EventType.REQUEST_CREATED, 0),
        by_risk=by_risk,
        decisions=decisions,
        violations=_grouped(of_type(EventType.GUARDRAIL_VIOLATION), "code", {}),
        security=security,
        data_accesses=_grouped(of_type(EventType.DATA_ACCESSED), "policy", {}),
        circuit=circuit,
        autonomy=_grouped(of_type(EventType.AUTONOMY_CHANGED), "source", _AUTONOMY_SOURCES),
        budget_alerts=_budget_alerts(of_type(EventType.BUDGET_ALERT)),
        policy_changes=_grouped(of_type(EventType.POLICY_CHANGED), "change", _POLICY_CHANGES),
        configuration_changes=[
            Figure(key, label, by_type.get(key, 0)) for key, label in CONFIGURATION_TYPES
        ],
        integrity=integrity(last),
    )


def _sum(figures: Iterable[Figure]) -> int:
    return sum(figure.count for figure in figures)


def _type_label(event_type: str) -> str:
    try:
        return str(EventType(event_type).label)
    except ValueError:
        return event_type


def sequence_range(period: Period) -> tuple[int | None, int | None]:
    """The first and last sequence numbers of the events in `period`; (None, None) for none.
    Two lookups on the occurred_at index: it only grows along the chain."""
    first = (
        AuditEvent.objects.filter(occurred_at__gte=period.since, occurred_at__lt=period.until)
        .order_by("occurred_at", "sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    if first is None:
        return None, None
    last = (
        AuditEvent.objects.filter(occurred_at__gte=period.since, occurred_at__lt=period.until)
        .order_by("-occurred_at", "-sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    return first, last


def _range(first: int, last: int | None) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(sequence__gte=first, sequence__lte=last)


def _grouped(events: QuerySet[AuditEvent], key: str, labels: dict[str, str]) -> list[Figure]:
    """`events` counted by a text field of their payload, most first; labelled from `labels`
    (every label listed, with zeros) or by the value itself."""
    counts = dict(
        events.order_by()
        .annotate(value=KT(f"payload__{key}"))
        .values_list("value")
        .annotate(n=Count("*"))
        .values_list("value", "n")
    )
    figures = [Figure(value, label, counts.pop(value, 0)) for value, label in labels.items()]
    figures += [Figure(value or "", value or "(none)", n) for value, n in counts.items()]
    return sorted(figures, key=lambda figure: (-figure.count, figure.label))


def _budget_alerts(events: QuerySet[AuditEvent]) -> list[Figure]:
    rows = (
        events.order_by()
        .annotate(kind=KT("payload__kind"), threshold=KT("payload__threshold"))
        .values_list("kind", "threshold")
        .annotate(n=Count("*"))
    )
    figures = []
    for kind, threshold, n in rows:
        if kind == "threshold":
            figures.append(Figure(f"threshold:{threshold}", f"Budget reached {threshold} %", n))
        elif kind == "unknown_model":
            figures.append(Figure("unknown_model", "Calls to a model without a price", n))
        else:
            figures.append(Figure(kind or "", kind or "(other)", n))
    # Thresholds in rising order (80, 95, 100), then the other kinds.
    return sorted(
        figures, key=lambda figure: (not figure.key.startswith("threshold:"), _rank(figure))
    )


def _rank(figure: Figure) -> tuple[int, str]:
    _, _, threshold = figure.key.partition(":")
    return (int(threshold) if threshold.isdigit() else 0, figure.key)


# Time to decision of the requests decided in the period, per risk and for all together
# (group ''): percentile_cont by hand, so that SQLite computes it too (see
# approvals.selectors.decision_stats, which does the same over a sliding window).
_TIMES_SQL = """
WITH decided AS (
    SELECT risk_level, {seconds} AS seconds FROM {table}
    WHERE status IN (%s, %s) AND decided_at >= %s AND decided_at < %s
), grouped AS (
    SELECT risk_level AS grp, seconds FROM decided
    UNION ALL
    SELECT '' AS grp, seconds FROM decided
), ranked AS (
    SELECT grp, seconds,
           ROW_NUMBER() OVER (PARTITION BY grp ORDER BY seconds) - 1 AS i,
           COUNT(*) OVER (PARTITION BY grp) AS n
    FROM grouped
)
SELECT grp, {p50} AS p50, {p90} AS p90 FROM ranked GROUP BY grp
"""


def _decisions(period: Period) -> tuple[Decisions, list[Decisions]]:
    counts: dict[str, dict[str, int]] = {}
    for risk, status, n in (
        ApprovalRequest.objects.filter(
            decided_at__gte=period.since, decided_at__lt=period.until, status__in=Status.final()
        )
        .order_by()
        .values_list("risk_level", "status")
        .annotate(n=Count("pk"))
    ):
        counts.setdefault(risk, {})[status] = n
    query = _TIMES_SQL.format(
        seconds=sql.DECISION_SECONDS[connection.vendor],
        table=ApprovalRequest._meta.db_table,
        p50=sql.percentile(50),
        p90=sql.percentile(90),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [Status.APPROVED, Status.REJECTED, period.since, period.until])
        times = {grp: (float(p50), float(p90)) for grp, p50, p90 in cursor.fetchall()}

    def row(risk: str, label: str, by_status: dict[str, int]) -> Decisions:
        median, p90 = times.get(risk, (None, None))
        return Decisions(
            risk=risk,
            label=label,
            approved=by_status.get(Status.APPROVED, 0),
            rejected=by_status.get(Status.REJECTED, 0),
            expired=by_status.get(Status.EXPIRED, 0),
            cancelled=by_status.get(Status.CANCELLED, 0),
            median_seconds=median,
            p90_seconds=p90,
        )

    by_risk = [row(risk, label, counts.get(risk, {})) for risk, label in RiskLevel.choices]
    together: dict[str, int] = {}
    for by_status in counts.values():
        for status, n in by_status.items():
            together[status] = together.get(status, 0) + n
    return row("", "All risks", together), by_risk


def integrity(last_sequence: int | None) -> Integrity:
    verification = (
        ChainVerification.objects.select_related("checked_by").order_by("-checked_at").first()
    )
    latest = checkpoints.latest()
    covers = latest is not None and last_sequence is not None and latest.size >= last_sequence
    return Integrity(
        last_sequence=last_sequence,
        verification=verification,
        checkpoint=latest if covers else None,
        latest_checkpoint=latest,
    )


def integrity_lines(report: Report) -> list[tuple[str, str]]:
    """The integrity section in words, each with its level ("ok", "warn", "danger", "muted",
    "text"): the PDF colours them, the email joins them."""
    integrity = report.integrity
    verification = integrity.verification
    lines: list[tuple[str, str]] = []
    if verification is None:
        lines.append(("Not verified: the chain has never been verified.", "warn"))
    elif verification.intact:
        covered = (
            "every event of this period included"
            if integrity.verification_covers_period
            else f"it ended at #{verification.head_sequence or 0}, before this period's last "
            f"event #{integrity.last_sequence}: verify again to cover it"
        )
        lines.append(
            (
                f"Intact. The last verification, {_utc(verification.checked_at)} UTC, found the "
                f"chain intact over {verification.events_checked} events; {covered}.",
                "ok",
            )
        )
    else:
        lines.append(
            (
                f"BROKEN. The last verification, {_utc(verification.checked_at)} UTC, found the "
                f"chain broken at #{verification.first_bad_sequence}: {verification.problem}",
                "danger",
            )
        )
    checkpoint = integrity.checkpoint
    if integrity.last_sequence is None:
        lines.append(("No events in this period: nothing for a checkpoint to cover.", "muted"))
    elif checkpoint is not None:
        lines.append(
            (
                f"Covering checkpoint: the signed checkpoint of {checkpoint.size} events "
                f"(signed {_utc(checkpoint.created_at)} UTC) covers this period's events "
                f"#{report.first_sequence} to #{report.last_sequence}. "
                f"Signing key: {checkpoint.public_key}",
                "text",
            )
        )
    else:
        latest = integrity.latest_checkpoint
        lines.append(
            (
                "No covering checkpoint: no signed checkpoint covers this period's last event "
                f"#{integrity.last_sequence} yet"
                + (f" (the latest covers {latest.size} events)." if latest else "."),
                "warn",
            )
        )
    return lines


def integrity_sentence(report: Report) -> str:
    return " ".join(text for text, _ in integrity_lines(report))


# --- generating it (audited) -----------------------------------------------------------------


class Format:
    HTML = "html"
    PDF = "pdf"
    EMAIL = "email"


def record_generated(
    *, period: Period, fmt: str, actor: Actor | None = None, via: str = "page"
) -> AuditEvent:
    """Audit that a period report was produced (SPEC §7: report generated), in `fmt`, for
    `actor` (None: the system, e.g. beat's weekly summary or the command line)."""
    with transaction.atomic():
        return record_event(
            event_type=EventType.REPORT_GENERATED,
            actor=actor,
            payload={"report": "period", **period.as_payload(), "format": fmt, "via": via},
        )


def queue_weekly_summary(*, now: dt.datetime | None = None) -> SummaryEmail | None:
    """Write the weekly summary email of the last complete week (Monday 00:00 UTC to Monday),
    once: the unique period_start makes a second call (another beat, a restart) a no-op, and
    None. The outbox sends it (`audit.tasks.sweep_summary_emails`); its figures are read then."""
    period = previous_week(now or timezone.now())
    if SummaryEmail.objects.filter(period_start=period.since).exists():
        return None
    try:
        with transaction.atomic():
            email = SummaryEmail.objects.create(period_start=period.since, period_end=period.until)
            record_event(
                event_type=EventType.REPORT_GENERATED,
                payload={
                    "report": "period",
                    **period.as_payload(),
                    "format": Format.EMAIL,
                    "via": "weekly summary",
                },
            )
    except IntegrityError:  # written meanwhile by another beat
        return None
    return email
