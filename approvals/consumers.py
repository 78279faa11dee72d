"""The WebSocket consumers: inbox rows pushed to approvers as server-rendered fragments, and
alerts pushed to managers' pages.

Authorised on connect (a logged-in, active approver from an allowed origin) and again on every
event (the person may have lost the role since), and closed when the person logs out. The
htmx WebSocket extension swaps what it receives out of band: a new row at the top of the inbox,
a changed row in place, a decided or expired row removed.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import QueryDict
from django.template.loader import render_to_string

from accounts.models import Role, User
from approvals import live
from approvals.views import inbox_row_context

FORBIDDEN = 4403


class LiveConsumer(AsyncWebsocketConsumer):
    groups_joined: list[str]
    filters: QueryDict

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.groups_joined = []
        if user is None or not user.is_authenticated or not await _may_watch(user.pk):
            await self.close(code=FORBIDDEN)
            return
        self.user_id = user.pk
        # The page's filters travel in the socket's query string, so pushed rows keep them.
        self.filters = QueryDict(self.scope.get("query_string", b"").decode(errors="replace"))
        self.groups_joined = live.groups_of(user)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients cannot subscribe to anything: their groups follow from who they are."""

    async def request_changed(self, event: dict[str, Any]) -> None:
        if not await _may_watch(self.user_id):
            await self.close(code=FORBIDDEN)
            return
        await self.send(text_data=await _row(self.user_id, self.filters, event["id"]))

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.close(code=FORBIDDEN)


class NoticeConsumer(AsyncWebsocketConsumer):
    """Alerts for managers on every page they have open (SPEC §6: repeated violations alert
    the managers live). Authorised on connect and again on every notice."""

    groups_joined: list[str]

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.groups_joined = []
        if user is None or not user.is_authenticated or not await _is_manager(user.pk):
            await self.close(code=FORBIDDEN)
            return
        self.user_id = user.pk
        self.groups_joined = [live.MANAGERS_GROUP, live.person_group(user.pk)]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Nothing to receive: what a manager sees follows from who they are."""

    async def notice_posted(self, event: dict[str, Any]) -> None:
        if not await _is_manager(self.user_id):
            await self.close(code=FORBIDDEN)
            return
        notice = {key: event[key] for key in ("title", "message", "url")}
        await self.send(text_data=render_to_string("_notice.html", {"notice": notice}))

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.close(code=FORBIDDEN)


@database_sync_to_async
def _is_manager(user_id: int) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return bool(user and user.has_role(Role.MANAGER))


@database_sync_to_async
def _may_watch(user_id: int) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return bool(user and user.has_inbox)


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
