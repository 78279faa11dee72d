"""Authentication and agent status on the agent API (SPEC §3, §6)."""

from __future__ import annotations

import pytest

from agents import services
from agents.models import AgentStatus, ApiKey

ME = "/api/v1/agents/me"


def test_a_valid_key_identifies_its_agent(db, make_agent, make_user, api):
    owner = make_user("olive")
    created = make_agent("builder", owner=owner, team="platform")
    response = api(created.key).get(ME)
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "builder"
    assert body["owner"] == "olive"
    assert body["team"] == "platform"
    assert body["status"] == "active"
    assert body["api_key"]["prefix"] == created.key.split("_")[1]


def test_a_call_records_when_the_key_was_last_used(db, make_agent, api):
    created = make_agent()
    assert ApiKey.objects.get(agent=created.agent).last_used_at is None
    api(created.key).get(ME)
    assert ApiKey.objects.get(agent=created.agent).last_used_at is not None


def test_no_key_is_401_with_a_bearer_challenge(db, api):
    response = api(None).get(ME)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer nonsense",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ovs_aaaaaaaaaaaa_" + "b" * 40,
        "Bearer ÿÿÿ",
    ],
)
def test_bad_credentials_are_401_with_a_stable_code(db, make_agent, api, header):
    make_agent()
    response = api(None).get(ME, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_the_right_prefix_with_a_wrong_secret_is_refused(db, make_agent, api):
    created = make_agent()
    forged = created.key[:-4] + ("AAAA" if not created.key.endswith("AAAA") else "BBBB")
    assert api(forged).get(ME).status_code == 401


def test_a_revoked_key_fails_on_the_very_next_call(db, make_agent, api):
    created = make_agent()
    client = api(created.key)
    assert client.get(ME).status_code == 200
    services.revoke_api_key(api_key=ApiKey.objects.get(agent=created.agent))
    response = client.get(ME)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "key_revoked"


def test_another_key_of_the_same_agent_keeps_working_after_one_is_revoked(db, make_agent, api):
    created = make_agent()
    _, second = services.issue_api_key(agent=created.agent)
    services.revoke_api_key(api_key=ApiKey.objects.get(prefix=created.key.split("_")[1]))
    assert api(second).get(ME).status_code == 200


def test_a_paused_agent_gets_403_agent_paused(db, make_agent, api):
    created = make_agent()
    services.set_agent_status(agent=created.agent, status=AgentStatus.PAUSED, reason="3 rejections")
    response = api(created.key).get(ME)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "agent_paused"
    assert "3 rejections" in error["message"]


def test_a_disabled_agent_gets_403_agent_disabled(db, make_agent, api):
    created = make_agent()
    services.set_agent_status(
        agent=created.agent, status=AgentStatus.DISABLED, reason="kill switch"
    )
    response = api(created.key).get(ME)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "agent_disabled"


def test_a_resumed_agent_is_let_in_again(db, make_agent, api):
    created = make_agent()
    services.set_agent_status(agent=created.agent, status=AgentStatus.PAUSED, reason="checking")
    services.set_agent_status(agent=created.agent, status=AgentStatus.ACTIVE)
    assert api(created.key).get(ME).status_code == 200


def test_stopping_an_agent_needs_a_reason(db, make_agent):
    from django.core.exceptions import ValidationError

    created = make_agent()
    with pytest.raises(ValidationError):
        services.set_agent_status(agent=created.agent, status=AgentStatus.PAUSED, reason=" ")


def test_unknown_api_paths_answer_json_404(db, api):
    response = api(None).get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_405_in_the_error_shape(db, make_agent, api):
    created = make_agent()
    response = api(created.key).post(ME, {})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_the_openapi_schema_documents_bearer_auth_and_the_endpoint(db, api):
    response = api(None).get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/agents/me" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_interactive_docs_load_without_unsafe_inline(db, api):
    response = api(None).get("/api/v1/docs/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
