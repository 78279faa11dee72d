"""Finding PostgreSQL and Redis, or starting the embedded Valkey, for `make run` and `make test`.

The embedded Valkey runs in a child process of its own session so that a Ctrl-C in the
terminal reaches only the launcher, which then stops web, worker and beat *before* the broker
they depend on (see `tools.valkey_child`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from oversight.processes import die_with_parent

LOCAL_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/oversight"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(url: str, timeout: float = 0.5) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 0), timeout):
            return True
    except OSError:
        return False


def local_postgres_answers() -> bool:
    """True when the PostgreSQL on localhost accepts the trust-auth `postgres` user."""
    if not port_answers(LOCAL_POSTGRES_URL):
        return False
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2):
            return True
    except Exception:
        return False


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def embedded_valkey(data_dir: Path) -> Iterator[str]:
    """Start a private Valkey on a free loopback port; yield its URL; stop it afterwards."""
    data_dir.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tools.valkey_child", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not url.startswith("redis://"):
        child.kill()
        raise RuntimeError(f"the embedded Valkey did not start (see {data_dir}/valkey.log)")
    try:
        yield url
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_for_http(url: str, deadline_seconds: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def describe(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme.startswith("sqlite"):
        return f"SQLite at {url.split(':///', 1)[-1]}"
    return f"{parsed.scheme}://{parsed.hostname}:{parsed.port}{parsed.path}"


def python_env() -> dict[str, str]:
    env = os.environ.copy()
    env.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    env["PYTHONUNBUFFERED"] = "1"
    return env
