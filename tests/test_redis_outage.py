"""Redis unreachable (SPEC §8, §6; issue 19): the pages and the API keep answering, promptly,
and the hourly rate limit of the check fails safe: `require_approval` with
`rate_limit_unavailable`, on the check endpoint and inside a create, never a silent allow.

A real web process uses a private redis-server through a TCP proxy (tests.support.tcpproxy), so the
test can kill Redis (the proxy refuses, as a dead server's port does) and also stall it: accept
connections and never answer, which costs a client its whole timeout on every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from guardrails import policies as policy_changes
from guardrails.models import Policy
from guardrails.policyfile import snapshot
from tests.support import live
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Each call's answer must come within this, Redis or not (login hashes a password: not timed).
PROMPT_SECONDS = 1.5


def test_with_redis_dead_or_stalled_everything_answers_and_the_rate_limit_asks_a_person(
    tmp_path, make_agent, approvers
):
    redis_server = live.RedisServer(tmp_path)
    redis_server.start()
    proxy = TcpProxy(tmp_path, "127.0.0.1", redis_server.port)
    proxy.start()
    policy = Policy.objects.get(name="read_file")
    policy_changes.save_policy(
        fields={**snapshot(policy), "rate_limit_per_hour": 100}, policy=policy
    )
    web = live.start_web(tmp_path, REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")
    try:
        agent = make_agent()
        api = httpx.Client(
            base_url=web.url, timeout=15, headers={"Authorization": f"Bearer {agent.key}"}
        )
        person = live.logged_in(web.url, approvers["lead"].username)

        def create(**extra: Any) -> httpx.Response:
            body = {"action": "read_file", "params": {"path": "/srv/a"}, "risk_level": "low",
                    "justification": "outage drill", **extra}  # fmt: skip
            return api.post("/api/v1/approval-requests", json=body)

        request_id = create().json()["id"]

        def vote() -> httpx.Response:
            # Deciding a request with a callback queues its delivery on the broker (Redis).
            decided = create(callback_url="http://127.0.0.1:9/hook").json()["id"]
            return person.post(
                f"/requests/{decided}/approve",
                data={"csrfmiddlewaretoken": person.cookies["csrftoken"], "comment": "ok"},
            )

        calls: dict[str, tuple[int, Callable[[], httpx.Response]]] = {
            "check": (200, lambda: api.post(
                "/api/v1/guardrails/check",
                json={"action": "read_file", "params": {"path": "/srv/a"}},
            )),
            "create": (201, create),
            # A deadline within the timer horizon: its task is queued on the broker at once.
            "create, short timeout": (201, lambda: create(timeout_seconds=30)),
            "read": (200, lambda: api.get(f"/api/v1/approval-requests/{request_id}")),
            "long-poll": (200, lambda: api.get(f"/api/v1/approval-requests/{request_id}?wait=1")),
            "list": (200, lambda: api.get("/api/v1/approval-requests")),
            "cost report": (201, lambda: api.post(
                "/api/v1/costs", json={"model": "gpt-4o", "input_tokens": 10, "output_tokens": 5}
            )),
            "inbox": (200, lambda: person.get("/")),
            "inbox refresh": (200, lambda: person.get("/", headers={"HX-Request": "true"})),
            "vote": (302, vote),
        }  # fmt: skip

        def run_all() -> dict[str, httpx.Response]:
            answers, slow = {}, {}
            for name, (expected, call) in calls.items():
                started = time.monotonic()
                answers[name] = call()
                took = time.monotonic() - started - (1 if name == "long-poll" else 0)
                assert answers[name].status_code == expected, (name, answers[name].text)
                if took > PROMPT_SECONDS:
                    slow[name] = round(took, 2)
            assert not slow, f"slow answers: {slow}"
            _, login = live.log_in(web.url, approvers["lead"].username)
            assert login.status_code == 302, login.text
            return answers

        def kill() -> None:
            redis_server.stop()
            proxy.cut()  # its port refuses, as the dead server's does

        assert run_all()["check"].json()["decision"] == "allow"
        for outage, start in (("dead", kill), ("stalled", proxy.stall)):
            start()
            for _ in range(2):
                answers = run_all()
                checked = answers["check"].json()
                assert checked["decision"] == "require_approval", (outage, checked)
                assert [r["code"] for r in checked["reasons"]] == ["rate_limit_unavailable"]
                created = answers["create"].json()
                assert "rate_limit_unavailable" in [r["code"] for r in created["reasons"]]
            ready = httpx.get(f"{web.url}/readyz", timeout=15)
            assert (ready.status_code, ready.json()["down"]) == (503, ["redis"]), outage

            if outage == "dead":
                redis_server.start()
            proxy.restore()
            live.wait_until(lambda: calls["check"][1]().json()["decision"] == "allow", timeout=10)
            assert httpx.get(f"{web.url}/readyz", timeout=15).status_code == 200
    finally:
        web.proc.stop()
        proxy.stop()
        redis_server.stop()
