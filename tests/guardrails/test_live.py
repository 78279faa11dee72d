"""The check through real server processes (SPEC §6, §9.5): a policy change is honoured by the
very next check on every web process, and the hourly limit is exact under concurrency."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from agents import services as agents
from agents.models import AgentStatus, ApiKey
from guardrails import policies as policy_changes
from guardrails.models import Policy
from guardrails.policyfile import snapshot
from tests.support import live

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CHECK = "/api/v1/guardrails/check"


@pytest.fixture(autouse=True)
def _quiet_httpx(caplog: Any) -> None:
    caplog.set_level("WARNING", logger="httpx")


def ask(url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        url + CHECK, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_policy_change_is_honoured_by_the_very_next_check_on_every_web_process(
    web_server, make_agent, tmp_path
):
    second = live.start_web(tmp_path)
    try:
        agent = make_agent()
        servers = [web_server.url, second.url]
        body = {"action": "read_file", "params": {"path": "/srv/reports/q3.csv"}}
        for url in servers:  # each process now holds the policy set
            assert ask(url, agent.key, body)["decision"] == "allow"
        policy = Policy.objects.get(name="read_file")
        fields = snapshot(policy)
        fields["forbidden_patterns"] = [*fields["forbidden_patterns"], "^/srv/reports/"]
        policy_changes.save_policy(fields=fields, policy=policy)  # committed when it returns
        for url in servers:
            answer = ask(url, agent.key, body)
            assert answer["decision"] == "deny", url
            assert answer["policy"]["version"] == 2
            assert answer["reasons"][0]["pattern"] == "^/srv/reports/"
    finally:
        second.proc.stop()


def test_a_revoked_key_and_a_paused_agent_are_refused_by_the_very_next_check_on_every_process(
    web_server, make_agent, tmp_path
):
    """Each web process authenticates the check from its copy of the key (`agents.keyring`)."""
    second = live.start_web(tmp_path)
    try:
        revoked, paused = make_agent(), make_agent()
        servers = [web_server.url, second.url]
        body = {"action": "read_file", "params": {"path": "/srv/reports/q3.csv"}}
        for url in servers:  # each process now holds a copy of both keys
            for agent in (revoked, paused):
                assert ask(url, agent.key, body)["decision"] == "allow"
        agents.revoke_api_key(api_key=ApiKey.objects.get(agent=revoked.agent))
        agents.set_agent_status(agent=paused.agent, status=AgentStatus.PAUSED, reason="looping")
        for url in servers:
            for agent, status, code in (
                (revoked, 401, "key_revoked"),
                (paused, 403, "agent_paused"),
            ):
                response = httpx.post(
                    url + CHECK, json=body, headers={"Authorization": f"Bearer {agent.key}"}
                )
                assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    finally:
        second.proc.stop()


def test_sixty_simultaneous_checks_through_the_server_admit_exactly_fifty(web_server, make_agent):
    agent = make_agent()
    barrier = threading.Barrier(60)
    decisions: list[str] = []
    lock = threading.Lock()

    def run(n: int) -> None:
        barrier.wait()
        answer = ask(web_server.url, agent.key, {"action": "run_command", "params": {"n": n}})
        with lock:
            decisions.append(answer["decision"])

    threads = [threading.Thread(target=run, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(decisions).count("require_approval") == 50
    assert decisions.count("deny") == 10
