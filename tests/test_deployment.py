"""The deployment shape: production settings pass `check --deploy`, and the web process starts
the way `make web` starts it and serves the login page and /readyz."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import live

BASE_DIR = Path(__file__).resolve().parent.parent


def production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERSIGHT_")}
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="oversight.example.com,127.0.0.1",
        DJANGO_SETTINGS_MODULE="oversight.settings",
        # The checkpoints' signing key from the environment, as compose requires it.
        OVERSIGHT_AUDIT_SIGNING_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    env.update(extra)
    return env


def test_check_deploy_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_bad_boolean_in_the_environment_fails_loudly():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=production_env(OVERSIGHT_HTTPS="maybe"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "OVERSIGHT_HTTPS='maybe' is not a boolean" in result.stderr


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_the_web_process_serves_the_login_page_and_readyz(tmp_path):
    env = production_env(
        DATABASE_URL=f"sqlite:///{tmp_path / 'web.sqlite3'}",
        OVERSIGHT_STATIC_ROOT=str(tmp_path / "static"),
        OVERSIGHT_HTTPS="false",  # plain HTTP on loopback; TLS is the proxy's job
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        timeout=120,
    )
    # Started exactly as `make web` starts it, with the production settings above.
    server = live.start_web(tmp_path, **env)
    try:
        status, html = fetch(f"{server.url}/login/")
        assert status == 200
        assert 'name="password"' in html
        # Static files are served by the web process itself (WhiteNoise, hashed names).
        css = html.split('href="/static/css/')[1].split('"')[0]
        assert fetch(f"{server.url}/static/css/{css}")[0] == 200
        status, body = fetch(f"{server.url}/readyz")
        assert status == 200, body
    finally:
        server.proc.stop()


def test_the_web_command_refuses_to_trust_every_proxy(monkeypatch):
    """Found by review: FORWARDED_ALLOW_IPS=* made uvicorn take the leftmost X-Forwarded-For
    entry, which the client writes, as the client's address."""
    from oversight import processes

    monkeypatch.setenv("OVERSIGHT_BEHIND_TLS_PROXY", "true")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    with pytest.raises(SystemExit, match="FORWARDED_ALLOW_IPS"):
        processes.web_command()
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "172.18.0.0/16")
    command = processes.web_command()
    assert command[command.index("--forwarded-allow-ips") + 1] == "172.18.0.0/16"


def test_check_deploy_warns_when_the_signing_key_is_a_file_under_var():
    env = production_env()
    del env["OVERSIGHT_AUDIT_SIGNING_KEY"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "audit.W001" in result.stderr + result.stdout
