"""The WebSocket consumers: inbox rows pushed to approvers as server-rendered fragments, and
alerts pushed to managers' pages.

A socket is only as good as the login behind it (SPEC §8, §9.8). It is authorised on connect (a
logged-in, active approver from an allowed origin) and again before everything it sends, and
re-checked every OVERSIGHT_LIVE_RECHECK_SECONDS while idle: the session must still exist and not
have expired, still match the person's password (Django's session auth hash) and belong to an
active person who holds the role. A logout closes the person's sockets at once; any other end of
the session (an expiry, a password or active-flag change, a session deleted elsewhere) closes
them by the next re-check at the latest. The close code tells the page why: 4401, log in again;
4403, this person may not have this socket.

The htmx WebSocket extension swaps what it receives out of band: a new row at the top of the
inbox, a changed row in place, a decided or expired row removed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import QueryDict
from django.template.loader import render_to_string

from accounts.models import Role, User
from accounts.selectors import session_user
from approvals import live
from approvals.inbox import inbox_row_context

logger = logging.getLogger(__name__)

SESSION_ENDED = 4401  # no session, or it no longer holds: log in (again)
FORBIDDEN = 4403  # logged in, but this person may not have this socket
SERVER_ERROR = 1011  # the re-check itself failed; the page reconnects and is checked afresh


class PersonConsumer(AsyncWebsocketConsumer):
    """A socket of one person, in the groups their record chooses (clients subscribe to
    nothing), open only while their session holds. Subclasses say who may connect
    (`may_connect`) and which groups they join (`groups_for`)."""

    groups_joined: list[str]
    recheck: asyncio.Task[None] | None
    closing: bool

    async def connect(self) -> None:
        self.groups_joined, self.recheck, self.closing = [], None, False
        user = self.scope.get("user")
        session = self.scope.get("session")
        if user is None or not user.is_authenticated or not getattr(session, "session_key", None):
            await self.close_once(SESSION_ENDED)
            return
        self.user_id: int = user.pk
        self.session_key: str = session.session_key
        code = await self.standing()
        if code is not None:
            await self.close_once(code)
            return
        self.groups_joined = self.groups_for(user)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.recheck = asyncio.create_task(self.recheck_while_open())

    def may_connect(self, user: User) -> bool:
        raise NotImplementedError

    def groups_for(self, user: User) -> list[str]:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if self.recheck is not None:
            self.recheck.cancel()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients cannot subscribe to anything: their groups follow from who they are."""

    async def standing(self) -> int | None:
        """None while the socket may stay open, else the code to close it with."""
        return await _standing(self.session_key, self.user_id, self.may_connect)

    async def still_allowed(self) -> bool:
        """Checked before every send: nothing goes out once the session or the role is gone."""
        if self.closing:
            return False
        code = await self.standing()
        if code is None:
            return True
        await self.close_once(code)
        return False

    async def recheck_while_open(self) -> None:
        """An idle socket gets no events to check on, so it is checked on a timer too. Each
        wait is shortened at random by up to a fifth, so that sockets opened together (every
        page reconnecting after a deploy) do not query the database together ever after."""
        interval = float(settings.OVERSIGHT_LIVE_RECHECK_SECONDS)
        while not self.closing:
            await asyncio.sleep(interval * random.uniform(0.8, 1.0))  # noqa: S311 - not a secret
            try:
                if not await self.still_allowed():
                    return
            except Exception:
                # A socket that cannot be vouched for is not kept open; the page reconnects
                # and its connect is checked from scratch.
                logger.exception("live socket of person %s: re-check failed", self.user_id)
                await self.close_once(SERVER_ERROR)
                return

    async def close_once(self, code: int) -> None:
        if self.closing:
            return
        self.closing = True
        if self.recheck is not None and self.recheck is not asyncio.current_task():
            self.recheck.cancel()
        await self.close(code=code)

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The person logged out (SPEC §8): close at once, not at the next re-check."""
        await self.close_once(SESSION_ENDED)


class LiveConsumer(PersonConsumer):
    filters: QueryDict

    def may_connect(self, user: User) -> bool:
        return user.has_inbox

    def groups_for(self, user: User) -> list[str]:
        # The page's filters travel in the socket's query string, so pushed rows keep them.
        self.filters = QueryDict(self.scope.get("query_string", b"").decode(errors="replace"))
        return live.groups_of(user)

    async def request_changed(self, event: dict[str, Any]) -> None:
        if await self.still_allowed():
            await self.send(text_data=await _row(self.user_id, self.filters, event["id"]))


class NoticeConsumer(PersonConsumer):
    """Alerts for managers on every page they have open (SPEC §6: repeated violations alert
    the managers live)."""

    def may_connect(self, user: User) -> bool:
        return user.has_role(Role.MANAGER)

    def groups_for(self, user: User) -> list[str]:
        return [live.MANAGERS_GROUP, live.person_group(user.pk)]

    async def notice_posted(self, event: dict[str, Any]) -> None:
        if await self.still_allowed():
            notice = {key: event[key] for key in ("title", "message", "url")}
            await self.send(text_data=render_to_string("_notice.html", {"notice": notice}))


@database_sync_to_async
def _standing(session_key: str, user_id: int, may_connect: Callable[[User], bool]) -> int | None:
    user = session_user(session_key)
    if user is None or user.pk != user_id:
        return SESSION_ENDED
    return None if may_connect(user) else FORBIDDEN


@database_sync_to_async
def _row(user_id: int, filters: QueryDict, request_id: str) -> str:
    """The changed request's row for this person's inbox, or an empty one meaning "drop it".

    One row, not the whole inbox: rendering a full inbox for every open page on every change
    cost hundreds of milliseconds once inboxes held a few hundred rows. The page's script
    (static/js/oversight.js) replaces the row, inserts it in deadline order, or removes it;
    after a reconnect the page refreshes its rows in full, so nothing missed stays missed.
    """
    user = User.objects.get(pk=user_id)
    return render_to_string(
        "approvals/_inbox_push.html", inbox_row_context(user, filters, request_id)
    )
