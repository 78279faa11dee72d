"""`make soak` finds every process of a tree to weigh it, whatever the supervisor starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.support.live import wait_until
from tools.soak.observe import Process, describe, processes

# A parent that starts a child and a grandchild, the shape of a supervisor with pools.
TREE = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c",
    "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"])
time.sleep(60)
"""


def test_every_process_of_a_tree_is_found_with_its_memory():
    root = subprocess.Popen([sys.executable, "-c", TREE])

    def tree() -> list[Process]:
        return [p for p in processes({"worker": root.pid}) if p.group == "worker"]

    try:
        found = wait_until(lambda: len(tree()) == 3 and tree(), timeout=10)
        assert found[0].pid == root.pid
        assert [p.ppid for p in found[1:]] == [found[0].pid, found[1].pid]
        assert found[-1].command == "sleep 60"
        assert all(p.rss_mb > 0 for p in found)
        # The tree's processes are not listed again among this process's other children.
        others = {p.pid for p in processes({"worker": root.pid}) if p.group == "browser"}
        assert root.pid not in others
    finally:
        for process in reversed(tree()):
            os.kill(process.pid, signal.SIGKILL)
        root.wait()


def test_a_process_is_named_by_what_tells_it_apart():
    worker = ["/srv/.venv/bin/python", "-m", "celery", "--app", "oversight", "worker",
              "--loglevel", "INFO", "--queues", "timers", "--concurrency", "2",
              "--without-gossip", "--without-mingle"]  # fmt: skip
    assert describe(worker, ["/srv/.venv/bin/python", "supervisor.py"]) == (
        "celery worker --queues timers --concurrency 2"
    )
    assert describe(worker, worker) == "pool process (a fork of its parent)"
    spawned = ["python", "-B", "-c", "from multiprocessing.spawn import spawn_main; ..."]
    assert describe(spawned, worker) == "spawned child (multiprocessing)"
    assert describe([], worker) == "?"
