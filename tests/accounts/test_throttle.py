"""Login throttling (SPEC §9.9, §7): per account across addresses, per address across accounts,
one audit event per lockout, and the client's address as the proxies in front report it."""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx
import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate
from django.db import connection
from django.test import Client, RequestFactory

from accounts.throttle import client_address, failures_left, limits_reached
from audit.models import AuditEvent
from tests.conftest import PASSWORD
from tests.support import live

pytestmark = pytest.mark.django_db

ATTACKER_ADDRESSES = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]


@pytest.fixture
def limits(settings: Any) -> None:
    """Small limits keep the tests quick (each wrong password costs a real hash): 3 failures
    for one account from one address, 6 from one address, 8 for one account."""
    settings.AXES_FAILURE_LIMIT = 3
    settings.OVERSIGHT_LOGIN_ADDRESS_FAILURE_LIMIT = 6
    settings.OVERSIGHT_LOGIN_ACCOUNT_FAILURE_LIMIT = 8


def log_in(username: str, password: str, address: str, forwarded_for: str = "") -> int:
    """A login from `address` (the peer that connects: the client, or the nearest proxy)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    response = Client(REMOTE_ADDR=address, headers=headers).post(
        "/login/", {"username": username, "password": password}
    )
    return response.status_code


def lockouts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="login.locked_out").order_by("sequence"))


PAIR, ADDRESS, ACCOUNT = "account_and_address", "address", "account"


@pytest.mark.parametrize(
    ("counts", "known_address", "reached", "left"),
    [
        ({PAIR: 2, ADDRESS: 5, ACCOUNT: 7}, False, [], 1),
        ({PAIR: 3, ADDRESS: 3, ACCOUNT: 3}, False, [PAIR], 0),
        ({PAIR: 0, ADDRESS: 6, ACCOUNT: 0}, False, [ADDRESS], 0),
        ({PAIR: 2, ADDRESS: 2, ACCOUNT: 8}, False, [ACCOUNT], 0),
        ({PAIR: 2, ADDRESS: 2, ACCOUNT: 12}, False, [ACCOUNT], -4),
        # An address the person logged in from lately is not shut out by the account's lock,
        # nor by the address's (guesses at other names from a shared office or proxy)...
        ({PAIR: 2, ADDRESS: 2, ACCOUNT: 8}, True, [], 1),
        ({PAIR: 2, ADDRESS: 9, ACCOUNT: 2}, True, [], 1),
        # ...but their own name's guesses from there still meet the pair's limit.
        ({PAIR: 3, ADDRESS: 6, ACCOUNT: 9}, True, [PAIR], 0),
    ],
)
def test_which_limits_a_count_reaches_and_how_many_failures_are_left(
    counts, known_address, reached, left
):
    limits = {PAIR: 3, ADDRESS: 6, ACCOUNT: 8}
    assert limits_reached(counts, limits, known_address=known_address) == reached
    assert failures_left(counts, limits, known_address=known_address) == left


def test_guesses_from_many_addresses_lock_the_account_but_not_where_its_person_logs_in(
    make_user, limits
):
    make_user("alice")
    make_user("bob")
    assert log_in("alice", PASSWORD, "203.0.113.5") == 302  # alice's usual address
    # Two guesses from each of four addresses: no address and no pair reaches its limit, but
    # the eighth guess at the account does.
    statuses = [log_in("alice", "wrong", a) for a in ATTACKER_ADDRESSES for _ in range(2)]
    assert statuses == [200] * 7 + [429]
    # The account has: from anywhere new, even the right password is refused...
    assert log_in("alice", PASSWORD, "192.0.2.77") == 429
    # ...but alice, where she logged in before, is not shut out by a stranger's guesses.
    assert log_in("alice", PASSWORD, "203.0.113.5") == 302
    # The addresses themselves are not locked for other people.
    assert log_in("bob", PASSWORD, ATTACKER_ADDRESSES[0]) == 302
    (event,) = lockouts()
    assert event.payload["limits"] == ["account"]


def test_guesses_at_many_accounts_from_one_address_lock_the_address(make_user, limits):
    make_user("carol")
    # One guess each at six names: no account reaches a limit, the address does.
    statuses = [log_in(f"someone-{n}", "wrong", "198.51.100.9") for n in range(6)]
    assert statuses == [200] * 5 + [429]
    assert log_in("carol", PASSWORD, "198.51.100.9") == 429
    assert log_in("carol", PASSWORD, "198.51.100.10") == 302  # from elsewhere: fine
    (event,) = lockouts()
    assert event.payload == {
        "username": "someone-5",
        "remote_addr": "198.51.100.9",
        "limits": ["address"],
    }
    assert event.actor_type == "system"


def test_attempts_without_a_name_count_against_the_address(make_user, limits):
    make_user("ivan")
    request = RequestFactory().post("/login/", REMOTE_ADDR="198.51.100.70")
    for _ in range(6):
        assert authenticate(request, password="wrong") is None
    assert log_in("ivan", PASSWORD, "198.51.100.70") == 429
    (event,) = lockouts()
    assert event.payload == {"username": "", "remote_addr": "198.51.100.70", "limits": ["address"]}


def test_a_lockout_is_audited_once_and_failures_before_it_not_at_all(make_user, limits):
    dave = make_user("dave")
    assert log_in("dave", "wrong-guess-1", "198.51.100.20") == 200
    assert not AuditEvent.objects.filter(event_type__startswith="login.").exists()
    assert log_in("dave", "wrong-guess-2", "198.51.100.20") == 200
    assert log_in("dave", "wrong-guess-3", "198.51.100.20") == 429  # the third trips the lock
    for _ in range(10):  # refused before any password is checked
        assert log_in("dave", "wrong-guess-4", "198.51.100.20") == 429
    (event,) = lockouts()
    assert (event.subject_type, event.subject_id) == ("user", str(dave.pk))
    assert event.payload == {
        "username": "dave",
        "remote_addr": "198.51.100.20",
        "limits": ["account_and_address"],
    }
    assert not AuditEvent.objects.filter(event_type="login.failed").exists()
    stored = " ".join(str(row) for row in AuditEvent.objects.values_list())
    assert "wrong-guess" not in stored


def test_attempts_refused_while_locked_do_not_count_or_prolong_the_lock(make_user, limits):
    make_user("erin")
    for _ in range(3):
        log_in("erin", "wrong", "198.51.100.30")
    first = AccessAttempt.objects.get(username="erin")
    for _ in range(5):
        assert log_in("erin", "wrong", "198.51.100.30") == 429
    after = AccessAttempt.objects.get(username="erin")
    # Otherwise one request per cool-off would keep the account locked for ever.
    assert after.failures_since_start == 3
    assert after.attempt_time == first.attempt_time


def test_a_successful_login_forgives_only_its_own_failures(make_user, limits):
    # mallory shares an address with bob; her logging in must not wipe her guesses at his
    # account (the address's failures as a whole are not hers to clear).
    make_user("mallory")
    make_user("bob")
    for _ in range(2):
        assert log_in("bob", "guess", "198.51.100.40") == 200
    assert log_in("mallory", PASSWORD, "198.51.100.40") == 302
    assert log_in("bob", "guess", "198.51.100.40") == 429  # the third guess at bob: locked


class WaitForEachOther:
    """An authentication backend that holds every attempt until all of them have passed the
    lock check, so that they reach the limit together."""

    barrier: threading.Barrier

    def authenticate(self, request: Any, **credentials: Any) -> None:
        self.barrier.wait(timeout=30)

    def get_user(self, user_id: int) -> None:
        return None


@pytest.mark.django_db(transaction=True)
def test_guesses_racing_past_the_limit_make_one_lockout_event(make_user, limits, settings):
    make_user("frank")
    attempts = 5  # past the limit of 3 for frank from this address; short of the address's 6
    WaitForEachOther.barrier = threading.Barrier(attempts)
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        f"{__name__}.WaitForEachOther",
        "django.contrib.auth.backends.ModelBackend",
    ]
    statuses: list[int] = []

    def attempt() -> None:
        try:
            statuses.append(log_in("frank", "wrong", "198.51.100.50"))
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == attempts
    assert 429 in statuses  # all six were checked unlocked, and all six reached the limit
    assert len(lockouts()) == 1


# --- the client's address ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "client"),
    [
        # No proxy in front: the header is anyone's to write, so it is ignored.
        (0, "203.0.113.9", "192.0.2.1", "203.0.113.9"),
        # One proxy: the entry it appended (the last); what the client sent before it is not used.
        (1, "10.0.0.1", "192.0.2.1, 203.0.113.9", "203.0.113.9"),
        (1, "10.0.0.1", "203.0.113.9", "203.0.113.9"),
        # Two: the second entry from the right (the outer proxy's view of the client).
        (2, "10.0.0.2", "192.0.2.1, 203.0.113.9, 10.0.0.1", "203.0.113.9"),
        (2, "10.0.0.2", "203.0.113.9,10.0.0.1", "203.0.113.9"),
        # Ports and IPv6 as proxies write them.
        (1, "10.0.0.1", "203.0.113.9:51234", "203.0.113.9"),
        (1, "10.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        (1, "10.0.0.1", "2001:db8::7", "2001:db8::7"),
        # Fewer entries than proxies (it did not come through all of them), no header, or
        # something that is not an address: the peer that connected.
        (2, "10.0.0.2", "203.0.113.9", "10.0.0.2"),
        (1, "10.0.0.1", "", "10.0.0.1"),
        (1, "10.0.0.1", "unknown", "10.0.0.1"),
    ],
)
def test_the_client_address_is_the_one_the_nth_proxy_saw(
    settings, proxies, remote, forwarded, client
):
    settings.OVERSIGHT_PROXY_COUNT = proxies
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().post("/login/", REMOTE_ADDR=remote, **headers)
    assert client_address(request) == client


def test_behind_two_proxies_a_forged_forwarded_for_neither_evades_nor_spreads_the_lock(
    make_user, limits, settings
):
    settings.OVERSIGHT_PROXY_COUNT = 2
    make_user("grace")
    inner_proxy = "10.0.0.2"

    def through_proxies(password: str, forwarded_for: str) -> int:
        # The outer proxy appends the client's address, the inner one the outer one's.
        return log_in("grace", password, inner_proxy, f"{forwarded_for}, 10.0.0.1")

    # A new forged entry each time does not make the guesser someone new...
    statuses = [through_proxies("wrong", f"192.0.2.{n}, 203.0.113.9") for n in range(3)]
    assert statuses == [200, 200, 429]
    assert through_proxies(PASSWORD, "192.0.2.99, 203.0.113.9") == 429
    # ...and grace, behind the same proxies from her own address, is not locked with them.
    assert through_proxies(PASSWORD, "198.51.100.60") == 302
    (event,) = lockouts()
    assert event.payload["remote_addr"] == "203.0.113.9"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_through_the_server_behind_two_proxies_the_address_is_the_one_the_outer_proxy_saw(
    make_user, tmp_path
):
    """Through uvicorn as `make web` runs it behind proxies: the address counted and audited is
    the one the outer proxy appended, whatever the client put before it; and uvicorn does not
    swap the connecting peer for an entry the client wrote."""
    make_user("heidi")
    server = live.start_web(tmp_path, OVERSIGHT_BEHIND_TLS_PROXY="true", OVERSIGHT_PROXY_COUNT="2")

    def fail_to_log_in(forwarded_for: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            page = browser.get("/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token is not None
            browser.post(
                "/login/",
                data={"username": "heidi", "password": "wrong", "csrfmiddlewaretoken": token[1]},
                headers={"X-Forwarded-For": forwarded_for},
            )

    try:
        for n in range(5):  # the shipped limit for one account from one address
            fail_to_log_in(f"192.0.2.{n}, 203.0.113.9, 10.0.0.1")
        # Fewer entries than proxies: it did not come through both; the peer that connected.
        fail_to_log_in("192.0.2.200")
        counted = AccessAttempt.objects.values_list("ip_address", "failures_since_start")
        assert sorted(counted) == [("127.0.0.1", 1), ("203.0.113.9", 5)]
        (event,) = live.wait_until(lockouts)  # the fifth reached the limit
        assert event.payload["remote_addr"] == "203.0.113.9"
    finally:
        server.proc.stop()


def test_guesses_at_made_up_names_from_a_shared_address_do_not_lock_out_its_people(
    make_user, limits
):
    """Found by review: six wrong guesses at made-up names from the office's (or a proxy's)
    address locked alice out there, with her right password."""
    make_user("alice")
    assert log_in("alice", PASSWORD, "10.9.8.7") == 302  # she works here
    statuses = [log_in(f"made-up-{n}", "wrong", "10.9.8.7") for n in range(6)]
    assert statuses[-1] == 429  # the guesser is stopped
    assert log_in("alice", PASSWORD, "10.9.8.7") == 302  # she is not
