"""The figures of each fault, kept for the table printed at the end of the session
(tests/faults/conftest.py: pytest_terminal_summary), so that they can be quoted side by side
with the no-fault baseline of the same run."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tests.faults.harness import AgentApi, Punctuality, Recorder
from tests.faults.procs import MB, MemoryWatchdog


@dataclass
class Figure:
    fault: str
    timers: Punctuality
    worker_peak_mb: float
    create_p99_ms: float
    answers: int
    server_errors: int
    note: str


FIGURES: list[Figure] = []


def record(
    fault: str,
    timers: Punctuality,
    *,
    api: AgentApi,
    others: tuple[Recorder, ...] = (),
    watchdog: MemoryWatchdog | None,
    note: str = "",
    outage: tuple[float, float] | None = None,
    create_p99: float | None = None,
) -> None:
    """One row of the table; `create_p99` (seconds), when the test picks which creates count."""
    recorders = (api, *others)
    FIGURES.append(
        Figure(
            fault,
            timers,
            worker_peak_mb=watchdog.peak / MB if watchdog else math.nan,
            create_p99_ms=(api.create_p99() if create_p99 is None else create_p99) * 1000,
            answers=sum(len(r.calls) for r in recorders),
            server_errors=sum(len(r.server_errors(during=outage)) for r in recorders),
            note=note,
        )
    )


def table() -> list[str]:
    header = (
        f"{'fault':<38} {'timers':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'not run':>7} "
        f"{'twice':>5} {'worker MB':>9} {'create p99':>10} {'answers':>7} {'5xx':>4}  note"
    )
    lines = [header, "-" * len(header)]
    for f in FIGURES:
        t = f.timers
        lines.append(
            f"{f.fault:<38} {len(t.lateness):>6} {t.p50 * 1000:>7.0f} {t.p99 * 1000:>7.0f} "
            f"{t.worst * 1000:>7.0f} {len(t.missing):>7} {len(t.doubled):>5} "
            f"{f.worker_peak_mb:>9.0f} {f.create_p99_ms:>8.0f}ms {f.answers:>7} "
            f"{f.server_errors:>4}  {f.note}"
        )
    return lines
