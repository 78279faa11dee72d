"""The kombu 5.7 workarounds in oversight/celery.py, on a real Redis connection."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from kombu import Connection

import oversight.celery  # noqa: F401 - installs the workarounds


def test_acking_on_a_channel_closed_with_its_connection_does_not_crash_the_worker(caplog):
    with Connection(settings.REDIS_URL) as connection:
        channel: Any = connection.channel()  # kombu's redis Channel, typed as its base
        qos = channel.qos
        channel.close()  # what a lost Redis does to the worker's channel
        assert channel.connection is None
        # A message handed out on it whose Redis client was never made (the worker's case).
        channel.__dict__.pop("client", None)
        qos._delivered["tag-1"] = object()
        qos.ack("tag-1")  # kombu alone: AttributeError, and the worker exits
    assert "tag-1" not in qos._delivered
    assert "closed channel" in caplog.text
