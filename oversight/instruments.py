"""The Prometheus counters and histograms (SPEC §12), moved where their events happen.

Several processes serve one deployment (uvicorn's web workers, Celery's pool processes), and a
scrape reaches one of them, so with `PROMETHEUS_MULTIPROC_DIR` set (`oversight.processes` sets
it; `make run` empties it at start) each process writes its values to memory-mapped files there
and `/metrics` sums them all (`monitoring.prometheus`). Without the variable (a `manage.py
shell`, the test process) the values live in this process's registry only.

The directory may be shared by several hosts (compose: one volume for the web and worker
containers), where process ids repeat: a process's files are named by host *and* pid.

These live here, in the shared plumbing, because the apps that count (approvals, guardrails)
sit below `monitoring`, which only reads them. The state of the database (requests by status,
backlogs, spend) is not counted here: `/metrics` reads it at scrape time.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
from pathlib import Path

from prometheus_client import Counter, Histogram, values
from prometheus_client import multiprocess as _multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_identifier() -> str:
    """Distinct across the hosts sharing the directory; no `_`, which the collector splits
    file names on."""
    return f"{socket.gethostname().replace('_', '-')}-{os.getpid()}"


def prepare_dir(path: str | Path, *, empty: bool) -> None:
    """Create the directory; `empty` it when the whole set of processes writing there starts
    (files of processes that are gone would otherwise be summed forever, and pile up)."""
    path = Path(path)
    if empty and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def mark_process_dead(identifier: str | None = None) -> None:
    """A process exits: drop its live gauges' files (its counters stay in the sums)."""
    if multiprocess_dir():
        _multiprocess.mark_process_dead(identifier or process_identifier())


if multiprocess_dir():
    # Chosen before the first metric below is made (prometheus_client picks its value class at
    # import, from the same variable, with the bare pid as the file names' identifier).
    values.ValueClass = values.MultiProcessValue(process_identifier)
    atexit.register(mark_process_dead)

# Decision latency spans seconds (an approver at the screen) to a day (a critical request's
# time limit); timer lateness is sub-second when punctual, a tick (2 s) when the sweep caught it.
_DECISION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
_LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300)

APPROVAL_REQUESTS_CREATED = Counter(
    "oversight_approval_requests_created",
    "Approval requests opened, by effective risk level.",
    ["risk"],
)
APPROVAL_DECISION_SECONDS = Histogram(
    "oversight_approval_decision_seconds",
    "From a request's creation to its final state (approved, rejected, expired, cancelled).",
    ["risk", "outcome"],
    buckets=_DECISION_BUCKETS,
)
GUARDRAIL_CHECKS = Counter(
    "oversight_guardrail_checks",
    "Guardrail checks (and the checks inside creates), by decision; counted as the check log "
    "is drained into the database, not on the check's path.",
    ["purpose", "decision"],
)
GUARDRAIL_CHECK_CODES = Counter(
    "oversight_guardrail_check_codes",
    "The reason codes of the drained checks' answers (one check may carry several).",
    ["decision", "code"],
)
GUARDRAIL_VIOLATIONS = Counter(
    "oversight_guardrail_violations",
    "Guardrail violations written (checks that answered deny), by deciding code and severity.",
    ["code", "severity"],
)
TIMER_LATENESS_SECONDS = Histogram(
    "oversight_timer_lateness_seconds",
    "How long after its due time an escalation or expiry was applied.",
    ["timer"],
    buckets=_LATENESS_BUCKETS,
)
