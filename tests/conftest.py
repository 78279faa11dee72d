"""Shared fixtures: people, agents with keys, an API client that speaks Bearer."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from accounts import services as people
from accounts.models import User
from agents import services as agents
from agents.models import Agent

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, *, roles: tuple[str, ...] = (), tier: str = "") -> User:
        return people.create_user(
            username=username or f"person{next(counter)}",
            password=PASSWORD,
            roles=roles,
            tier=tier,
            email="someone@example.com",
        )

    return make


class AgentWithKey:
    def __init__(self, agent: Agent, key: str) -> None:
        self.agent = agent
        self.key = key


@pytest.fixture
def make_agent(db: None, make_user: Callable[..., User]) -> Callable[..., AgentWithKey]:
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, *, owner: User | None = None, team: str = "") -> AgentWithKey:
        agent = agents.create_agent(name=name or f"agent-{next(counter)}", owner=owner, team=team)
        _, key = agents.issue_api_key(agent=agent)
        return AgentWithKey(agent, key)

    return make


class ApiClient:
    """A Django test client that sends JSON and the agent's Bearer key."""

    def __init__(self, key: str | None) -> None:
        self.client = Client()
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.get(path, headers=self._headers(headers))

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = body if isinstance(body, str | bytes) else json.dumps(body or {})
        return self.client.post(
            path, data=data, content_type="application/json", headers=self._headers(headers)
        )


@pytest.fixture
def api() -> Callable[[str | None], ApiClient]:
    return ApiClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """Tests render templates without running collectstatic (no manifest to look names up in)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
