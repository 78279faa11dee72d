"""What the soak watches from outside: the processes' memory, read from /proc (each tree walked,
so every worker pool and child is found whatever the supervisor starts), and the outbox."""

from __future__ import annotations

import os
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from tools.stack import manage


@dataclass(frozen=True)
class Process:
    group: str
    pid: int
    ppid: int
    command: str
    rss_mb: float


def _parents() -> dict[int, int]:
    """Every live process's parent, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (command) state ppid ...": the command may hold spaces and parentheses.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> list[int]:
    """`root` and every process below it, parents before children."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, ppid in parents.items():
        children[ppid].append(pid)
    found, queue = [], deque([root])
    while queue:
        pid = queue.popleft()
        if pid in parents:
            found.append(pid)
            queue.extend(sorted(children[pid]))
    return found


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [word.decode(errors="replace") for word in raw.rstrip(b"\0").split(b"\0")]


# Options that say nothing about which process it is, left out of the table.
_NOISE = {"--app", "--loglevel", "--host", "--port", "--schedule", "--lifespan"}


def describe(argv: list[str], parent_argv: list[str]) -> str:
    """A short name for a process from its command line: the module and the options that tell
    processes apart (queues, concurrency), "pool process" for a fork of its parent."""
    if not argv:
        return "?"  # gone, or a zombie
    if argv == parent_argv:
        return "pool process (a fork of its parent)"
    text = " ".join(argv)
    if "multiprocessing.spawn" in text:
        return "spawned child (multiprocessing)"
    if "multiprocessing.resource_tracker" in text:
        return "multiprocessing resource tracker"
    words = argv[argv.index("-m") + 1 :] if "-m" in argv else [os.path.basename(argv[0]), *argv[1:]]
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _NOISE:
            skip = True
        elif not word.startswith("--without-") and word != "--no-server-header":
            kept.append(word)
    return " ".join(kept)


def processes(roots: dict[str, int]) -> list[Process]:
    """Every process of each tree, by group; what else runs below this one (the browser, its
    driver) as the group "browser"."""
    parents = _parents()
    trees = [(group, pid) for group, root in roots.items() for pid in descendants(root, parents)]
    in_trees = {pid for _, pid in trees}
    trees += [
        ("browser", pid) for pid in descendants(os.getpid(), parents)[1:] if pid not in in_trees
    ]
    found: list[Process] = []
    for group, pid in trees:
        rss = _rss_mb(pid)
        if rss is not None:
            command = describe(_argv(pid), _argv(parents[pid]))
            found.append(Process(group, pid, parents[pid], command, rss))
    return found


def outbox_tables(env: dict[str, str]) -> list[str]:
    script = (
        "from django.apps import apps\n"
        "from oversight.outbox import OutboxItem\n"
        "for model in apps.get_models():\n"
        "    if issubclass(model, OutboxItem):\n"
        "        print(model._meta.db_table)\n"
    )
    return manage(env, "shell", "--no-imports", "-c", script).split()


def outbox_backlog(database: str, tables: list[str]) -> dict[str, tuple[int, float, int]]:
    """(pending rows, age in seconds of the oldest pending row, failed rows) of each table."""
    import psycopg

    backlog: dict[str, tuple[int, float, int]] = {}
    with psycopg.connect(database, autocommit=True) as conn:
        for table in tables:
            row = conn.execute(
                f"""SELECT count(*) FILTER (WHERE status = 'pending'),
                           EXTRACT(EPOCH FROM now() - min(created_at) FILTER
                               (WHERE status = 'pending')),
                           count(*) FILTER (WHERE status = 'failed')
                    FROM "{table}" """  # noqa: S608 - a table name of our own models
            ).fetchone()
            assert row is not None  # an aggregate always has its row
            pending, oldest, failed = row
            backlog[table] = (pending, float(oldest or 0), failed)
    return backlog


@dataclass
class Mark:
    name: str
    processes: list[Process]
    backlog: dict[str, tuple[int, float, int]]
    inbox: str
