"""What a committed change sets off (approvals.effects): wake-ups for long-polling agents, and
tasks sent by name."""

from __future__ import annotations

import time

import redis
from django.conf import settings

from approvals import services, waiters


def _messages_until_finished(request_id: object, pubsub: redis.client.PubSub) -> list[str]:
    """The messages about the request, up to and including its "finished" (within 5 s)."""
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (seen and seen[-1].endswith(" finished")):
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None and message["data"].decode().startswith(f"{request_id} "):
            seen.append(message["data"].decode())
    return seen


def test_only_a_change_that_can_end_a_wait_wakes_the_waiters(
    new_request, django_capture_on_commit_callbacks
):
    """A long-poll waits for its request to leave pending. A new request has not: its creation
    wakes nobody (and costs no Redis round trip); its cancellation does. Both are published
    in order on one connection, so a message from the creation would arrive first."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    with client.pubsub() as pubsub:
        pubsub.subscribe(waiters.CHANNEL)
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"

        with django_capture_on_commit_callbacks(execute=True):
            request = new_request()
        with django_capture_on_commit_callbacks(execute=True):
            services.cancel_request(request_id=request.pk, agent=request.agent)
        assert _messages_until_finished(request.pk, pubsub) == [f"{request.pk} finished"]


def test_every_task_sent_by_name_is_a_registered_task():
    """effects sends tasks by name, so that the services need not import the tasks; a name that
    drifted from its task would send messages no worker runs."""
    from approvals import effects
    from oversight.celery import app

    app.loader.import_default_modules()  # what a worker imports (autodiscovery)
    assert set(effects.TASKS.values()) <= set(app.tasks)
