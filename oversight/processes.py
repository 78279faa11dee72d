"""The three process types (SPEC §1), defined once for `make`, `make run` and compose.

`python -m oversight.processes web|worker|beat` replaces itself with the server it names, so
the Makefile targets, the `make run` launcher and docker-compose.yml all start exactly the same
command with the same environment knobs.
"""

from __future__ import annotations

import os
import subprocess
import sys

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


def worker_command() -> list[str]:
    return [
        sys.executable, "-m", "celery", "--app", "oversight", "worker",
        "--loglevel", env_str("OVERSIGHT_LOG_LEVEL", "INFO"),
        "--concurrency", str(env_int("WORKER_CONCURRENCY", 2, minimum=1)),
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def beat_command() -> list[str]:
    schedule = env_str("OVERSIGHT_BEAT_SCHEDULE_FILE", str(var_dir() / "celerybeat-schedule"))
    os.makedirs(os.path.dirname(schedule), exist_ok=True)
    return [
        sys.executable, "-m", "celery", "--app", "oversight", "beat",
        "--loglevel", env_str("OVERSIGHT_LOG_LEVEL", "INFO"),
        "--schedule", schedule,
    ]  # fmt: skip


COMMANDS = {"web": web_command, "worker": worker_command, "beat": beat_command}


def prepare_web() -> None:
    """Collect static files when WhiteNoise serves them from STATIC_ROOT (DEBUG off)."""
    if not env_bool("DEBUG", default=False):
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=BASE_DIR,
            check=True,
        )


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m oversight.processes {{{'|'.join(COMMANDS)}}}")
    os.chdir(BASE_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    if argv[0] == "web":
        prepare_web()
    command = COMMANDS[argv[0]]()
    os.execv(command[0], command)  # noqa: S606 - replaces this process with the server


if __name__ == "__main__":
    main(sys.argv[1:])
