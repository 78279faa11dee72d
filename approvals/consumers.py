"""The one WebSocket consumer: pushes inbox rows to approvers as server-rendered fragments.

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
from approvals.views import inbox_context

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
        await self.send(text_data=await _fragment(self.user_id, self.filters))

    async def session_ended(self, event: dict[str, Any]) -> None:
        await self.close(code=FORBIDDEN)


@database_sync_to_async
def _may_watch(user_id: int) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    return bool(user and user.has_role(Role.APPROVER) and user.tier)


@database_sync_to_async
def _fragment(user_id: int, filters: QueryDict) -> str:
    """This person's inbox rows, most urgent first, as an out-of-band swap.

    The whole rows body rather than one row: a new request lands in its place by urgency, a
    decided one disappears, a changed one updates, with one template (the page's own partial)
    and no guessing what the page holds. (htmx parses the message inside a `<template>`, so a
    bare `<tbody>` survives.)
    """
    user = User.objects.get(pk=user_id)
    context = inbox_context(user, filters)
    context["oob"] = True
    return render_to_string("approvals/inbox.html#rows", context)
