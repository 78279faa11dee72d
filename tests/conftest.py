"""Shared fixtures: people, agents with keys, an API client that speaks Bearer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client, override_settings
from django.test.client import ClientHandler

from accounts import services as people
from accounts.models import User
from agents import services as agents
from agents.models import Agent
from oversight.handlers import ApiMiddlewareMixin, on_api_stack

PASSWORD = "correct-horse-battery-staple"


class QuickHasher(PBKDF2PasswordHasher):
    """The default hasher's algorithm with few iterations, for the people tests make: a web
    process checks a hash with the iterations it names (and upgrades it at login), so logging in
    works as always, without 0.36 s of hashing per person on two shared cores (the suite made
    some 2,000 of them: about 4 minutes of its 20)."""

    iterations = 1000


@pytest.fixture(autouse=True, scope="session")
def _quick_password_hashes() -> Any:
    with override_settings(PASSWORD_HASHERS=["tests.conftest.QuickHasher"]):
        yield


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
    def __init__(self, agent: Agent, key: str, webhook_secret: str) -> None:
        self.agent = agent
        self.key = key
        self.webhook_secret = webhook_secret  # signs its callbacks


@pytest.fixture
def make_agent(db: None, make_user: Callable[..., User]) -> Callable[..., AgentWithKey]:
    counter = iter(range(1, 10_000))

    def make(name: str | None = None, *, owner: User | None = None, team: str = "") -> AgentWithKey:
        agent, webhook_secret = agents.create_agent(
            name=name or f"agent-{next(counter)}", owner=owner, team=team
        )
        _, key = agents.issue_api_key(agent=agent)
        return AgentWithKey(agent, key, webhook_secret)

    return make


class ApiStackClientHandler(ApiMiddlewareMixin, ClientHandler):
    """The test client's handler with the agent API's middleware, as the server runs it."""


def api_stack_client() -> Client:
    """A test client for the agent API's paths, through the middleware the server runs there."""
    client = Client()
    client.handler = ApiStackClientHandler(enforce_csrf_checks=False)
    client.handler.load_middleware()  # now, not on a first request that may run in a thread
    return client


class ApiClient:
    """A Django test client that sends JSON and the agent's Bearer key, through the middleware
    the server runs for the path (oversight.asgi): the API's own stack, or the pages' one."""

    def __init__(self, key: str | None) -> None:
        self.api_client = api_stack_client()
        self.pages_client = Client()
        self.key = key

    def _client(self, path: str) -> Client:
        return self.api_client if on_api_stack(path.partition("?")[0]) else self.pages_client

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return self._client(path).get(path, headers=self._headers(headers))

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = body if isinstance(body, str | bytes) else json.dumps(body or {})
        return self._client(path).post(
            path, data=data, content_type="application/json", headers=self._headers(headers)
        )


@pytest.fixture
def api() -> Callable[[str | None], ApiClient]:
    return ApiClient


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """Tests render templates without running collectstatic (no manifest to look names up in)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def approvers(make_user: Callable[..., User]) -> dict[str, User]:
    """One approver per tier, plus a second director and VP for quorum tests."""
    return {
        "lead": make_user("t-lead", roles=("approver",), tier="team_lead"),
        "em": make_user("t-em", roles=("approver",), tier="engineering_manager"),
        "director": make_user("t-director", roles=("approver",), tier="director"),
        "director2": make_user("t-director2", roles=("approver",), tier="director"),
        "vp": make_user("t-vp", roles=("approver",), tier="vp_engineering"),
    }


# A seeded policy (guardrails/migrations/0002_seed_policies.py) whose risk is each level, so a
# request made for a risk level gets that risk from policy (the claim alone cannot lower it).
ACTION_AT_RISK = {
    "low": "read_file",
    "medium": "write_file",
    "high": "run_command",
    "critical": "deploy_to_production",
}


@pytest.fixture
def new_request(make_agent: Callable[..., AgentWithKey]) -> Callable[..., Any]:
    """An approval request made through the service; its action is the seeded policy of the
    risk level asked for (medium by default) unless the test names one."""
    from approvals import services as approvals

    def make(agent: Agent | None = None, **overrides: Any) -> Any:
        fields: dict[str, Any] = {
            "params": {"service": "api", "version": "1.2.3"},
            "risk_level": "medium",
            "justification": "Ship the fix for the login outage.",
        }
        fields.update(overrides)
        fields.setdefault("action", ACTION_AT_RISK[fields["risk_level"] or "medium"])
        return approvals.create_request(agent=agent or make_agent().agent, **fields)

    return make


def client_for(user: User) -> Client:
    """A browser-side test client logged in as `user`."""
    client = Client()
    client.force_login(user)
    return client


def shift_into_past(request_id: Any, seconds: float) -> None:
    """Move a request's clock `seconds` back, as if it had been created that long ago."""
    from datetime import timedelta

    from django.db.models import F

    from approvals.models import ApprovalRequest

    delta = timedelta(seconds=seconds)
    ApprovalRequest.objects.filter(pk=request_id).update(
        created_at=F("created_at") - delta,
        escalates_at=F("escalates_at") - delta,
        expires_at=F("expires_at") - delta,
    )


@pytest.fixture(scope="session")
def web_server(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any) -> Any:
    """The real ASGI server (uvicorn, as `make web` starts it) on the test database."""
    from tests.support import live

    with django_db_blocker.unblock():
        # One agent's 500 long-polls (tests/api/test_longpoll.py) pass the per-agent cap (200).
        server = live.start_web(
            tmp_path_factory.mktemp("web"), OVERSIGHT_LONG_POLL_MAX_PER_AGENT="500"
        )
    yield server
    server.proc.stop()


