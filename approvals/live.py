"""Live updates for people's pages (SPEC §4, §8): the one place that names groups and events.

A tier's group is the audience of the requests routed to that tier first: its own people and
everyone ranked above (they may decide those requests too, SPEC §2). So an approver's socket
joins the groups of their tier and of every tier below it, plus their own person group; the
server chooses the groups from the person's own record, so a client cannot subscribe to anything
else. A change to a request is announced once, to its first tier's group; each consumer then
decides, for its own person, whether to insert, update or drop the row (it re-checks the
permission).

Announcing never blocks the change that triggered it: on a web server's request thread the send
is handed to the server's event loop and the thread moves on; elsewhere (Celery, commands) it is
sent before returning.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from accounts.models import Tier, User
from oversight.server_loop import server_loop, spawn

logger = logging.getLogger(__name__)

REQUEST_CHANGED = "request.changed"  # -> LiveConsumer.request_changed
SESSION_ENDED = "session.ended"  # -> LiveConsumer.session_ended, NoticeConsumer.session_ended
NOTICE_POSTED = "notice.posted"  # -> NoticeConsumer.notice_posted
MANAGERS_GROUP = "role.manager"


@dataclass(frozen=True)
class Notice:
    """An alert for the managers' pages (repeated violations, ...): plain text and a link."""

    title: str
    message: str
    url: str


def tier_group(tier: str) -> str:
    return f"tier.{tier}"


def person_group(user_id: int) -> str:
    return f"person.{user_id}"


def groups_of(user: User) -> list[str]:
    """The groups an approver's socket joins: the tiers up to their own, and their person."""
    # The tier alone (no query: the consumer calls this on its event loop); the consumer
    # checks the person may decide each row it draws (`User.covers`).
    tiers = Tier.at_or_below(user.tier) if user.tier else []
    return [*(tier_group(tier) for tier in tiers), person_group(user.pk)]


def announce_request(request_id: str, first_tier_rank: int) -> None:
    """Tell everyone who may decide the request that it changed (after commit)."""
    first_tier = list(Tier.values)[first_tier_rank]
    _send([tier_group(first_tier)], {"type": REQUEST_CHANGED, "id": request_id})


def announce_to_managers(notice: Notice) -> None:
    """Show `notice` on every page a manager has open (after commit)."""
    _send([MANAGERS_GROUP], {"type": NOTICE_POSTED, **asdict(notice)})


def end_session(user_id: int) -> None:
    """Close the person's sockets (logout, role removed)."""
    _send([person_group(user_id)], {"type": SESSION_ENDED})


def _send(groups: list[str], message: dict[str, object]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return

    async def send() -> None:
        try:
            for group in groups:
                await layer.group_send(group, message)
        except Exception:  # Redis down: pages fall back to their periodic refresh
            kind = message["type"]
            logger.warning("live update %s not sent; pages will catch up on refresh", kind)

    loop = server_loop()
    if loop is None:
        async_to_sync(send)()
    else:
        spawn(loop, send())
