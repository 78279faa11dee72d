"""Concurrent writers never fork the chain (SPEC §9.4): real processes, real transactions."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AuditEvent
from tests.audit.workers import append_events

BASE_DIR = Path(__file__).resolve().parents[2]


def run_writers(processes: int, count: int, **database: str) -> None:
    """Start `processes` spawned writers, release them together, and wait for all of them."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    workers = [
        context.Process(target=append_events, args=(number, count, barrier), kwargs=database)
        for number in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(timeout=120)  # every child is set up and connected: go
        for worker in workers:
            worker.join(timeout=180)
        assert [worker.exitcode for worker in workers] == [0] * processes
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()


@pytest.mark.slow
@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="the test database must be shared by processes; SQLite's is in memory "
    "(test_sqlite_writers_in_processes_never_fork_the_chain covers SQLite)",
)
@pytest.mark.django_db(transaction=True)
def test_eight_processes_appending_at_once_never_fork_the_chain():
    run_writers(8, 200, database_name=connection.settings_dict["NAME"])

    rows = list(
        AuditEvent.objects.order_by("sequence").values_list("sequence", "prev_hash", "hash")
    )
    assert [sequence for sequence, _, _ in rows] == list(range(1, 1601))
    for (_, _, previous_hash), (sequence, prev_hash, _) in itertools.pairwise(rows):
        assert prev_hash == previous_hash, f"fork at {sequence}"
    per_worker = Counter(AuditEvent.objects.values_list("subject_id", flat=True))
    assert per_worker == {str(worker): 200 for worker in range(8)}
    # Time order and sequence order agree.
    times = list(AuditEvent.objects.order_by("sequence").values_list("occurred_at", flat=True))
    assert times == sorted(times)

    from audit.integrity import verify_chain

    result = verify_chain()
    assert (result.intact, result.events_checked) == (True, 1600)


@pytest.mark.slow
def test_sqlite_writers_in_processes_never_fork_the_chain(tmp_path):
    """The embedded database: BEGIN IMMEDIATE is the append lock (a file of its own here)."""
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url}

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    migrated = manage("migrate", "--noinput", "-v0")
    assert migrated.returncode == 0, migrated.stderr
    run_writers(4, 100, database_url=url)

    verified = manage("verify_audit")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(
        "Audit chain intact: 400 events, no signed checkpoint yet, head sequence 400,"
    )

    # The command's exit status is what a cron job sees: 1, naming the edited event.
    with sqlite3.connect(tmp_path / "audit.sqlite3") as database:
        database.execute("DROP TRIGGER audit_event_no_update")
        database.execute("UPDATE audit_auditevent SET actor_name = 'x' WHERE sequence = 123")
    verified = manage("verify_audit")
    assert verified.returncode == 1
    assert "Audit chain BROKEN at sequence 123: its content does not match its hash" in (
        verified.stderr
    )
