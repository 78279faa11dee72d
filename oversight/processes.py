"""The three process types (SPEC §1), defined once for `make`, `make run` and compose.

`python -m oversight.processes web|worker|beat` replaces itself with the server it names, so
the Makefile targets, the `make run` launcher and docker-compose.yml all start exactly the same
command with the same environment knobs.

The worker is several Celery workers, one per pool (SPEC §9.6): escalation and expiry have
processes of their own, so a callback server that hangs, an SMTP server that stalls or an
hour-long purge can never keep a timer waiting for a free process. `worker` alone starts every
pool under a small supervisor (what `make worker` and `make run` need); `worker timers` starts
one pool (what compose runs, one service per pool, so each can be scaled and capped alone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from oversight import instruments
from oversight.env import env_bool, env_int, env_str, var_dir

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def web_command() -> list[str]:
    workers = env_int("WEB_CONCURRENCY", 1, minimum=1)
    command = [
        sys.executable, "-m", "uvicorn", "oversight.asgi:application",
        "--host", env_str("HOST", "127.0.0.1"),
        "--port", str(env_int("PORT", 8000, minimum=1)),
        "--workers", str(workers),
        # Django's ASGI handler has no lifespan support; saying so keeps the log clean.
        "--lifespan", "off",
        "--no-server-header",
    ]  # fmt: skip
    if not env_bool("OVERSIGHT_ACCESS_LOG", default=True):
        command += ["--no-access-log"]
    # The client's address is found by the application (OVERSIGHT_PROXY_COUNT,
    # accounts.throttle.client_address), so uvicorn keeps the peer that connected: trusting any
    # proxy ("*") it would take the leftmost X-Forwarded-For entry, which the client writes.
    # Told exactly which proxies to trust, it finds the same address, for its access log.
    trusted_proxies = env_str("FORWARDED_ALLOW_IPS")
    if "*" in (proxy.strip() for proxy in trusted_proxies.split(",")):
        raise SystemExit(
            "FORWARDED_ALLOW_IPS=* would let any client set its own address (the leftmost "
            "X-Forwarded-For entry): name the proxies' addresses or networks instead."
        )
    if env_bool("OVERSIGHT_BEHIND_TLS_PROXY", default=False) and trusted_proxies:
        command += ["--proxy-headers", "--forwarded-allow-ips", trusted_proxies]
    else:
        command += ["--no-proxy-headers"]
    return command


@dataclass(frozen=True)
class Pool:
    """A Celery worker consuming some queues (routed in settings.CELERY_TASK_ROUTES)."""

    queues: tuple[str, ...]
    default_concurrency: int
    purpose: str

    def concurrency(self, name: str) -> int:
        return env_int(f"WORKER_{name.upper()}_CONCURRENCY", self.default_concurrency, minimum=1)


POOLS = {
    "timers": Pool(("timers",), 2, "escalation and expiry, and the tick that hands them over"),
    # Mostly waiting on peers, each attempt bounded by OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS.
    "outbound": Pool(("outbound",), 4, "agents' callbacks"),
    "background": Pool(("email", "default"), 2, "emails and housekeeping"),
}
# A pool process whose peak memory passed this is replaced after its task (celery
# --max-memory-per-child, KiB): a backstop under the 300 MB of SPEC §9.6, which the outbound
# limits keep on their own.
MAX_MEMORY_PER_CHILD_KIB = 250_000


def worker_command(pool: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "--app", "oversight", "worker",
        "--loglevel", env_str("OVERSIGHT_LOG_LEVEL", "INFO"),
        "--hostname", f"{pool}@%h",
        "--queues", ",".join(POOLS[pool].queues),
        "--concurrency", str(POOLS[pool].concurrency(pool)),
        "--max-memory-per-child", str(MAX_MEMORY_PER_CHILD_KIB),
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def supervise_workers(pools: list[str]) -> int:
    """Run one Celery worker per pool until told to stop (SIGTERM/SIGINT: passed on, and each
    finishes the task in hand) or until one of them exits: then the others are stopped too and
    the exit is non-zero, so whatever started this (compose, `make run`) sees the failure
    instead of a worker that silently lost its timers."""
    children = {
        pool: subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "oversight.processes", "worker", pool],
            preexec_fn=die_with_parent,
        )
        for pool in pools
    }
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(child.poll() is None for child in children.values()):
        time.sleep(0.2)
    told_to_stop = stopping
    if not told_to_stop:
        exited = [pool for pool, child in children.items() if child.poll() is not None]
        print(f"worker pool {', '.join(exited)} exited; stopping the others", flush=True)
        stop(signal.SIGTERM, None)
    for child in children.values():
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0 if told_to_stop else 1


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this child when its parent dies, so no pool is orphaned."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def beat_command() -> list[str]:
    schedule = env_str("OVERSIGHT_BEAT_SCHEDULE_FILE", str(var_dir() / "celerybeat-schedule"))
    os.makedirs(os.path.dirname(schedule), exist_ok=True)
    return [
        sys.executable, "-m", "celery", "--app", "oversight", "beat",
        "--loglevel", env_str("OVERSIGHT_LOG_LEVEL", "INFO"),
        "--schedule", schedule,
    ]  # fmt: skip


COMMANDS = {"web": web_command, "beat": beat_command}


def prepare_web() -> None:
    """Collect static files when WhiteNoise serves them from STATIC_ROOT (DEBUG off)."""
    if not env_bool("DEBUG", default=False):
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=BASE_DIR,
            check=True,
        )


def prepare_metrics() -> None:
    """Every process of a deployment writes its Prometheus counters to one directory
    (`oversight.instruments`): var/metrics unless PROMETHEUS_MULTIPROC_DIR names another (compose:
    a volume shared by the web and worker containers). Created here; emptied only where the
    whole set starts (`make run`, compose's one-shot `migrate`), not by one process type."""
    path = os.environ.setdefault(instruments.MULTIPROC_ENV, str(var_dir() / "metrics"))
    instruments.prepare_dir(path, empty=False)


def main(argv: list[str]) -> None:
    usage = f"usage: python -m oversight.processes web|beat|worker [{'|'.join(POOLS)} ...]"
    if not argv or argv[0] not in (*COMMANDS, "worker"):
        sys.exit(usage)
    kind, pools = argv[0], argv[1:]
    if (kind != "worker" and pools) or any(pool not in POOLS for pool in pools):
        sys.exit(usage)
    os.chdir(BASE_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    prepare_metrics()
    if kind == "worker":
        if len(pools) != 1:
            sys.exit(supervise_workers(pools or list(POOLS)))
        command = worker_command(pools[0])
    else:
        if kind == "web":
            prepare_web()
        command = COMMANDS[kind]()
    os.execv(command[0], command)  # noqa: S606 - replaces this process with the server


if __name__ == "__main__":
    main(sys.argv[1:])
