"""`python -m tools.soak` (`make soak`): set up, run, report; see the package's doc."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from subprocess import Popen

from tools.services import free_port, wait_for_http
from tools.soak import AGENTS, LEAD, MANAGER, PASSWORD, TEAM
from tools.soak.browser import Inbox
from tools.soak.observe import Mark, outbox_backlog, outbox_tables, processes
from tools.soak.report import Report, print_report
from tools.soak.traffic import RATES, Agent, CallbackReceiver, Traffic
from tools.stack import (
    BASE_DIR,
    create_agents,
    find_services,
    manage,
    production_env,
    scratch_database,
    start_process,
    stop_processes,
    wait_for_worker,
)

DEFAULT_SECONDS = 600
SETTLE_SECONDS = 10  # after the traffic, for the timers and callbacks due at its end


def populate(env: dict[str, str]) -> list[Agent]:
    """The agents (keys, webhook secrets), the two people and a global and a team budget."""
    script = (
        "from django.core.management import call_command\n"
        "from accounts import services\n"
        f"services.create_user(username={LEAD!r}, password={PASSWORD!r}, roles=['approver'],\n"
        f"    tier='team_lead', email='{LEAD}@example.com')\n"
        f"services.create_user(username={MANAGER!r}, password={PASSWORD!r},\n"
        "    roles=['approver', 'manager'], tier='engineering_manager',\n"
        f"    email='{MANAGER}@example.com')\n"
        "call_command('set_budget', '--global', '--period', 'monthly',\n"
        "    '--limit-cents', '1000000000')\n"
        f"call_command('set_budget', '--team', {TEAM!r}, '--period', 'daily',\n"
        "    '--limit-cents', '10000000')\n"
    )
    manage(env, "shell", "--no-imports", "-c", script)
    made = create_agents(env, count=AGENTS, prefix="soak-agent", team=TEAM)
    return [Agent(n, key, secret) for n, (key, secret) in enumerate(made)]


async def soak(
    env: dict[str, str],
    agents: list[Agent],
    roots: dict[str, int],
    tables: list[str],
    args: argparse.Namespace,
) -> Report:
    """Open the inbox, note the start, run the traffic with a mark half-way and at the end, let
    what is due settle, and gather what the report needs."""
    base = f"http://127.0.0.1:{env['PORT']}"
    receiver = CallbackReceiver(agents)
    await receiver.start()
    traffic = Traffic(base, agents, receiver, args.rate, args.seed)
    await traffic.log_in()
    inbox = Inbox()
    marks: list[Mark] = []

    async def mark(name: str) -> None:
        found = await asyncio.to_thread(processes, roots)
        backlog = await asyncio.to_thread(outbox_backlog, env["DATABASE_URL"], tables)
        marks.append(Mark(name, found, backlog, await inbox.state()))
        print(f"[soak] {name}: inbox {marks[-1].inbox}", flush=True)

    try:
        await inbox.open(base)
        await mark("start")
        began = time.time()
        traffic.start()
        print(f"[soak] traffic for {args.seconds:.0f} s ...", flush=True)
        await asyncio.sleep(args.seconds / 2)
        await mark("half-way")
        await asyncio.sleep(began + args.seconds - time.time())
        await mark("end")
        ended = time.time()
        await traffic.stop()
        print(f"[soak] traffic stopped; {SETTLE_SECONDS} s for what is due ...", flush=True)
        await asyncio.sleep(SETTLE_SECONDS)
        inbox_matches = await inbox.matches_a_fresh_load()
    finally:
        receiver.close()
        await inbox.close()
    return Report(
        calls=traffic.calls,
        marks=marks,
        created=traffic.created,
        woken=traffic.woken,
        arrivals=receiver.arrivals,
        bad_callbacks=receiver.bad,
        inbox_matches=inbox_matches,
        browser_errors=inbox.errors,
        ended=ended,
        seconds=args.seconds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("SOAK_SECONDS") or DEFAULT_SECONDS),
        help="how long the traffic runs (default: SOAK_SECONDS, else 600)",
    )
    parser.add_argument("--rate", type=float, default=1.0, help="scale every stream's rate")
    parser.add_argument("--seed", type=int, default=0, help="the traffic's random choices")
    parser.add_argument("--web-workers", default=os.environ.get("WEB_CONCURRENCY", "2"))
    args = parser.parse_args()
    services = find_services()
    if services is None:
        print("make soak needs PostgreSQL and Redis (set DATABASE_URL / REDIS_URL, or run them "
              "locally).")  # fmt: skip
        return 2
    database, redis_url = services
    tmp = Path(tempfile.mkdtemp(prefix="oversight-soak-"))
    from tests.support.smtp import SmtpSink

    sink = SmtpSink()
    port = free_port()
    env = production_env(
        database=scratch_database(database, "soak"),
        redis_url=redis_url,
        redis_db=11,
        tmp=tmp,
        port=port,
        web_workers=args.web_workers,
    )
    env.update(
        # The callback receiver and the SMTP sink listen on loopback.
        OVERSIGHT_CALLBACK_ALLOW_PRIVATE="true",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(sink.port),
        OVERSIGHT_BASE_URL=f"http://127.0.0.1:{port}",
        # People reject a quarter of the requests at random and the soak's agents report no
        # outcomes: their circuit breakers (SPEC §6) would pause them by chance, mid-soak.
        OVERSIGHT_BREAKER_OPEN_AFTER="1000000",
        OVERSIGHT_BREAKER_PAUSE_AFTER="1000000",
    )
    print(
        f"Oversight soak: {args.seconds:.0f} s at x{args.rate:g} the base rates "
        f"(about {sum(RATES.values()) * args.rate:.0f} calls/s started, plus long-polls and "
        f"decisions), {os.cpu_count()} cores, web = uvicorn x{args.web_workers}, logs in {tmp}"
    )
    manage(env, "migrate", "--noinput")
    agents = populate(env)
    tables = outbox_tables(env)
    logs = {kind: tmp / f"{kind}.log" for kind in ("web", "worker", "beat")}
    started: dict[str, Popen[bytes]] = {}
    try:
        started["web"] = start_process("web", env, logs["web"])
        started["worker"] = start_process("worker", env, logs["worker"], OVERSIGHT_LOG_LEVEL="INFO")
        started["beat"] = start_process("beat", env, logs["beat"])
        if not wait_for_http(f"http://127.0.0.1:{port}/healthz", 60):
            print(f"the web server did not start; see {logs['web']}")
            return 1
        if not wait_for_worker(started["worker"], logs["worker"]):
            print(f"the worker did not start; see {logs['worker']}")
            return 1
        roots = {name: process.pid for name, process in started.items()}
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        report = asyncio.run(soak(env, agents, roots, tables, args))
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (
            cpu_after.ru_stime - cpu_before.ru_stime
        )
        report.failures += [
            f"{name} exited with {process.returncode}"
            for name, process in started.items()
            if process.poll() is not None
        ]
        return print_report(report, env["DATABASE_URL"], logs, cpu, len(sink.messages))
    finally:
        stop_processes([started[name] for name in ("web", "beat", "worker") if name in started])
        sink.close()


if __name__ == "__main__":
    os.chdir(BASE_DIR)
    sys.exit(main())
