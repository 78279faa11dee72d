"""WebSocket authorisation (SPEC §9.8): no session, a foreign origin, the wrong person."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from approvals import live
from oversight.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user) -> str:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


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
        assert code == 4403

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
        assert code == 4403

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
        closed = await communicator.receive_output(timeout=5)
        assert closed["type"] == "websocket.close"
        assert closed["code"] == 4403

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
