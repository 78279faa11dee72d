"""WebSocket authorisation (SPEC §9.8): no session, a foreign origin, the wrong person; and a
socket that closes when its session stops holding (ended, expired, password or active flag
changed: 4401) or its person loses the role (4403)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect
from websockets.typing import Origin

from approvals import live
from oversight.asgi import application
from tests.support.live import start_web

pytestmark = pytest.mark.django_db(transaction=True)


SESSION_ENDED, FORBIDDEN = 4401, 4403


def logged_in_session(user, *, expiry: int | None = None) -> SessionStore:
    """The session a login makes for `user` (what the browser's cookie names)."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    if expiry is not None:
        session.set_expiry(expiry)
    session.save()
    return session


def cookie_of(session: SessionStore) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def session_cookie(user) -> str:
    return cookie_of(logged_in_session(user))


@pytest.fixture
def quick_recheck(settings):
    """Re-check open sockets every 0.2 s instead of every half minute."""
    settings.OVERSIGHT_LIVE_RECHECK_SECONDS = 0.2


async def closed_with(communicator: WebsocketCommunicator, *, timeout: float = 5) -> int:
    """Wait for the server to close the socket (nothing else may arrive first); its code."""
    output = await communicator.receive_output(timeout=timeout)
    assert output["type"] == "websocket.close", output
    return int(output["code"])


async def connect(
    cookie: str | None = None, origin: str = "http://127.0.0.1", path: str = "/ws/live/"
):
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


def test_no_session_is_refused():
    async def scenario():
        _communicator, connected, code = await connect()
        assert not connected
        assert code == SESSION_ENDED

    async_to_sync(scenario)()


def test_a_foreign_origin_is_refused(approvers):
    cookie = session_cookie(approvers["lead"])

    async def scenario():
        _communicator, connected, _ = await connect(cookie, origin="https://evil.example")
        assert not connected

    async_to_sync(scenario)()


def test_someone_without_the_approver_role_is_refused(make_user):
    cookie = session_cookie(make_user("auditor-x", roles=("compliance",)))

    async def scenario():
        _communicator, connected, code = await connect(cookie)
        assert not connected
        assert code == FORBIDDEN

    async_to_sync(scenario)()


def test_an_approver_gets_only_their_tiers_events_and_logout_closes_the_socket(
    approvers, new_request
):
    lead = approvers["lead"]
    cookie = session_cookie(lead)

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        # Creating a request announces it on commit, to the tiers that may decide it: a
        # high-risk one goes to the engineering manager tier and up only.
        await sync_to_async(new_request)(risk_level="high")
        assert await communicator.receive_nothing(timeout=0.5)
        medium = await sync_to_async(new_request)(risk_level="medium")
        pushed = await communicator.receive_from(timeout=5)
        assert f'id="request-{medium.pk}"' in pushed
        assert await communicator.receive_nothing(timeout=0.3)
        await sync_to_async(live.end_session)(lead.pk)
        assert await closed_with(communicator) == SESSION_ENDED

    async_to_sync(scenario)()


def test_a_higher_tier_hears_of_requests_routed_to_the_tiers_below(approvers, new_request):
    director = approvers["director"]
    assert live.groups_of(director) == [
        "tier.team_lead",
        "tier.engineering_manager",
        "tier.director",
        f"person.{director.pk}",
    ]
    cookie = session_cookie(director)

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        # Low risk is routed to team leads first; a director may decide it too (SPEC §2).
        low = await sync_to_async(new_request)(risk_level="low")
        pushed = await communicator.receive_from(timeout=5)
        assert f'id="request-{low.pk}"' in pushed
        # Critical starts at the director tier: still theirs.
        critical = await sync_to_async(new_request)(risk_level="critical")
        pushed = await communicator.receive_from(timeout=5)
        assert f'id="request-{critical.pk}"' in pushed
        await communicator.disconnect()

    async_to_sync(scenario)()


def test_pushed_rows_keep_the_filters_of_the_page(approvers, new_request):
    cookie = session_cookie(approvers["director"])

    async def scenario():
        communicator, connected, _ = await connect(cookie, path="/ws/live/?risk=high")
        assert connected
        medium = await sync_to_async(new_request)(risk_level="medium")
        pushed = await communicator.receive_from(timeout=5)
        # Filtered out: the push says "no row for this request here" (drop it if shown).
        assert pushed.strip() == f'<template data-inbox-row="request-{medium.pk}"></template>'
        high = await sync_to_async(new_request)(risk_level="high")
        pushed = await communicator.receive_from(timeout=5)
        assert f'<tr id="request-{high.pk}"' in pushed
        assert f'id="request-{medium.pk}"' not in pushed, "one row per push"
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.slow
def test_an_idle_socket_stays_open_past_the_channel_layers_poll(approvers, new_request):
    """The layer waits on Redis in 5 s polls; an idle socket must outlive several of them."""
    cookie = session_cookie(approvers["lead"])

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        assert await communicator.receive_nothing(timeout=7, interval=0.5)
        request = await sync_to_async(new_request)()
        pushed = await communicator.receive_from(timeout=5)
        assert f'id="request-{request.pk}"' in pushed
        await communicator.disconnect()

    async_to_sync(scenario)()


# --- the session must keep holding while the socket is open (SPEC §9.8) -------------------


def expire_now(session: SessionStore) -> None:
    Session.objects.filter(session_key=session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )


def delete_session(session: SessionStore) -> None:
    # What logging out elsewhere, `clearsessions` or an admin deleting the row leaves behind,
    # without the logout signal reaching this socket.
    Session.objects.filter(session_key=session.session_key).delete()


def change_password(user) -> None:
    user.set_password("a-brand-new-passphrase-77")
    user.save()


def deactivate(user) -> None:
    user.is_active = False
    user.save()


@pytest.mark.parametrize(
    "end", [expire_now, delete_session], ids=["session-expired", "session-deleted"]
)
def test_an_idle_socket_closes_when_its_session_ends_without_a_logout_signal(
    approvers, quick_recheck, end
):
    session = logged_in_session(approvers["lead"])

    async def scenario():
        communicator, connected, _ = await connect(cookie_of(session))
        assert connected
        await sync_to_async(end)(session)
        assert await closed_with(communicator) == SESSION_ENDED

    async_to_sync(scenario)()


def test_a_socket_closes_when_its_session_runs_out_on_its_own(approvers, quick_recheck):
    session = logged_in_session(approvers["lead"], expiry=2)  # a real expiry, two seconds away

    async def scenario():
        communicator, connected, _ = await connect(cookie_of(session))
        assert connected
        assert await closed_with(communicator, timeout=10) == SESSION_ENDED

    async_to_sync(scenario)()


@pytest.mark.parametrize("change", [change_password, deactivate], ids=["password", "deactivated"])
@pytest.mark.parametrize(
    ("path", "roles", "tier"),
    [("/ws/live/", ("approver",), "team_lead"), ("/ws/notices/", ("manager",), "")],
    ids=["inbox", "notices"],
)
def test_an_idle_socket_closes_when_the_password_or_active_flag_changes(
    make_user, quick_recheck, change, path, roles, tier
):
    person = make_user(roles=roles, tier=tier)
    cookie = session_cookie(person)

    async def scenario():
        communicator, connected, _ = await connect(cookie, path=path)
        assert connected
        await sync_to_async(change)(person)
        assert await closed_with(communicator) == SESSION_ENDED

    async_to_sync(scenario)()


def test_an_idle_socket_closes_when_its_person_loses_the_role(approvers, quick_recheck):
    lead = approvers["lead"]
    cookie = session_cookie(lead)

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        await sync_to_async(lead.groups.clear)()
        assert await closed_with(communicator) == FORBIDDEN

    async_to_sync(scenario)()


def test_nothing_is_sent_once_the_password_changed_even_before_the_next_recheck(
    approvers, new_request, settings
):
    settings.OVERSIGHT_LIVE_RECHECK_SECONDS = 3600  # only the check before each send can act
    lead = approvers["lead"]
    cookie = session_cookie(lead)

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        await sync_to_async(change_password)(lead)
        await sync_to_async(new_request)(risk_level="medium")
        # The row is not pushed: the socket is closed instead.
        assert await closed_with(communicator) == SESSION_ENDED

    async_to_sync(scenario)()


def test_a_socket_whose_session_holds_stays_open_across_rechecks(
    approvers, new_request, quick_recheck
):
    cookie = session_cookie(approvers["lead"])

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        assert await communicator.receive_nothing(timeout=1.5, interval=0.1)  # ~7 re-checks
        request = await sync_to_async(new_request)(risk_level="medium")
        pushed = await communicator.receive_from(timeout=5)
        assert f'id="request-{request.pk}"' in pushed
        await communicator.disconnect()

    async_to_sync(scenario)()


@pytest.mark.slow
def test_through_the_server_a_real_socket_closes_when_the_password_changes(approvers, tmp_path):
    """The same promise over a real connection: uvicorn, the Redis channel layer, a browser's
    WebSocket handshake with its session cookie."""
    server = start_web(tmp_path, OVERSIGHT_LIVE_RECHECK_SECONDS="0.3")
    lead = approvers["lead"]
    try:
        with websocket_connect(
            server.url.replace("http://", "ws://") + "/ws/live/",
            origin=Origin(server.url),
            additional_headers={"Cookie": session_cookie(lead)},
            open_timeout=10,
        ) as socket:
            with pytest.raises(TimeoutError):
                socket.recv(timeout=1)  # open, and quiet, across a few re-checks
            change_password(lead)
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == SESSION_ENDED
    finally:
        server.proc.stop()
