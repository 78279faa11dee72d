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


class PersonConsumer(AsyncWebsocketConsumer):
    """A socket of one person, in the groups their record chooses (clients subscribe to
    nothing), closed when they log out. Subclasses say who may connect (`allowed`) and which
    groups they join (`groups_for`)."""

    groups_joined: list[str]

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.groups_joined = []
        if user is None or not user.is_authenticated or not await self.allowed(user.pk):
            await self.close(code=FORBIDDEN)
            return
        self.user_id = user.pk
        self.groups_joined = self.groups_for(user)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def allowed(self, user_id: int) -> bool:
        raise NotImplementedError

    def groups_for(self, user: User) -> list[str]:
        raise NotImplementedError

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Clients cannot subscribe to anything: their groups follow from who they are."""

    async def still_allowed(self) -> bool:
        """Re-checked on every event: the person may have lost the role since."""
        if await self.allowed(self.user_id):
            return True
        await self.close(code=FORBIDDEN)
        return False

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.close(code=FORBIDDEN)


class LiveConsumer(PersonConsumer):
    filters: QueryDict

    async def allowed(self, user_id: int) -> bool:
        return await _may_watch(user_id)

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

    async def allowed(self, user_id: int) -> bool:
        return await _is_manager(user_id)

    def groups_for(self, user: User) -> list[str]:
        return [live.MANAGERS_GROUP, live.person_group(user.pk)]

    async def notice_posted(self, event: dict[str, Any]) -> None:
        if await self.still_allowed():
            notice = {key: event[key] for key in ("title", "message", "url")}
            await self.send(text_data=render_to_string("_notice.html", {"notice": notice}))


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
