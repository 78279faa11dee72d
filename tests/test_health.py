"""/healthz and /readyz (SPEC §1)."""

from __future__ import annotations

from django.test import Client

from oversight.dev.services import free_port
from tests.conftest import api_stack_client


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


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(db, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert set(body["failures"]) == {"redis"}
    assert body["message"] == "redis not answering"
