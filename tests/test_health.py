"""/healthz and /readyz (SPEC §1)."""

from __future__ import annotations

import httpx
import pytest
from django.test import Client

from tests.conftest import api_stack_client
from tests.support import live
from tools.services import free_port


def test_healthz_answers_without_login(db):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_api_s_health_answers_without_a_key_and_its_errors_are_the_api_s(db):
    client = api_stack_client()
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert client.head("/api/v1/health").status_code == 200  # load balancers probe with HEAD
    refused = client.post("/api/v1/health")
    assert refused.status_code == 405
    assert refused["Allow"] == "GET, HEAD"
    assert refused.json()["error"]["code"] == "method_not_allowed"


def test_healthz_and_readyz_answer_head(db):
    assert Client().head("/healthz").status_code == 200
    assert Client().head("/readyz").status_code == 200


def test_readyz_is_200_when_database_and_redis_answer(db):
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["redis"] == "ok"


def test_readyz_names_only_the_dependency_that_is_down_and_logs_why(db, settings, caplog):
    # Anyone may call /readyz: it says which dependency is down, never the error (addresses,
    # driver messages); the detail goes to the server's log for the operator.
    port = free_port()  # nothing listens there
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    with caplog.at_level("WARNING", logger="oversight.health"):
        response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "down": ["redis"]}
    assert str(port) not in response.content.decode()
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "oversight.health"]
    assert logged.startswith("readyz: redis does not answer: ConnectionError")
    assert str(port) in logged


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_readyz_through_the_server_names_both_when_database_and_redis_are_down(tmp_path):
    database_port, redis_port = free_port(), free_port()
    server = live.start_web(
        tmp_path,
        DATABASE_URL=f"postgres://oversight:secret-password@127.0.0.1:{database_port}/oversight",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        OVERSIGHT_DB_POOL="false",  # refused at once, not after the pool's wait
    )
    try:
        response = httpx.get(f"{server.url}/readyz", timeout=30)
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "down": ["database", "redis"]}
        assert "secret-password" not in response.text
        assert str(database_port) not in response.text
        # The operator's detail is in the server's log.
        lines = live.wait_until(lambda: _readyz_lines(server.proc.output(), count=2))
        assert f"port {database_port} failed" in lines[0]
        assert f"127.0.0.1:{redis_port}" in lines[1]
    finally:
        server.proc.stop()


def _readyz_lines(log: str, *, count: int) -> list[str] | None:
    lines = [line for line in log.splitlines() if "readyz: " in line]
    return lines if len(lines) >= count else None
