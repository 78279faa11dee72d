"""The soak's report: a table per measure and one verdict per target."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tools.soak.observe import Mark, Process
from tools.soak.traffic import MAX_IN_FLIGHT, Arrival, Calls, Created
from tools.stack import percentile, timer_lateness


@dataclass
class Timers:
    escalation: list[float]
    expiry: list[float]
    missed_escalations: int
    missed_expiries: int
    overtaken: int  # escalations a decision made moot less than 1 s after they were due


@dataclass
class Report:
    calls: Calls
    marks: list[Mark]
    created: dict[str, Created]
    woken: list[float]
    arrivals: list[Arrival]
    bad_callbacks: list[str]
    inbox_matches: tuple[bool, str]
    browser_errors: list[str]
    ended: float
    seconds: float
    failures: list[str] = field(default_factory=list)

    def timers(self, database: str) -> Timers:
        """Lateness of every escalation and expiry (a read changes nothing: every expiry is the
        timers' work). Missed: due before the traffic stopped, and neither done by the end of
        the settling time after it nor made moot by a decision within 1 s."""
        import psycopg

        ids = list(self.created)
        with psycopg.connect(database, autocommit=True) as conn:
            escalated = timer_lateness(conn, ids, "request.escalated")
            expired = timer_lateness(conn, ids, "request.expired")
            rows = conn.execute(
                """SELECT id::text, status, EXTRACT(EPOCH FROM escalates_at),
                          EXTRACT(EPOCH FROM expires_at), EXTRACT(EPOCH FROM decided_at)
                   FROM approvals_approvalrequest WHERE id::text = ANY(%s)""",
                (ids,),
            ).fetchall()
        missed_escalations = missed_expiries = overtaken = 0
        for request_id, status, escalates, expires, decided in rows:
            due = float(escalates)
            if due < self.ended and request_id not in escalated:
                if decided is None or float(decided) >= due + 1:
                    missed_escalations += 1
                elif float(decided) > due:
                    overtaken += 1  # decided before an escalation still within the target
            if float(expires) < self.ended and status == "pending":
                missed_expiries += 1
        return Timers(
            escalation=list(escalated.values()),
            expiry=list(expired.values()),
            missed_escalations=missed_escalations,
            missed_expiries=missed_expiries,
            overtaken=overtaken,
        )

    def callbacks_missing(self, database: str) -> tuple[int, int]:
        """(callbacks expected, of them never received): requests with a callback URL that
        were final before the traffic stopped."""
        import psycopg

        wanted = [i for i, c in self.created.items() if c.callback]
        with psycopg.connect(database, autocommit=True) as conn:
            rows = conn.execute(
                """SELECT id::text FROM approvals_approvalrequest
                   WHERE id::text = ANY(%s) AND status <> 'pending'
                     AND COALESCE(decided_at, expires_at) < to_timestamp(%s)""",
                (wanted, self.ended),
            ).fetchall()
        received = {arrival.request_id for arrival in self.arrivals}
        expected = {row[0] for row in rows}
        return len(expected), len(expected - received)


def _ms(value: float) -> str:
    return "-" if value != value else f"{value * 1000:.0f}"  # NaN: no samples


def print_report(
    report: Report, database: str, logs: dict[str, Path], cpu: float, emails: int
) -> int:
    calls = report.calls
    line = "-" * 100
    print(f"\n{line}\nSoak: {report.seconds:.0f} s of traffic\n{line}")
    print(f"\n{'endpoint':<46} {'calls':>7} {'p50 ms':>7} {'p99 ms':>7}  answers")
    five_xx = failed = 0
    for label in sorted(calls.endpoints):
        endpoint = calls.endpoints[label]
        total = sum(endpoint.statuses.values())
        answers = ", ".join(f"{s} x{n}" for s, n in sorted(endpoint.statuses.items()))
        five_xx += sum(n for s, n in endpoint.statuses.items() if s.startswith("5"))
        failed += sum(n for s, n in endpoint.statuses.items() if not s.isdigit())
        note = "  (waits up to 25 s)" if "wait=" in label else ""
        print(
            f"{label:<46} {total:>7} {_ms(percentile(endpoint.latencies, 0.5)):>7} "
            f"{_ms(percentile(endpoint.latencies, 0.99)):>7}  {answers}{note}"
        )
    print(
        "expected non-2xx: 302 after a login or a decision (the page's redirect); 403 on 3 % "
        "of creates (a forbidden path, on purpose); 409 on a decision or cancel that lost the "
        "race with a timer"
    )
    if calls.skipped:
        print(f"skipped (a stream had {MAX_IN_FLIGHT} calls in flight): {dict(calls.skipped)}")
    kinds = Counter(created.kind for created in report.created.values())
    print(
        f"requests created: {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))}; "
        f"emails received by the SMTP sink: {emails}; load generator CPU: {cpu:.0f} s"
    )

    timers = report.timers(database)
    print(f"\n{'timers':<12} {'count':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  missed")
    for name, values, missed in (
        ("escalation", timers.escalation, timers.missed_escalations),
        ("expiry", timers.expiry, timers.missed_expiries),
    ):
        print(
            f"{name:<12} {len(values):>6} {_ms(percentile(values, 0.5)):>7} "
            f"{_ms(percentile(values, 0.99)):>7} {_ms(max(values, default=float('nan'))):>7}  "
            f"{missed}"
        )
    print(
        f"(escalation: {timers.overtaken} more were decided less than 1 s after they were due, "
        "before their escalation)"
    )
    if report.woken:
        print(
            f"long-polls answered after the decision: p50 {_ms(percentile(report.woken, 0.5))} "
            f"ms, p99 {_ms(percentile(report.woken, 0.99))} ms, over {len(report.woken)}"
        )

    expected, missing = report.callbacks_missing(database)
    deliveries = Counter(arrival.delivery for arrival in report.arrivals)
    repeats = sum(n - 1 for n in deliveries.values())
    late = [arrival.at - arrival.decided_at for arrival in report.arrivals]
    print(
        f"\ncallbacks: {expected} due (requests with a callback URL, final before the traffic "
        f"stopped), {missing} of them never received; {len(report.arrivals)} received in all, "
        f"{repeats} repeated deliveries, {len(report.bad_callbacks)} bad signatures or bodies; "
        f"final -> received p50 {_ms(percentile(late, 0.5))} ms, "
        f"p99 {_ms(percentile(late, 0.99))} ms (from an expiry's deadline, so with its lateness)"
    )
    for problem in report.bad_callbacks[:3]:
        print(f"  bad callback: {problem}")

    print(f"\n{'outbox (pending / oldest s / failed)':<40}" + "".join(
        f"{mark.name:>20}" for mark in report.marks
    ))  # fmt: skip
    for table in report.marks[0].backlog:
        cells = "".join(
            "{:>20}".format("{} / {:.0f} / {}".format(*mark.backlog[table]))
            for mark in report.marks
        )
        print(f"{table:<40}{cells}")

    grown = print_memory(report.marks)
    logged = {
        name: sum(1 for text in log.read_text(errors="replace").splitlines()
                  if "Traceback" in text or " ERROR" in text or "CRITICAL" in text)
        for name, log in logs.items()
    }  # fmt: skip
    print(f"\nerrors in the logs: {logged} ({', '.join(str(p) for p in logs.values())})")
    matches, detail = report.inbox_matches
    print(
        f"browser inbox: {report.marks[-1].inbox}; against a fresh load: {detail}"
        + (f"; first script error: {report.browser_errors[0]}" if report.browser_errors else "")
    )

    escalation_p99 = percentile(timers.escalation, 0.99)
    expiry_p99 = percentile(timers.expiry, 0.99)
    verdicts = [
        (five_xx == 0 and failed == 0,
         f"no 5xx: {five_xx} answered 5xx, {failed} calls failed without an answer"),
        (not grown,
         "no process's RSS grew more than 10 % over the last half"
         + (f": {'; '.join(grown)}" if grown else "")),
        (escalation_p99 < 1 and expiry_p99 < 1 and not timers.missed_escalations
         and not timers.missed_expiries,
         f"timers p99 < 1 s: escalation {_ms(escalation_p99)} ms, expiry {_ms(expiry_p99)} ms, "
         f"missed {timers.missed_escalations + timers.missed_expiries}"),
        (missing == 0 and not report.bad_callbacks and matches and not report.failures,
         f"nothing lost: {missing} callbacks missing, {len(report.bad_callbacks)} bad, "
         f"live inbox: {detail}"
         + "".join(f"; {failure}" for failure in report.failures)),
    ]  # fmt: skip
    print()
    for ok, text in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 0 if all(ok for ok, _ in verdicts) else 1


def print_memory(marks: list[Mark]) -> list[str]:
    """The RSS table (MB) of every process of the web, worker and beat trees at each mark, each
    tree's total, and the browser's total apart; return what grew more than 10 % between the
    half-way mark and the end (a process, or a tree in total, which counts a replaced child)."""
    print(f"\n{'RSS MB':<8} {'pid':>7} {'ppid':>7}  {'process':<52}" + "".join(
        f"{mark.name:>10}" for mark in marks
    ) + "   last half")  # fmt: skip
    by_mark = [{p.pid: p for p in mark.processes} for mark in marks]
    groups: dict[str, dict[int, Process]] = defaultdict(dict)
    for mark in marks:
        for process in mark.processes:
            groups[process.group].setdefault(process.pid, process)
    grown: list[str] = []

    def row(group: str, pid: str, ppid: str, name: str, sizes: list[float | None]) -> None:
        before, after = sizes[1], sizes[-1]
        change = f"{(after - before) / before * 100:+.1f} %" if before and after else ""
        cells = "".join(f"{size:>10.1f}" if size else f"{'-':>10}" for size in sizes)
        name = name if len(name) <= 52 else name[:49] + "..."
        print(f"{group:<8} {pid:>7} {ppid:>7}  {name:<52}{cells}   {change}")
        if group != "browser" and before and after and after > before * 1.1:
            grown.append(f"{group} {pid or 'in total'} {change}")

    for group, members in groups.items():
        if group != "browser":  # its processes rename themselves: only its total says much
            for process in members.values():
                sizes = [found[process.pid].rss_mb if process.pid in found else None
                         for found in by_mark]  # fmt: skip
                row(group, str(process.pid), str(process.ppid), process.command, sizes)
        totals: list[float | None] = [
            sum(p.rss_mb for p in mark.processes if p.group == group) for mark in marks
        ]
        name = (
            f"Playwright's driver and Chromium, {len(members)} processes"
            if group == "browser"
            else "(total)"
        )
        row(group, "", "", name, totals)
    return grown
