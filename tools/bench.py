"""`make bench`: the performance targets of SPEC §10, each as a ratio against a floor measured
in the same run on the same machine.

It needs the production shape: PostgreSQL and Redis (from DATABASE_URL / REDIS_URL, else on
localhost). It creates a scratch database `<name>_bench`, starts the web server exactly as
`make web` does (uvicorn, WEB_CONCURRENCY workers, DEBUG off), and drives it from this process
with a lean keep-alive HTTP/1.1 client over asyncio, so the load generator costs as little CPU
as possible on the shared cores (its CPU time is printed too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tools.bench_audit import audit_trail
from tools.bench_mcp import gateway_overhead
from tools.loadgen import (
    CONCURRENCY,
    ROUNDS,
    Result,
    against_floor,
    combined,
    measure,
    post_json,
)
from tools.services import free_port, wait_for_http
from tools.stack import (
    BASE_DIR,
    CHROMIUM,
    CHROMIUM_ARGS,
    create_agents,
    find_services,
    manage,
    percentile,
    production_env,
    scratch_database,
    start_process,
    stop_processes,
    timer_lateness,
    wait_for_worker,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds measured per scenario"
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--web-workers", default=os.environ.get("WEB_CONCURRENCY", "2"))
    parser.add_argument(
        "--only",
        choices=sorted(SECTIONS),
        help="run one section (make bench BENCH=punctuality)",
    )
    args = parser.parse_args()

    services = find_services()
    if services is None:
        print(
            "make bench needs PostgreSQL and Redis "
            "(set DATABASE_URL / REDIS_URL, or run them locally)."
        )
        return 2
    database, redis_url = services
    tmp = Path(tempfile.mkdtemp(prefix="oversight-bench-"))
    port = free_port()
    env = production_env(
        database=scratch_database(database, "bench"),
        redis_url=redis_url,
        redis_db=10,
        tmp=tmp,
        port=port,
        web_workers=args.web_workers,
    )
    print(
        f"Oversight benchmark: {os.cpu_count()} cores, web = uvicorn x{args.web_workers} workers, "
        f"PostgreSQL + Redis, {CONCURRENCY} concurrent clients, {args.duration:.0f} s per scenario"
    )
    manage(env, "migrate", "--noinput")
    # Agents for the clients, so the per-agent rate limit stays at its production default and
    # its Redis counter is part of every measured call: one per client, and AGENTS_PER_CLIENT
    # for the checks, which come faster than one agent may call (1 200 a minute).
    agents = create_agents(
        env, count=CONCURRENCY * AGENTS_PER_CLIENT, prefix="bench-agent", team="bench"
    )
    keys = [key for key, _ in agents]
    web = start_process("web", env)
    try:
        if not wait_for_http(f"http://127.0.0.1:{port}/healthz", 60):
            print("the web server did not start")
            return 1
        if args.only in (None, "check"):
            guardrails_check(port, keys, env, args.warmup, args.duration)
        if args.only in (None, "hot-path"):
            hot_path(port, keys[:CONCURRENCY], args.warmup, args.duration)
        if args.only in (None, "costs"):
            cost_ingestion(port, keys[:CONCURRENCY], env, args.warmup, args.duration)
        if args.only in (None, "push"):
            push_latency(port, keys[0], env)
        if args.only in (None, "mcp"):
            gateway_overhead(port, keys[-32:], env, tmp)
        if args.only in (None, "punctuality"):  # before the scale fill adds 100 000 requests
            punctuality(port, keys[1], env, tmp)
        if args.only in (None, "scale"):
            at_scale(env)
        if args.only in (None, "audit"):  # after the scale fill: it tops the trail up to 1 000 000
            audit_trail(env, tmp)
    finally:
        stop_processes([web])
    return 0


AGENTS_PER_CLIENT = 4
# About 1 KB of arguments, as SPEC §10.7 asks for the policy evaluation.
CHECK_PARAMS: dict[str, object] = {
    "path": "/srv/data/reports/2026/q4/revenue-by-region.csv",
    "encoding": "utf-8",
    "columns": [f"column_{n}" for n in range(40)],
    "filters": {"region": ["emea", "apac", "amer"], "since": "2026-10-01", "limit": 5000},
    "reason": "Summarise the quarter's revenue for the board pack. " * 6,
}


def guardrails_check(
    port: int, keys: list[str], env: dict[str, str], warmup: float, duration: float
) -> None:
    """SPEC §10.1 and §10.7: the check's allow path against the bare view on its own stack
    (/api/v1/health) in the same rounds; the deny path against the allow path; and the policy
    evaluation alone, in process."""
    print("\n§10.1 guardrails check (32 clients, 4 agents each in turn)")
    # Each call reads another file, as agents do: the same call three times in a row would be
    # a loop (SPEC §6), which needs a person and records a violation.
    files = itertools.count()

    def allow() -> dict[str, object]:
        path = f"/srv/reports/{next(files)}.csv"
        return {"action": "read_file", "params": {**CHECK_PARAMS, "path": path}}

    def deny() -> dict[str, object]:
        path = f"/srv/app/{next(files)}/.env"
        return {"action": "read_file", "params": {**CHECK_PARAMS, "path": path}}

    groups = [keys[n::CONCURRENCY] for n in range(CONCURRENCY)]
    allows = [post_json("/api/v1/guardrails/check", group, allow) for group in groups]
    ratios = against_floor(
        "POST /api/v1/guardrails/check (allow)",
        "check",
        port,
        allows,
        warmup=warmup,
        duration=duration,
        reference=True,
    )
    ratio = ratios["reference"]
    verdict = "no verdict on" if math.isnan(ratio) else "meets" if ratio >= 0.6 else "BELOW"
    print(f"  (against the reference: {verdict} the >= 0.6 target)")

    print("\n  deny path (each a violation and its audit event) against the allow path")
    denies = [post_json("/api/v1/guardrails/check", group, deny) for group in groups]
    rounds: dict[str, list[Result]] = {"allow": [], "deny": []}
    for n in range(ROUNDS):
        order = [("allow", allows), ("deny", denies)]
        for label, load in order[n % 2 :] + order[: n % 2]:
            rounds[label].append(
                measure(label, port, load, warmup=warmup, duration=duration / ROUNDS)
            )
    allowed, denied = (combined(label, rounds[label]) for label in ("allow", "deny"))
    print(allowed.line())
    print(denied.line())
    per_round = [
        d.percentile(0.5) / a.percentile(0.5)
        for a, d in zip(rounds["allow"], rounds["deny"], strict=True)
    ]
    slower = statistics.median(per_round)
    verdict = "meets" if slower <= 2 else "MISSES"
    print(
        f"  deny/allow time: median latency {slower:.2f}x (rounds "
        f"{', '.join(f'{r:.2f}' for r in per_round)}), p99 "
        f"{denied.percentile(0.99) / allowed.percentile(0.99):.2f}x ({verdict} the <= 2x target)"
    )

    print("\n§10.7 policy evaluation alone (in process: the seed's 8 policies, 1 KB of params)")
    script = (
        "import json, time\n"
        "from agents.models import Agent\n"
        "from guardrails import rules, selectors\n"
        "policies = selectors.policy_set()\n"
        "agent = Agent.objects.order_by('pk').first()\n"
        f"params = {CHECK_PARAMS!r}\n"
        "actions = sorted(policies.everyone)\n"
        "timings = []\n"
        "for n in range(40000):\n"
        "    action = actions[n % len(actions)]\n"
        "    facts = rules.Facts(action=action, params=params, confidence=0.8)\n"
        "    started = time.perf_counter()\n"
        "    rules.evaluate(policies.policy_for(agent, action), facts)\n"
        "    timings.append(time.perf_counter() - started)\n"
        "timings.sort()\n"
        "hostile = rules.compile_policy(id=0, name='h', scope='global', version=1,\n"
        "    version_id=None, category='read', risk_level='low',\n"
        "    forbidden_patterns=['(a+)+$', '(x+x+)+y', '^(([a-z])+.)+[A-Z]([a-z])+$'],\n"
        "    params_schema={'type': 'object', 'properties': {'s': {'pattern': '(a|aa)+$'}}})\n"
        "worst = 0.0\n"
        "for text in ('a' * 50_000 + '!', 'x' * 50_000, 'a' * 250_000):\n"
        "    facts = rules.Facts(action='h', params={'s': text, 'deep': [[text]]})\n"
        "    started = time.perf_counter()\n"
        "    rules.evaluate(hostile, facts)\n"
        "    worst = max(worst, time.perf_counter() - started)\n"
        "pick = lambda q: timings[min(len(timings) - 1, int(q * len(timings)))] * 1e6\n"
        "print(json.dumps({'p50': pick(0.5), 'p99': pick(0.99), 'max': timings[-1] * 1e6,\n"
        "                  'size': len(json.dumps(params)), 'worst_hostile_ms': worst * 1e3}))\n"
    )
    figures = json.loads(
        manage(env, "shell", "--no-imports", "-c", script).strip().splitlines()[-1]
    )
    verdict = "meets" if figures["p99"] < 200 else "MISSES"
    print(
        f"  {figures['size']} bytes of params: p50 {figures['p50']:.0f} µs, p99 "
        f"{figures['p99']:.0f} µs, max {figures['max']:.0f} µs ({verdict} the p99 < 200 µs target)"
    )
    verdict = "meets" if figures["worst_hostile_ms"] < 10 else "MISSES"
    print(
        f"  hostile patterns ((a+)+$ ...) over 50-250 KB inputs: worst "
        f"{figures['worst_hostile_ms']:.2f} ms ({verdict} the < 10 ms bound)"
    )


def hot_path(port: int, keys: list[str], warmup: float, duration: float) -> None:
    """SPEC §10.1: the agent hot path against a bare Django JSON endpoint (the floor)."""
    counter = iter(range(10**9))

    def create_body() -> dict[str, object]:
        return {
            # A policy without a rate limit (guardrails' seed), claimed at medium risk.
            "action": "read_file",
            "params": {"path": "/srv/builds/api", "build": next(counter)},
            "risk_level": "medium",
            "urgency": "low",
            "justification": "benchmark",
        }

    print("\n§10.1 agent hot path")
    creates = [post_json("/api/v1/approval-requests", key, create_body) for key in keys]
    against_floor(
        "POST /api/v1/approval-requests",
        "create",
        port,
        creates,
        warmup=warmup,
        duration=duration,
        reference=True,
    )
    print(
        "  (SPEC §10.1: a create is human-paced, so it has no ratio target, only no regression;"
        " it runs the guardrails check too. The floor is a bare view on the pages' middleware,"
        " the reference the same view on the agent API's own stack)"
    )


COST_BODY = {"model": "gpt-4o-mini", "input_tokens": 1234, "output_tokens": 567}
COST_EACH_CENTS = "0.05253000"  # 1234 x 15 + 567 x 60 cents per million tokens


def cost_ingestion(
    port: int, keys: list[str], env: dict[str, str], warmup: float, duration: float
) -> None:
    """SPEC §10.6: cost reports from 32 concurrent reporters, with a global budget and a team
    budget on every report (two window rows updated atomically per call), then a check that
    nothing was lost: both windows hold exactly the sum of the recorded costs."""
    print("\n§10.6 cost ingestion (32 concurrent reporters, 2 budgets per report)")
    manage(env, "set_budget", "--global", "--period", "monthly", "--limit-cents", "1000000000")
    manage(env, "set_budget", "--team", "bench", "--period", "daily", "--limit-cents", "100000")
    # The web processes cache budgets for 5 s: let them see the new ones before measuring.
    time.sleep(6)
    reports = [post_json("/api/v1/costs", key, lambda: COST_BODY) for key in keys]
    against_floor(
        "POST /api/v1/costs",
        "costs",
        port,
        reports,
        warmup=warmup,
        duration=duration,
        reference=True,
    )
    check = (
        "from decimal import Decimal\n"
        "from django.db.models import Sum\n"
        "from budgets.models import BudgetWindow, CostRecord\n"
        "rows = CostRecord.objects.filter(agent__team='bench')\n"
        "total = rows.aggregate(t=Sum('cost_cents'))['t'] or Decimal(0)\n"
        "windows = BudgetWindow.objects.values('budget').annotate(s=Sum('spent_cents'))\n"
        f"priced = total == rows.count() * Decimal('{COST_EACH_CENTS}')\n"
        "print(rows.count(), total, priced and sorted({w['s'] for w in windows}) == [total])\n"
    )
    count, total, exact = manage(env, "shell", "--no-imports", "-c", check).split()
    verdict = "exact" if exact == "True" else "MISMATCH: an update was lost"
    print(f"  {count} reports recorded, {total} cents; budget windows vs sum of reports: {verdict}")


PUSH_SAMPLES = 60
# Records, in the page, when each request's row first appears (same machine clock as ours).
_WATCH_ROWS = """
() => {
  window.__seen = {};
  const note = () => {
    const now = Date.now();
    for (const row of document.querySelectorAll('tr[id^="request-"]')) {
      if (!(row.id in window.__seen)) { window.__seen[row.id] = now; }
    }
  };
  new MutationObserver(note).observe(document.body, {childList: true, subtree: true});
  note();
}
"""


def push_latency(port: int, key: str, env: dict[str, str]) -> None:
    """SPEC §10.2: the agent's POST returns -> the row is visible in an open inbox in Chromium."""
    import httpx
    from playwright.sync_api import sync_playwright

    print("\n§10.2 live push latency (POST returned -> row in an open inbox in Chromium)")
    if not os.path.exists(CHROMIUM):
        print("  skipped: Debian's chromium is not installed (apt-get install chromium)")
        return
    manage(
        env,
        "create_user",
        "bench-approver",
        "--password",
        "violet-harbour-lantern-42",
        "--role",
        "approver",
        "--tier",
        "team_lead",
    )
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    with sync_playwright() as playwright, httpx.Client(base_url=base, timeout=10) as agent:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{base}/login/")
        page.fill("#id_username", "bench-approver")
        page.fill("#id_password", "violet-harbour-lantern-42")
        page.click("button[type=submit]")
        page.wait_for_selector("body[data-live=open]", timeout=15_000)
        page.evaluate(_WATCH_ROWS)
        headers = {"Authorization": f"Bearer {key}"}
        for n in range(PUSH_SAMPLES):
            body = {
                "action": "read_file",  # low risk, no rate limit (guardrails' seed)
                "params": {"n": n},
                "risk_level": "low",
                "justification": "push bench",
            }
            response = agent.post("/api/v1/approval-requests", json=body, headers=headers)
            posted_ms = time.time() * 1000
            row = f"request-{response.json()['id']}"
            deadline = time.monotonic() + 10
            seen = None
            while seen is None and time.monotonic() < deadline:
                seen = page.evaluate(f"() => window.__seen['{row}'] ?? null")
            if seen is None:
                print(f"  request {n}: the row never appeared")
                continue
            latencies.append(max(0.0, seen - posted_ms))
        browser.close()
    if latencies:
        ordered = sorted(latencies)
        p50 = ordered[len(ordered) // 2]
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        verdict = "meets" if p95 < 250 else "MISSES"
        print(
            f"  {len(latencies)} requests: p50 {p50:.0f} ms, p95 {p95:.0f} ms,"
            f" max {ordered[-1]:.0f} ms "
            f"({verdict} the p95 < 250 ms target)"
        )


SCALE = {
    "pending": 100_000,
    "decided": 50_000,
    "events": 1_000_000,
    "violations": 200_000,
    "outcomes": 1_000_000,
}
# Server time targets of SPEC §10.4: 100 ms, and for the monitoring page's figures computed
# afresh (they are then cached for a minute) 1 s.
TARGET_MS = {"monitoring (cold)": 1000.0, "fairness (cold)": 1000.0, "overseers (cold)": 1000.0}
SMALL = {name: count // 1000 for name, count in SCALE.items()}  # the query counts' baseline


def at_scale(env: dict[str, str]) -> None:
    """SPEC §10.4 (pages over 100 000 pending requests and 1 000 000 audit events: server time
    < 100 ms, a query count that does not grow) and §10.5 (verify a million events < 10 s)."""
    print(
        f"\n§10.4 pages at scale: {SCALE['pending']:,} pending + {SCALE['decided']:,} decided "
        f"requests, {SCALE['violations']:,} guardrail violations, {SCALE['outcomes']:,} "
        f"outcomes, {SCALE['events']:,} audit events (server time in-process, 20 loads each)"
    )
    manage(env, "create_user", "bench-manager", "--password", secrets.token_urlsafe(16),
            "--role", "approver", "--role", "manager", "--tier", "director")  # fmt: skip
    script = (
        "import json\n"
        "from tools import scale\n"
        f"scale.seed(**{SMALL!r})\n"
        "before = scale.measure('bench-manager')\n"
        f"scale.seed(**{ {k: v - SMALL[k] for k, v in SCALE.items()}!r})\n"
        "print(json.dumps({'before': before, 'after': scale.measure('bench-manager')}))\n"
    )
    started = time.perf_counter()
    output = manage(env, "shell", "--no-imports", "-c", script).strip().splitlines()[-1]
    print(f"  (filled and measured in {time.perf_counter() - started:.0f} s)")
    measured = json.loads(output)
    for page, after in measured["after"].items():
        before = measured["before"][page]
        same = "same" if after["queries"] <= before["queries"] else "MORE"
        target = TARGET_MS.get(page, 100.0)
        verdict = "meets" if after["p50_ms"] < target else "MISSES"
        print(
            f"  {page:<20} p50 {after['p50_ms']:6.1f} ms  max {after['max_ms']:6.1f} ms "
            f"({verdict} < {target:.0f} ms)   queries {after['queries']} ({same} as with a "
            f"thousandth of the data: {before['queries']})"
        )
    print("\n§10.5 audit verification of the chain above")
    script = (
        "import resource, time\n"
        "from audit.integrity import verify_chain\n"
        "started = time.perf_counter()\n"
        "result = verify_chain()\n"
        "seconds = time.perf_counter() - started\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(result.intact, result.events_checked, seconds, peak)\n"
    )
    verified = manage(env, "shell", "--no-imports", "-c", script)
    intact, checked, seconds, peak = verified.split()[-4:]
    verdict = "meets" if float(seconds) < 10 else "MISSES"
    print(
        f"  verify {int(checked):,} events: {float(seconds):.1f} s ({verdict} < 10 s), "
        f"intact={intact}, peak memory of the process {float(peak):.0f} MB"
    )


PUNCTUALITY_SAMPLES = 60


def punctuality(port: int, key: str, env: dict[str, str], tmp: Path) -> None:
    """SPEC §10.3: how late escalation (at half-time) and expiry happen, with a real worker and
    beat on their production defaults. Lateness is the time the change was made (its audit
    event's time, from the database's clock) minus the time it was due. Not `decided_at`: an
    expired request is dated at its deadline, however late the sweep."""
    import httpx
    import psycopg

    print(
        f"\n§10.3 punctuality: {PUNCTUALITY_SAMPLES} requests with 2-6 s time limits through the"
        " API, worker + beat"
    )
    worker_log = tmp / "worker.log"
    worker = start_process("worker", env, worker_log, OVERSIGHT_LOG_LEVEL="INFO")
    processes = [worker, start_process("beat", env, tmp / "beat.log")]
    try:
        if not wait_for_worker(worker, worker_log):
            print("  the worker did not start")
            return
        ids: list[str] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as agent:
            for n in range(PUNCTUALITY_SAMPLES):
                body = {
                    "action": "write_file",
                    "params": {"n": n},
                    "risk_level": "medium",
                    "justification": "punctuality bench",
                    "timeout_seconds": 2 + n % 5,
                }
                response = agent.post(
                    "/api/v1/approval-requests",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
                if response.status_code != 201:
                    print(f"  a create was refused: {response.status_code} {response.text[:200]}")
                    return
                ids.append(response.json()["id"])
                time.sleep(0.05)  # spread the deadlines out, as real traffic would
        expired: dict[str, float] = {}
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while len(expired) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.5)
                expired = timer_lateness(conn, ids, "request.expired")
            escalated = timer_lateness(conn, list(expired), "request.escalated")
    finally:
        stop_processes(processes)
    if len(expired) < len(ids):
        print(f"  only {len(expired)} of {len(ids)} requests expired within 30 s of their deadline")
    for name, values in (
        ("escalation", list(escalated.values())),
        ("expiry", list(expired.values())),
    ):
        if not values:
            continue

        def at(q: float, values: list[float] = values) -> float:
            return percentile(values, q) * 1000

        verdict = "meets" if at(0.99) < 1000 else "MISSES"
        print(
            f"  {name:<11} lateness over {len(values)}: p50 {at(0.5):.0f} ms, p95 {at(0.95):.0f}"
            f" ms, p99 {at(0.99):.0f} ms, max {max(values) * 1000:.0f} ms ({verdict} the"
            " p99 < 1 s target)"
        )


SECTIONS = {"check", "hot-path", "costs", "push", "mcp", "punctuality", "scale", "audit"}

if __name__ == "__main__":
    os.chdir(BASE_DIR)
    sys.exit(main())