@pytest.fixture
def celery_worker_process(transactional_db: None, tmp_path: Any) -> Any:
    """A real Celery worker (as `make worker` starts it) on the test database and Redis, for
    one test: a worker left running would take tasks that later tests expect to wait in Redis."""
    from tests.support import live

    worker = live.start_worker(tmp_path)
    yield worker
    worker.stop()


_audit_triggers_lifted = False


@pytest.fixture
def smtp_sink(settings: Any) -> Any:
    """A real SMTP server, and this process's mailer pointed at it: what is sent goes through
    Django's SMTP backend and the wire, as in production (header checks included)."""
    from tests.support.smtp import SmtpSink

    sink = SmtpSink()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": sink.port, "timeout": 5},
        }
    }
    yield sink
    sink.close()


def _audit_trigger_statements(index: int) -> list[str]:
    import importlib

    from django.db import connection

    statements: list[str] = []
    for name in ("0002_append_only", "0006_checkpoints_append_only"):  # events, checkpoints
        migration = importlib.import_module(f"audit.migrations.{name}")
        statements += migration.STATEMENTS[connection.vendor][index]
    return statements


@pytest.fixture(autouse=True)
def _audit_append_only_between_flushes(request: Any) -> Any:
    """Transactional tests end with a flush (TRUNCATE or DELETE of every table) that the audit
    table's append-only triggers rightly refuse. Lift the triggers for that flush only, and put
    them back before the next test touches the database."""
    global _audit_triggers_lifted
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    uses_db = transactional or "db" in request.fixturenames or marker is not None
    if not uses_db:
        yield
        return
    request.getfixturevalue("transactional_db" if transactional else "db")
    from django.db import connection

    if _audit_triggers_lifted:
        with connection.cursor() as cursor:
            for statement in _audit_trigger_statements(0):
                cursor.execute(statement)
        if transactional:
            _audit_triggers_lifted = False
    yield
    if transactional:
        with connection.cursor() as cursor:
            for statement in _audit_trigger_statements(1):
                cursor.execute(statement)
        _audit_triggers_lifted = True


@pytest.fixture(autouse=True)
def _fresh_route_cache() -> None:
    from django.core.cache import cache

    from approvals import rules

    rules.forget_routes()
    cache.clear()  # e.g. the escalations figures, kept a minute per process


@pytest.fixture(autouse=True)
def _fresh_budget_caches() -> None:
    from budgets import pricing, selectors

    pricing.forget_prices()
    selectors.forget_budgets()


@pytest.fixture
def seeded_prices(request: Any) -> None:
    """The price table its migration seeds: transactional tests end with a flush that empties
    it, so put it back (once per test, in one query when it is there)."""
    import importlib

    from django.apps import apps

    from budgets.models import ModelPrice

    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    if not ModelPrice.objects.exists():
        importlib.import_module("budgets.migrations.0002_seed_prices").seed(apps, None)


@pytest.fixture(autouse=True)
def _fresh_guardrails(request: Any) -> None:
    """Each test starts with this process's copies of policies and keys dropped, no guardrail or
    API counters or login lockout claims in Redis (agent ids, names and addresses repeat between
    tests and runs), and the seeded policies in the database (a transactional test's flush
    empties the table)."""
    from agents.keyring import KEYRING
    from guardrails import selectors, services
    from oversight.redis_clients import UNAVAILABLE, breaker, quick_client

    selectors.POLICIES.forget()
    KEYRING.forget()
    services._ALERTED.clear()
    breaker.succeeded()  # an earlier test's unreachable Redis is not this one's
    with contextlib.suppress(*UNAVAILABLE):
        quick_client().eval(
            _DELETE_KEYS,
            0,
            "oversight:guard:*",
            "oversight:version:*",
            "oversight:rate:*",
            "oversight:lockout:*",
        )
    marker = request.node.get_closest_marker("django_db")
    uses_db = (
        "db" in request.fixturenames
        or "transactional_db" in request.fixturenames
        or marker is not None
    )
    if uses_db:
        seed_policies(request)


_DELETE_KEYS = """
for _, pattern in ipairs(ARGV) do
  for _, key in ipairs(redis.call('KEYS', pattern)) do redis.call('DEL', key) end
end
"""


def seed_policies(request: Any) -> None:
    """The policies the migration seeds, unless the table has some. A flush also emptied the
    policy set's version counter, and the live server may hold the set seeded before with the
    version the counter had then: the new one gets a version no earlier set had."""
    import importlib
    import time

    from django.apps import apps

    from guardrails.models import Policy, PolicySetVersion

    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    if not Policy.objects.exists():
        importlib.import_module("guardrails.migrations.0002_seed_policies").seed(apps, None)
        # In milliseconds: Redis compares versions as doubles, exact below 2**53.
        PolicySetVersion.objects.update_or_create(
            pk=1, defaults={"version": time.time_ns() // 10**6}
        )


@contextlib.contextmanager
def redis_unreachable(settings: Any) -> Iterator[None]:
    """This process's Redis calls go to a port nothing listens on (the breaker sees to the
    rest), until the block ends."""
    from guardrails import counters
    from oversight import redis_clients
    from tools.services import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    redis_clients.quick_client.cache_clear()
    counters._script.cache_clear()
    try:
        yield
    finally:
        redis_clients.quick_client.cache_clear()
        counters._script.cache_clear()
