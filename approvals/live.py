"""Live updates for people's pages (SPEC §4, §8): the one place that names groups and events.

Every approver's socket joins the group of their tier and their own person group; the server
chooses the groups from the person's own record, so a client cannot subscribe to anything else.
A change to a request is announced to the tiers that may see it; each consumer then decides,
for its own person, whether to insert, update or drop the row (it re-checks the permission).
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from accounts.models import Tier

logger = logging.getLogger(__name__)

REQUEST_CHANGED = "request.changed"  # -> LiveConsumer.request_changed
SESSION_ENDED = "session.ended"  # -> LiveConsumer.session_ended


def tier_group(tier: str) -> str:
    return f"tier.{tier}"


def person_group(user_id: int) -> str:
    return f"person.{user_id}"


def announce_request(request_id: str, first_tier_rank: int) -> None:
    """Tell every tier that may decide the request that it changed (after commit)."""
    _send(
        [tier_group(tier) for tier in list(Tier.values)[first_tier_rank:]],
        {"type": REQUEST_CHANGED, "id": request_id},
    )


def end_session(user_id: int) -> None:
    """Close the person's sockets (logout, role removed)."""
    _send([person_group(user_id)], {"type": SESSION_ENDED})


def _send(groups: list[str], message: dict[str, object]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        for group in groups:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # Redis down: pages fall back to their periodic refresh
        logger.warning("live update %s not sent; pages will catch up on refresh", message["type"])
