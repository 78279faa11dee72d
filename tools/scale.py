"""`make bench`, SPEC §10.4 and §10.5: the people's pages over a big database, and the audit
verification of a million events.

Run inside Django (the bench calls these through `manage.py shell`, against its scratch
database). `seed` fills the tables fast with SQL and COPY rather than through the services:
100 000 pending requests spread over agents, risks and urgencies (some past half-time, so
escalated), decided requests for the escalations page's figures, and a million chained audit
events (`audit_fill`). `measure` then times the inbox and the escalations page in-process
(server time, no network) and counts their queries.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from approvals import services
from approvals.models import ApprovalRequest
from tools.audit_fill import bulk_append

RISKS = ["low", "medium", "high", "critical"]
FIRST_TIERS = ["team_lead", "team_lead", "engineering_manager", "director"]
ROUTES = [
    ["team_lead"],
    ["team_lead", "engineering_manager"],
    ["engineering_manager", "director"],
    ["director", "vp_engineering"],
]
URGENCY_SECONDS = {"low": 86_400, "normal": 14_400, "high": 3_600, "critical": 900}
PAGES = {
    "inbox": "/",
    "escalations": "/escalations/",
    "escalation figures": "/escalations/figures/",
    "violations": "/policies/violations/",
    "violations of an agent": "/policies/violations/?agent=bench-agent-3",
    "violations by reason": "/policies/violations/?code=rate_limited",
    # The monitoring page computes its figures at most once a minute (OVERSIGHT_MONITORING_CACHE
    # _SECONDS): cold, every load computes them; cached, every load after the first reads them.
    "monitoring (cold)": "/monitoring/",
    "monitoring (cached)": "/monitoring/",
    # ... and the two sections that load into it, each computed and cached on its own.
    "fairness (cold)": "/monitoring/fairness",
    "overseers (cold)": "/monitoring/overseers",
}

# A prime number of seconds (a day and 13 s): consecutive rows land far apart in time.
STRIDE = 86_413
VIOLATION_CODES = ["forbidden_pattern", "unknown_action", "cost_limit", "rate_limited"]


def seed(
    *, pending: int, decided: int, events: int, violations: int = 0, outcomes: int = 0
) -> None:
    """Add `pending` and `decided` requests (cloned in SQL from one made by the services, so
    every column is valid), `events` audit events, `violations` guardrail violations and
    `outcomes` reported outcomes."""
    template = _template_request()
    _clone(template, pending, decided=False)
    _clone(template, decided, decided=True)
    _votes()
    _violations(violations)
    _outcomes(outcomes)
    _roll_up()
    bulk_append(events, batch=20_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _template_request() -> ApprovalRequest:
    from agents.models import Agent

    agent = Agent.objects.order_by("pk").first()
    assert agent is not None, "the bench creates its agents first"
    with transaction.atomic():
        return services.create_request(
            agent=agent,
            action="write_file",
            params={"path": "/srv/app/release.txt"},
            risk_level="medium",
            justification="scale benchmark",
            urgency="low",
        )


def _clone(template: ApprovalRequest, count: int, *, decided: bool) -> None:
    """INSERT ... SELECT from generate_series: row g gets risk g mod 4, urgency (g / 4) mod 4, an
    agent in turn, and a creation time in the last 10 minutes (pending) or 30 days (decided)."""
    from agents.models import Agent

    agent_ids = list(Agent.objects.values_list("pk", flat=True))
    urgencies = list(URGENCY_SECONDS)
    limits = [URGENCY_SECONDS[u] for u in urgencies]
    spread = 30 * 86_400 if decided else 600
    # Row g is created mod(g * STRIDE, spread) seconds ago: spread over the whole span whatever
    # the count (mod(g, spread) alone put 50,000 decided requests in their last 14 hours).
    # Only integers and names of ours go into the text; the count and the template are params.
    base = (
        f"SELECT g, now() - mod(g::bigint * {STRIDE}, {spread}) * interval '1 second' AS c, "  # noqa: S608
        f"(ARRAY{limits})[1 + mod(g / 4, 4)] AS lim, 1 + mod(g, 4) AS r, 1 + mod(g / 4, 4) AS u "
        "FROM generate_series(1, %s) AS g"
    )
    half = "s.c + s.lim / 2 * interval '1 second'"
    overrides = {
        "id": "gen_random_uuid()",
        "timer_token": "gen_random_uuid()",
        "agent_id": f"(ARRAY{agent_ids})[1 + mod(s.g, {len(agent_ids)})]",
        "risk_level": f"(ARRAY{RISKS})[s.r]",
        "claimed_risk_level": f"(ARRAY{RISKS})[s.r]",
        "first_tier_rank": "(ARRAY[0, 0, 1, 2])[s.r]",
        "current_tier": f"(ARRAY{FIRST_TIERS})[s.r]",
        "route": f"(ARRAY{[json.dumps(r) for r in ROUTES]})[s.r]::jsonb",
        "required_approvals": "(ARRAY[1, 1, 1, 2])[s.r]",
        "urgency": f"(ARRAY{urgencies})[s.u]",
        "created_at": "s.c",
        "expires_at": "s.c + s.lim * interval '1 second'",
        "escalates_at": half,
        "escalated_at": f"CASE WHEN {half} < now() THEN {half} END",
        "escalation_level": f"CASE WHEN {half} < now() THEN 1 ELSE 0 END",
    }
    if decided:
        overrides |= {
            "status": "CASE WHEN mod(s.g, 10) = 0 THEN 'expired' ELSE 'approved' END",
            "decided_at": "s.c + mod(s.g, 600) * interval '1 second'",
            "expires_at": "s.c + 86400 * interval '1 second'",
            "escalated_at": "NULL",
            "escalation_level": "0",
        }
    quote = connection.ops.quote_name
    names = [f.column for f in ApprovalRequest._meta.concrete_fields if f.column]
    columns = ", ".join(quote(name) for name in names)
    values = ", ".join(overrides.get(name, f"t.{quote(name)}") for name in names)
    table = connection.ops.quote_name(ApprovalRequest._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {values} "  # noqa: S608 - our own columns
            f"FROM ({base}) AS s, {table} AS t WHERE t.id = %s",
            [count, template.pk],
        )


def _violations(count: int) -> None:
    """Violations over the last 30 days, the agents and reasons in turn (as the check writes
    them, but in one INSERT ... SELECT)."""
    from agents.models import Agent
    from guardrails.models import Violation

    if not count:
        return
    agent_ids = list(Agent.objects.values_list("pk", flat=True))
    table = connection.ops.quote_name(Violation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (agent_id, action, code, severity, message, reasons, param, "  # noqa: S608
            "excerpt, pattern, params_sha256, purpose, created_at) "
            f"SELECT (ARRAY{agent_ids})[1 + mod(g, {len(agent_ids)})], 'read_file', "
            f"(ARRAY{VIOLATION_CODES})[1 + mod(g, 4)], 'high', 'scale benchmark', '[]'::jsonb, "
            "'path', '/app/…', '', md5(g::text) || md5(g::text), 'check', "
            "now() - (%s - g) * interval '13 seconds' FROM generate_series(1, %s) AS g",
            [count, count],
        )


def _votes() -> None:
    """The decided requests' deciders and votes: one in four rejected, by five approvers in
    turn, so the fairness and overseers figures have data (one INSERT ... SELECT)."""
    from approvals.models import ApprovalRequest, Vote

    voters = [User.objects.get_or_create(username=f"scale-approver-{n}")[0].pk for n in range(5)]
    requests = connection.ops.quote_name(ApprovalRequest._meta.db_table)
    votes = connection.ops.quote_name(Vote._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {requests} SET "  # noqa: S608 - our own table and ids
            f"decided_by_id = (ARRAY{voters})[1 + mod(abs(hashtext(id::text)), 5)], "
            "status = CASE WHEN mod(abs(hashtext(id::text)), 4) = 0 THEN 'rejected' "
            "ELSE status END WHERE status = 'approved' AND decided_by_id IS NULL"
        )
        cursor.execute(
            f"INSERT INTO {votes} (request_id, voter_id, voter_name, vote, comment, "  # noqa: S608
            "params_sha256, is_self_approval, created_at) "
            "SELECT id, decided_by_id, 'scale approver', "
            "CASE status WHEN 'rejected' THEN 'reject' ELSE 'approve' END, '', "
            f"current_params_sha256, false, decided_at FROM {requests} r "
            f"WHERE decided_by_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {votes} v "
            "WHERE v.request_id = r.id)"
        )


def _outcomes(count: int) -> None:
    """Outcomes over the last 30 days, the agents in turn, one in twelve failed, one in three
    with a cost (as `POST /api/v1/outcomes` writes them, but in one INSERT ... SELECT)."""
    from agents.models import Agent
    from controls.models import Outcome

    if not count:
        return
    agent_ids = list(Agent.objects.values_list("pk", flat=True))
    table = connection.ops.quote_name(Outcome._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, agent_id, action, params_sha256, receipt, "  # noqa: S608
            "approved_params_sha256, success, error, duration_ms, cost_cents, risk_level, "
            "category, critical, created_at) "
            f"SELECT gen_random_uuid(), (ARRAY{agent_ids})[1 + mod(g, {len(agent_ids)})], "
            "'read_file', md5(g::text) || md5(g::text), 'none', '', mod(g, 12) <> 0, "
            "CASE WHEN mod(g, 12) = 0 THEN 'TimeoutError' ELSE '' END, mod(g, 900), "
            "CASE WHEN mod(g, 3) = 0 THEN mod(g, 50) END, 'low', 'read', false, "
            f"now() - mod(g::bigint * {STRIDE}, 30 * 86400) * interval '1 second' "
            "FROM generate_series(1, %s) AS g",
            [count],
        )


def _roll_up() -> None:
    """The finished days rolled up, as beat keeps them (`monitoring.rollup`): the monitoring page
    aggregates only yesterday and today from the records."""
    from django.utils import timezone

    from monitoring import rollup

    yesterday = timezone.now().date() - timedelta(days=1)
    rollup.roll(yesterday - timedelta(days=rollup.KEEP_DAYS - 1), yesterday)


def measure(username: str, *, repeat: int = 20) -> dict[str, dict[str, Any]]:
    """Server time (in-process, no network) and query count of each page, for `username`."""
    from django.core.cache import cache

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=username))
    results: dict[str, dict[str, Any]] = {}
    for name, path in PAGES.items():
        timings = []
        queries = 0
        cache.clear()
        for _ in range(repeat):
            if not name.endswith("(cached)"):
                cache.clear()  # the figures would otherwise come from the cache after the first
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(path)
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code)
            queries = len(captured.captured_queries)
        results[name] = {
            "p50_ms": statistics.median(timings),
            "max_ms": max(timings),
            "queries": queries,
        }
    return results
