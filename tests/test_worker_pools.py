"""Worker pools and time limits (SPEC §9.6): timers run on a queue and processes of their own,
every task has a soft and a hard time limit, and `worker` supervises its pools as one process."""

from __future__ import annotations

import os
import signal
import time

import pytest
import yaml

from oversight.celery import app
from oversight.processes import POOLS
from tests.support import live
from tests.test_make_run import alive, children_of

TIMER_TASKS = {
    "approvals.tasks.escalate_on_time",
    "approvals.tasks.expire_on_time",
    "approvals.tasks.tick_timers",
}


def our_tasks() -> dict[str, object]:
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def queue_of(name: str) -> str:
    return app.amqp.router.route({}, name)["queue"].name


def pools_consuming(queue: str) -> list[str]:
    return [name for name, pool in POOLS.items() if queue in pool.queues]


def test_timer_tasks_have_a_queue_and_a_pool_nothing_else_uses():
    assert POOLS["timers"].queues == ("timers",)
    for name in our_tasks():
        if name in TIMER_TASKS:
            assert queue_of(name) == "timers", name
        else:
            assert queue_of(name) != "timers", f"{name} would take a timer's process"


def test_every_task_lands_on_a_queue_some_pool_consumes():
    for name in our_tasks():
        assert pools_consuming(queue_of(name)), f"{name} goes to {queue_of(name)}, read by none"


def test_callbacks_and_emails_go_to_their_own_queues():
    assert queue_of("approvals.tasks.deliver_callbacks") == "outbound"
    assert queue_of("approvals.tasks.retry_delivery") == "outbound"
    for name in our_tasks():
        if name.endswith("_emails"):
            assert queue_of(name) == "email", name


def test_every_task_has_a_soft_and_a_hard_time_limit():
    for name, task in our_tasks().items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit  # type: ignore[attr-defined]
        hard = task.time_limit or app.conf.task_time_limit  # type: ignore[attr-defined]
        assert soft, name
        assert hard, name
        assert soft < hard, (name, soft, hard)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_runs_every_pool_and_stops_them_all_when_one_dies(tmp_path):
    """A pool that dies takes the worker down (non-zero), so compose or `make run` notices,
    instead of a worker that silently lost its timers; SIGTERM stops all of them cleanly."""
    worker = live.start_worker(tmp_path)
    try:
        for pool in POOLS:
            assert f"{pool}@" in worker.output()
        pool_masters = [
            pid for pid in children_of(worker.process.pid) if _parent(pid) == worker.process.pid
        ]
        assert len(pool_masters) == len(POOLS)
        everything = children_of(worker.process.pid)
        os.kill(pool_masters[0], signal.SIGKILL)
        assert worker.process.wait(timeout=40) != 0
        live.wait_until(lambda: not alive(everything), timeout=30)
    finally:
        worker.stop()

    worker = live.start_worker(tmp_path)
    everything = children_of(worker.process.pid)
    worker.process.send_signal(signal.SIGTERM)  # to the supervisor alone, as compose would
    assert worker.process.wait(timeout=40) == 0
    deadline = time.monotonic() + 30
    while alive(everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(everything)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_compose_runs_one_service_per_pool_with_the_makefiles_command():
    compose = yaml.safe_load((live.BASE_DIR / "docker-compose.yml").read_text())
    commands = [service.get("command") for service in compose["services"].values()]
    for pool in POOLS:
        assert ["python", "-m", "oversight.processes", "worker", pool] in commands, pool


def test_tasks_that_send_end_before_their_rows_lease_does():
    """Else a second worker could take a row the first is still sending (a duplicate)."""
    from oversight.outbox import LEASE

    for name, task in our_tasks().items():
        if queue_of(name) in ("outbound", "email"):
            hard = task.time_limit or app.conf.task_time_limit  # type: ignore[attr-defined]
            assert hard < LEASE.total_seconds(), name


def test_purging_empties_every_queue():
    """Tests (and operators: `celery purge`) rely on it: a queue known only from the routes is
    not purged, and its leftover timer messages reached the next test's worker."""
    declared = set(app.amqp.queues)
    for name in our_tasks():
        assert queue_of(name) in declared, name
