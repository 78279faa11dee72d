"""`make test`: pick the services, say which, and run pytest.

PostgreSQL and Redis come from DATABASE_URL / REDIS_URL, else from localhost when they answer,
else SQLite and an embedded Valkey. Extra arguments are passed to pytest.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.services import (
    LOCAL_POSTGRES_URL,
    LOCAL_REDIS_URL,
    describe,
    embedded_valkey,
    local_postgres_answers,
    python_env,
    redis_answers,
)

BASE_DIR = Path(__file__).resolve().parent.parent


def main(pytest_args: list[str]) -> int:
    env = python_env()
    env.setdefault("DEBUG", "false")
    env.setdefault("SECRET_KEY", "test-only-" + "x" * 50)
    env.setdefault("OVERSIGHT_HTTPS", "false")
    # The tests' callback receivers listen on loopback.
    env.setdefault("OVERSIGHT_CALLBACK_ALLOW_PRIVATE", "true")
    with contextlib.ExitStack() as stack:
        # WhiteNoise wants STATIC_ROOT to exist; tests never collect into it.
        env.setdefault("OVERSIGHT_STATIC_ROOT", stack.enter_context(tempfile.TemporaryDirectory()))
        if not env.get("DATABASE_URL"):
            if local_postgres_answers():
                env["DATABASE_URL"] = LOCAL_POSTGRES_URL
            else:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="oversight-test-"))
                env["DATABASE_URL"] = f"sqlite:///{tmp}/oversight.sqlite3"
        if not env.get("REDIS_URL"):
            if redis_answers(LOCAL_REDIS_URL):
                # A database of its own, so tests that flush it touch nothing else.
                env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
            else:
                tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="oversight-valkey-"))
                env["REDIS_URL"] = stack.enter_context(embedded_valkey(Path(tmp)))
        print(
            f"[make test] database: {describe(env['DATABASE_URL'])}; "
            f"redis: {describe(env['REDIS_URL'])}",
            flush=True,
        )
        command = [sys.executable, "-m", "pytest", *pytest_args]
        return subprocess.run(command, cwd=BASE_DIR, env=env, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    os.chdir(BASE_DIR)
    sys.exit(main(sys.argv[1:]))
