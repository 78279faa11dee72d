"""The fault-injection suite's processes, people and agents, and its table of figures.

One stack of processes (web, worker, beat on the test database and Redis) serves the tests
that fault a peer (callbacks, SMTP, long-polls) or a worker process: it starts once for the
package, and each test brings its own peers, people and agent. The tests that take a
dependency away (Redis, PostgreSQL) start processes of their own on private servers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kombu
import pytest
from django.conf import settings as django_settings
from django.db import connection

from accounts.models import User
from tests.conftest import AgentWithKey
from tests.faults import figures, harness
from tests.support import live


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The suite measures the production stack: on the SQLite fallback of `make test` it has
    nothing to measure (and its reads are PostgreSQL's SQL)."""
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="the fault-injection suite needs PostgreSQL")
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="package")
def _quiet_http_client_log() -> Iterator[None]:
    """Thousands of calls per test: httpx's line per request would bury a failure's report."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def purge_broker(url: str) -> None:
    """Drop every queued and unacknowledged task message: earlier tests leave some behind."""
    with kombu.Connection(url) as broker:
        channel: Any = broker.default_channel
        for queue in ("celery", "timers", "outbound", "email", "default"):
            with contextlib.suppress(Exception):
                channel.queue_purge(queue)
        channel.client.delete(channel.unacked_key, channel.unacked_index_key)


@pytest.fixture(scope="package")
def stack(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any
) -> Iterator[harness.Stack]:
    """Web, worker and beat on the test database and Redis, for the whole package."""
    with django_db_blocker.unblock():
        database_url = live.test_database_url()
    purge_broker(django_settings.CELERY_BROKER_URL)
    started = harness.start_stack(tmp_path_factory.mktemp("faults"), database_url)
    yield started
    started.stop()
    purge_broker(django_settings.CELERY_BROKER_URL)


@dataclass
class Cast:
    """One test's agent, a team lead (who decides its low-risk requests) and an engineering
    manager (who hears of their escalations), each with an address of their own."""

    agent: AgentWithKey
    lead: User
    manager: User


@pytest.fixture
def cast(
    settings: Any,
    transactional_db: None,
    make_agent: Callable[..., AgentWithKey],
    make_user: Callable[..., User],
) -> Cast:
    lead = make_user("fault-lead", roles=("approver",), tier="team_lead")
    manager = make_user("fault-em", roles=("approver",), tier="engineering_manager")
    for person in (lead, manager):
        person.email = f"{person.username}@example.com"
        person.save(update_fields=["email"])
    return Cast(make_agent("fault-agent"), lead, manager)


@dataclass
class Scene:
    """An agent calling the API of running processes, and a person using their pages."""

    stack: harness.Stack
    api: harness.AgentApi
    person: harness.Person

    @classmethod
    @contextlib.contextmanager
    def on(cls, stack: harness.Stack, api_key: str, username: str) -> Iterator[Scene]:
        assert not stack.dead(), f"processes gone before the test: {stack.dead()}"
        stack.watchdog.reset()
        api = harness.AgentApi(stack.web.url, api_key)
        person = harness.Person(stack.web.url, username)
        try:
            yield cls(stack, api, person)
        finally:
            api.close()
            person.close()


@pytest.fixture
def scene(stack: harness.Stack, cast: Cast) -> Iterator[Scene]:
    """The cast on the package's stack. Between tests the stack is paused, so that nothing
    writes while the test database is emptied."""
    stack.resume()
    with Scene.on(stack, cast.agent.key, cast.lead.username) as made:
        yield made
    stack.pause()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not figures.FIGURES:
        return
    terminalreporter.section("fault-injection figures")
    for line in (
        "timers: the escalations and expiries measured; their lateness is each one's audit "
        "event time minus its deadline (SPEC §9.6/§10.3: p99 < 1000 ms; below 100 timers p99 "
        "is the max).",
        "not run: timers that had not run 2.5 s past their deadline. worker MB: the peak RSS "
        "of any worker process (limit 300). 5xx: answers 5xx or none, agent and pages (a 503 "
        "with Retry-After while PostgreSQL is down is not counted).",
        "",
        *figures.table(),
    ):
        terminalreporter.write_line(line)
