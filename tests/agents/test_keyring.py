"""The check authenticates from this process's copy of the caller's key (`agents.keyring`), and
its Redis round trip verifies the copy: a change of an agent or a key made anywhere is honoured
by the very next check, on a process that still holds the copy from before the change."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services as agents
from agents.keyring import KEYRING, keyring_version
from agents.models import AgentStatus, ApiKey, KeyringVersion
from guardrails import policies as policy_changes
from guardrails.models import Policy
from guardrails.policyfile import snapshot
from guardrails.tasks import republish_cache_versions
from oversight.redis_clients import quick_client
from tests.conftest import redis_unreachable

CHECK = "/api/v1/guardrails/check"
BODY = {"action": "read_file", "params": {"path": "/srv/reports/q3.csv"}}


@pytest.fixture
def agent(make_agent):
    return make_agent()


@contextlib.contextmanager
def another_process() -> Iterator[None]:
    """What a process that checked before the change holds: this one's copies as they are now,
    put back after the change (which drops this process's own copies as it commits)."""
    held = dict(KEYRING._held)
    yield
    KEYRING._held = held


def post(api: Callable[..., Any], key: str, path: str = "") -> Any:
    body = {**BODY, "params": {"path": path}} if path else BODY
    return api(key).post(CHECK, body)


def test_an_allowed_check_from_a_copy_asks_nothing_of_the_database(db, api, agent, settings):
    settings.OVERSIGHT_KEYRING_RECHECK_SECONDS = 60  # not this once-a-second query either
    assert post(api, agent.key).status_code == 200  # reads the key, keeps the copy
    with CaptureQueriesContext(connection) as queries:
        answer = post(api, agent.key)
    assert answer.status_code == 200
    assert answer.json()["decision"] == "allow"
    assert [q["sql"] for q in queries.captured_queries] == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        pytest.param(
            lambda a: agents.revoke_api_key(api_key=ApiKey.objects.get(agent=a.agent)),
            401,
            "key_revoked",
            id="key revoked",
        ),
        pytest.param(
            lambda a: agents.set_agent_status(
                agent=a.agent, status=AgentStatus.PAUSED, reason="looping"
            ),
            403,
            "agent_paused",
            id="agent paused",
        ),
        pytest.param(
            lambda a: agents.set_agent_status(
                agent=a.agent, status=AgentStatus.DISABLED, reason="kill switch"
            ),
            403,
            "agent_disabled",
            id="kill switch",
        ),
        pytest.param(
            lambda a: ApiKey.objects.filter(agent=a.agent).delete(),
            401,
            "invalid_api_key",
            id="key deleted",
        ),
    ],
)
def test_a_change_is_honoured_by_the_next_check_on_a_process_holding_a_copy(
    db, api, agent, django_capture_on_commit_callbacks, change, status, code
):
    assert post(api, agent.key).status_code == 200
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        change(agent)
    assert KEYRING.peek(agent.key.split("_")[1]) is not None, "the copy from before is held"
    refused = post(api, agent.key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)


def test_a_team_change_moves_the_next_check_to_the_teams_policy(
    db, api, agent, django_capture_on_commit_callbacks
):
    fields = {
        **snapshot(Policy.objects.get(name="read_file")),
        "scope": "team",
        "team": "finance",
        "forbidden_patterns": ["^/srv/reports/"],
    }
    policy_changes.save_policy(fields=fields)
    assert post(api, agent.key).json()["decision"] == "allow"
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        agents.change_agent(agent=agent.agent, owner=None, team="finance")
    answer = post(api, agent.key).json()
    assert answer["decision"] == "deny"
    assert answer["policy"]["scope"] == "team"


