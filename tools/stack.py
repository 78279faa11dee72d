"""The production-shaped stack that `make bench` and `make soak` drive.

PostgreSQL and Redis found as `make run` finds them, a scratch database, the environment of a
production deployment (DEBUG off), the processes started exactly as `make web`, `make worker`
and `make beat` start them, seeded agents and people, Debian's Chromium, and the timer lateness
read back from the audit trail.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from oversight.processes import POOLS
from tools.services import (
    LOCAL_POSTGRES_URL,
    LOCAL_REDIS_URL,
    local_postgres_answers,
    python_env,
    redis_answers,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# Debian's Chromium (the first `chromium` on PATH, as for the browser tests), driven by
# Playwright (never `playwright install`), with the flags the browser tests use.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def find_services() -> tuple[str, str] | None:
    """(DATABASE_URL, REDIS_URL) of a PostgreSQL and a Redis, from the environment or found on
    localhost; None when either is missing."""
    env = python_env()
    database = env.get("DATABASE_URL") or (LOCAL_POSTGRES_URL if local_postgres_answers() else "")
    redis_url = env.get("REDIS_URL") or (LOCAL_REDIS_URL if redis_answers(LOCAL_REDIS_URL) else "")
    if not database.startswith("postgres") or not redis_url:
        return None
    return database, redis_url


def scratch_database(url: str, suffix: str) -> str:
    """Drop and create `<name>_<suffix>` next to the database of `url`; return its URL."""
    import psycopg

    parsed = urlparse(url)
    name = f"{parsed.path.lstrip('/') or 'oversight'}_{suffix}"
    admin = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parsed._replace(path=f"/{name}"))


def production_env(
    *, database: str, redis_url: str, redis_db: int, tmp: Path, port: int, web_workers: str
) -> dict[str, str]:
    """The environment of a production deployment on loopback: DEBUG off, a fresh secret, no
    access log, the given Redis database (each tool its own, so a run never eats another's
    queued tasks)."""
    env = python_env()
    env.update(
        DATABASE_URL=database,
        REDIS_URL=urlunparse(urlparse(redis_url)._replace(path=f"/{redis_db}")),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        OVERSIGHT_HTTPS="false",
        OVERSIGHT_LOG_LEVEL="WARNING",
        OVERSIGHT_ACCESS_LOG="false",
        OVERSIGHT_STATIC_ROOT=str(tmp / "static"),
        OVERSIGHT_BEAT_SCHEDULE_FILE=str(tmp / "beat-schedule"),
        WEB_CONCURRENCY=web_workers,
        HOST="127.0.0.1",
        PORT=str(port),
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run a management command; return its output, or show its errors and raise."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        sys.stderr.write(result.stderr)
        result.check_returncode()
    return result.stdout


def create_agents(env: dict[str, str], *, count: int, prefix: str, team: str) -> list[list[str]]:
    """`count` agents `<prefix>-<n>` of `team`, through the services; [API key, webhook secret]
    of each."""
    script = (
        "from agents import services\n"
        f"for n in range({count}):\n"
        f"    agent, secret = services.create_agent(name=f'{prefix}-{{n}}', team={team!r})\n"
        "    print(services.issue_api_key(agent=agent)[1], secret)\n"
    )
    output = manage(env, "shell", "--no-imports", "-c", script)
    return [line.split() for line in output.splitlines() if line.strip()]


def start_process(
    kind: str, env: dict[str, str], log: Path | None = None, **extra: str
) -> subprocess.Popen[bytes]:
    """`python -m oversight.processes <kind>` in a session of its own, its output to `log`
    (else this terminal)."""
    handle = log.open("wb") if log is not None else None
    try:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "oversight.processes", kind],
            cwd=BASE_DIR,
            env={**env, **extra},
            stdout=handle,
            stderr=subprocess.STDOUT if handle is not None else None,
            start_new_session=True,
        )
    finally:
        if handle is not None:
            handle.close()


def wait_for_worker(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> bool:
    """True once every pool of the worker (started with OVERSIGHT_LOG_LEVEL=INFO) says it is
    ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if log.read_text(errors="replace").count(" ready.") >= len(POOLS):
            return True
        time.sleep(0.2)
    return False


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each (in order), then wait for them; kill what has not stopped in 30 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timer_lateness(conn: Any, ids: list[str], event_type: str) -> dict[str, float]:
    """Seconds between each request's deadline and the change that kept it, by request id.

    `event_type` is `request.escalated` (due at `escalates_at`) or `request.expired` (due at
    `expires_at`). The time the change was made is its audit event's (the database's clock),
    not `decided_at`: an expired request is dated at its deadline, however late the sweep.
    """
    column = {"request.escalated": "escalates_at", "request.expired": "expires_at"}[event_type]
    query = f"""
        SELECT r.id::text, EXTRACT(EPOCH FROM event.occurred_at - r.{column})
        FROM approvals_approvalrequest AS r
        JOIN audit_auditevent AS event
            ON event.subject_id = r.id::text AND event.event_type = %s
        WHERE r.id = ANY(%s)
    """  # noqa: S608 - the column is one of two names above
    rows = conn.execute(query, (event_type, [uuid.UUID(i) for i in ids])).fetchall()
    return {request_id: float(late) for request_id, late in rows}


def percentile(values: list[float], q: float) -> float:
    """The `q` quantile (0-1) of `values`, nearest rank; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
