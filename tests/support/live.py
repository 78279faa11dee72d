"""Real processes for tests: the ASGI web server and a Celery worker, started the way
`make web` / `make worker` start them, against the test database."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from django.db import connection

from oversight.instruments import MULTIPROC_ENV
from tools.services import free_port

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def test_database_url() -> str:
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return (
        f"postgres://{settings['USER']}{password}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or 5432}/{settings['NAME']}"
    )


def process_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        OVERSIGHT_STATIC_ROOT=str(tmp / "static"),
        OVERSIGHT_HTTPS="false",
        OVERSIGHT_API_RATE_LIMIT_PER_MINUTE="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        OVERSIGHT_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    # The processes started with this `tmp` write their Prometheus counters to one directory of
    # their own (oversight.instruments): never to var/, nor to another test's.
    env[MULTIPROC_ENV] = str(tmp / "metrics")
    env.update(extra)
    Path(env[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
    return env


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(kind: str, tmp: Path, *args: str, **env: str) -> Proc:
    log = tmp / f"{kind}-{time.monotonic_ns()}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "oversight.processes", kind, *args],
        cwd=BASE_DIR,
        env=process_env(tmp, **env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(process, log)


@dataclass
class Server:
    url: str
    proc: Proc


def start_web(tmp: Path, **env: str) -> Server:
    port = free_port()
    proc = start("web", tmp, PORT=str(port), HOST="127.0.0.1", **env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"web exited:\n{proc.output()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 - loopback
                return Server(url, proc)
        except OSError:
            time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"web did not come up:\n{proc.output()}")


def start_worker(tmp: Path, *pools: str, **env: str) -> Proc:
    """The worker as `make worker` starts it: every pool under its supervisor, or the pools
    named. Small pools: tests share two cores."""
    from oversight.processes import POOLS

    sizes = {"WORKER_OUTBOUND_CONCURRENCY": "2", "WORKER_BACKGROUND_CONCURRENCY": "1"}
    # INFO: readiness is read from each pool's "ready." line of the log.
    proc = start("worker", tmp, *pools, OVERSIGHT_LOG_LEVEL="INFO", **{**sizes, **env})
    expected = len(pools or POOLS)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{proc.output()}")
        if proc.output().count(" ready.") >= expected:
            return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"worker did not come up:\n{proc.output()}")


def log_in(
    base_url: str, username: str, *, timeout: float = 15
) -> tuple[httpx.Client, httpx.Response]:
    """A person's browser session on a running web server, through its login form: the client
    (httpx, cookies kept) and the login's answer (302 when it worked). The password is the one
    every test person has (tests.conftest.PASSWORD)."""
    from tests.conftest import PASSWORD

    client = httpx.Client(base_url=base_url, timeout=timeout)
    client.get("/login/")
    token = client.cookies["csrftoken"]
    data = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    return client, client.post("/login/", data=data)


def logged_in(base_url: str, username: str, *, timeout: float = 15) -> httpx.Client:
    """`log_in`, which must work: the client."""
    client, response = log_in(base_url, username, timeout=timeout)
    assert response.status_code == 302, response.text
    return client


def wait_until(predicate: Any, *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def start_beat(tmp: Path, **env: str) -> Proc:
    """Celery beat (as `make beat` starts it) with a schedule file of its own."""
    schedule = tmp / f"beat-{time.monotonic_ns()}" / "schedule"
    proc = start("beat", tmp, OVERSIGHT_BEAT_SCHEDULE_FILE=str(schedule), **env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"beat exited:\n{proc.output()}")
        if schedule.parent.exists() and any(schedule.parent.iterdir()):
            return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"beat did not come up:\n{proc.output()}")


class RedisServer:
    """A private redis-server on a free port, to stop and start again (outage tests)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp / f"redis-{self.port}"
        self.dir.mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No persistence: a restart loses every queued message, the harshest broker loss.
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.dir)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(client), timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


class PostgresServer:
    """A private PostgreSQL cluster on a free port, to stop and start again (outage tests),
    never the machine's shared one; made with the server's own tools (`postgres_bindir`). Under
    root the server runs as the `postgres` (else `nobody`) user: PostgreSQL refuses root."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"oversight-pg-{self.port}-"))
        self.data = self.dir / "data"
        self.owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    entry = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.owner = (entry.pw_uid, entry.pw_gid)
                os.chown(self.dir, *self.owner)
                break
        self._server("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--locale", "C", "--no-sync")  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _server(self, tool: str, *args: str) -> None:
        as_owner: dict[str, Any] = {}
        if self.owner:
            as_owner = {"user": self.owner[0], "group": self.owner[1], "extra_groups": []}
        command = [str(self.bindir / tool), *args]
        subprocess.run(command, check=True, capture_output=True, cwd=self.dir, **as_owner)

    def start(self) -> None:
        # No durability: a test cluster, restarted with `stop` (fast) and `start`.
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        self._server("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                     "-t", "60", "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._server("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        """An empty database `name` (migrate it with `manage.py migrate`); its URL."""
        command = [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", "postgres", name]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        return self.url(name)

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: the newest /usr/lib/postgresql/*/bin, else PATH; None when
    they are not installed."""
    versions = [path for path in Path("/usr/lib/postgresql").glob("*/bin")
                if path.parent.name.isdigit()]  # fmt: skip
    for bindir in sorted(versions, key=lambda path: int(path.parent.name), reverse=True):
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def manage(tmp: Path, *args: str, **env: str) -> str:
    """Run `manage.py` with the processes' environment (and `env`); its standard output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=process_env(tmp, **env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout
