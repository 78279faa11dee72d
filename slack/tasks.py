"""Celery tasks of the Slack app: the outbox's sends (queue `outbound`)."""

from __future__ import annotations

import uuid

from celery import shared_task

from slack import delivery


@shared_task(acks_late=True, ignore_result=True)
def deliver(item_id: str) -> str:
    """Send one row now (a reply to a click); the sweep retries it if it fails."""
    return delivery.deliver(uuid.UUID(item_id))


@shared_task(ignore_result=True)
def sweep() -> int:
    """Beat, every tick: send what is due (posts, updates, retries)."""
    return delivery.sweep()