def test_a_resumed_agent_is_not_refused_from_a_copy_made_while_it_was_paused(
    db, api, agent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        agents.set_agent_status(agent=agent.agent, status=AgentStatus.PAUSED, reason="look")
    assert post(api, agent.key).status_code == 403  # this process now holds the paused agent
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        agents.set_agent_status(agent=agent.agent, status=AgentStatus.ACTIVE)
    assert post(api, agent.key).status_code == 200


def test_an_update_typed_into_sql_raises_the_version_and_beats_republish_spreads_it(db, api, agent):
    """Past the services nothing publishes at commit; the database's trigger still counts the
    change, and beat's republish (every timer tick) makes the copies stale."""
    assert post(api, agent.key).status_code == 200
    before = keyring_version()
    with another_process(), connection.cursor() as cursor:
        cursor.execute("UPDATE agents_agent SET status = 'paused' WHERE id = %s", [agent.agent.pk])
    assert keyring_version() == before + 1
    assert post(api, agent.key).status_code == 200, "not published yet: the copy still counts"
    republish_cache_versions()
    assert post(api, agent.key).json()["error"]["code"] == "agent_paused"


def test_recording_a_keys_use_does_not_raise_the_version(db, agent):
    before = keyring_version()
    ApiKey.objects.filter(agent=agent.agent).update(last_used_at=None)
    ApiKey.objects.get(agent=agent.agent).touch()
    assert keyring_version() == before
    ApiKey.objects.filter(agent=agent.agent).update(label="renamed")
    assert keyring_version() == before + 1


def test_counting_failures_does_not_raise_the_version_opening_the_breaker_does(db, agent):
    """Every failure counts on the agent's row; only the breaker's opening changes what a check
    answers, so only it makes the copies stale (agents migration 0008)."""
    from controls import breaker

    before = keyring_version()
    for _ in range(2):
        breaker.failed(breaker.lock(agent.agent.pk), cause=breaker.FAILURE)
    assert keyring_version() == before
    breaker.failed(breaker.lock(agent.agent.pk), cause=breaker.FAILURE)
    assert keyring_version() == before + 1


def test_with_redis_down_a_copy_is_not_trusted(
    db, api, agent, settings, django_capture_on_commit_callbacks
):
    assert post(api, agent.key).status_code == 200
    with (
        another_process(),
        redis_unreachable(settings),  # the revocation is not published either
        django_capture_on_commit_callbacks(execute=True),
    ):
        agents.revoke_api_key(api_key=ApiKey.objects.get(agent=agent.agent))
    with redis_unreachable(settings):
        refused = post(api, agent.key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "key_revoked")


def test_when_redis_lost_the_version_the_check_reads_the_key_and_publishes_it(
    db, api, agent, settings
):
    settings.OVERSIGHT_KEYRING_RECHECK_SECONDS = 60
    assert post(api, agent.key).status_code == 200
    quick_client().delete(KEYRING.key)
    assert post(api, agent.key, path="/srv/b").status_code == 200
    assert quick_client().get(KEYRING.key) == str(keyring_version()).encode()
    with CaptureQueriesContext(connection) as queries:
        # (Another file: a third identical check in a row would be a loop, and write.)
        assert post(api, agent.key, path="/srv/c").status_code == 200
    assert queries.captured_queries == [], "the copy read just now counts again"


def test_a_copy_is_checked_before_anything_is_counted(
    db, api, agent, settings, django_capture_on_commit_callbacks
):
    """A stale copy costs the caller nothing: the round trip that finds it stale counts no call
    and no rate-limit slot, and the check that follows counts once."""
    settings.OVERSIGHT_API_RATE_LIMIT_PER_MINUTE = 2
    assert post(api, agent.key).status_code == 200
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        agents.change_agent(agent=agent.agent, owner=None, team="ops")
    assert post(api, agent.key).status_code == 200
    assert post(api, agent.key).status_code == 429, "two calls counted, not three"


# --- review: holes --------------------------------------------------------------------------


# --- when Redis is not told, or tells something old (an adversarial review's findings) ---------


def test_a_revocation_is_published_even_while_the_writers_breaker_holds_redis_calls_back(
    db, api, agent, django_capture_on_commit_callbacks
):
    """The revoking process saw one Redis timeout less than a second ago (its breaker is open);
    the other processes' Redis answers. The publication is tried anyway."""
    from oversight.redis_clients import breaker

    assert post(api, agent.key).status_code == 200
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        breaker.failed()
        assert agents.revoke_api_key(api_key=ApiKey.objects.get(agent=agent.agent))
    breaker.succeeded()
    refused = post(api, agent.key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "key_revoked")


def test_redis_back_from_an_older_snapshot_is_caught_by_the_recheck(
    db, api, agent, settings, django_capture_on_commit_callbacks
):
    """Redis restarts from a snapshot taken before the revocation: it publishes the version the
    old copies were read at. Each process compares its copies with the database at least every
    OVERSIGHT_KEYRING_RECHECK_SECONDS; here at once."""
    settings.OVERSIGHT_KEYRING_RECHECK_SECONDS = 0
    assert post(api, agent.key).status_code == 200
    old = quick_client().get(KEYRING.key)
    assert old is not None
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        agents.revoke_api_key(api_key=ApiKey.objects.get(agent=agent.agent))
    quick_client().set(KEYRING.key, old)
    refused = post(api, agent.key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "key_revoked")


def test_until_the_recheck_a_copy_matching_an_old_publication_counts(
    db, api, agent, django_capture_on_commit_callbacks
):
    """The bound, not a hole: OVERSIGHT_KEYRING_RECHECK_SECONDS (1 s) after the last recheck."""
    assert post(api, agent.key).status_code == 200
    old = quick_client().get(KEYRING.key)
    assert old is not None
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        agents.revoke_api_key(api_key=ApiKey.objects.get(agent=agent.agent))
    quick_client().set(KEYRING.key, old)
    assert post(api, agent.key).status_code == 200
    KEYRING._rechecked_at -= 2  # the period has passed
    assert post(api, agent.key).status_code == 401


def test_after_a_database_restore_copies_newer_than_the_database_are_dropped(
    db, api, agent, make_agent, settings, django_capture_on_commit_callbacks
):
    """The database goes back (a restore) under running processes: their copies carry versions
    it has not reached, and Redis publishes one of those; a change after the restore raises
    the database's version to one below them."""
    settings.OVERSIGHT_KEYRING_RECHECK_SECONDS = 0
    other = make_agent()
    KeyringVersion.objects.update_or_create(pk=1, defaults={"version": 100})
    KEYRING.publish()
    assert post(api, agent.key).status_code == 200  # a copy at 100
    KeyringVersion.objects.filter(pk=1).update(version=50)  # the restore
    with another_process(), django_capture_on_commit_callbacks(execute=True):
        agents.revoke_api_key(api_key=ApiKey.objects.get(agent=agent.agent))
    assert keyring_version() == 51
    assert post(api, agent.key).status_code == 401
    assert post(api, other.key).status_code == 200
    assert quick_client().get(KEYRING.key) == b"51", "Redis brought down to the database"


def test_a_copy_newer_than_the_published_version_is_not_trusted(
    db, api, agent, make_agent, django_capture_on_commit_callbacks
):
    """After a restore, one process brought Redis down to the database's version while another
    still holds a copy read before the restore, at a higher one: only an equal version counts."""
    KeyringVersion.objects.update_or_create(pk=1, defaults={"version": 100})
    KEYRING.publish()
    assert post(api, agent.key).status_code == 200  # a copy at 100
    held = dict(KEYRING._held)
    KeyringVersion.objects.filter(pk=1).update(version=50)
    with django_capture_on_commit_callbacks(execute=True):
        agents.revoke_api_key(api_key=ApiKey.objects.get(agent=agent.agent))
    KEYRING.outdated(100)  # what another process's stale check does: Redis down to 51
    assert quick_client().get(KEYRING.key) == b"51"
    KEYRING._held.update(held)  # this process still holds its copy at 100
    refused = post(api, agent.key)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "key_revoked")
