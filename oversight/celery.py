"""The Celery application shared by the worker and beat processes."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals
from django.conf import settings
from kombu.transport import redis as kombu_redis

from oversight import instruments, logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")

app = Celery("oversight")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


# Log context (oversight.logs): a task carries the request id of whatever queued it, and its own
# lines say which task they came from.
@signals.before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    logs.task_headers(headers)


@signals.task_prerun.connect
def _task_context(task: Any = None, **kwargs: Any) -> None:
    if task is not None:
        logs.task_started(task)


@signals.task_postrun.connect
def _task_done(**kwargs: Any) -> None:
    logs.end()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _json_lines(logger: logging.Logger | None = None, **kwargs: Any) -> None:
    """The worker and beat install their own handlers (Celery's format); in JSON mode their
    lines are JSON objects too."""
    if logger is not None and settings.OVERSIGHT_LOG_FORMAT == "json":
        for handler in logger.handlers:
            handler.setFormatter(logs.JsonFormatter())


@signals.worker_process_shutdown.connect
def _metrics_process_exits(**kwargs: Any) -> None:
    instruments.mark_process_dead()


_restore_unacked = kombu_redis.QoS.restore_unacked


def _restore_unacked_unless_redis_is_gone(self: Any, client: Any = None) -> Any:
    """kombu 5.7: a worker that loses Redis while it holds unacknowledged messages (the timers'
    ETA tasks, for one) crashes in the cleanup that tries to put them back into the Redis it
    just lost ("Unrecoverable error: 'NoneType' object has no attribute 'hostname'"). Nothing
    is lost by not putting them back: they stay in Redis' unacked set until the visibility
    timeout, and the timer tick and outbox sweeps redo all such work from the database. So the
    worker logs it and reconnects instead of dying (test_timers_live: the Redis outage)."""
    try:
        return _restore_unacked(self, client)
    except Exception as exc:
        logger.warning("could not hand unacknowledged messages back to Redis: %r", exc)
        return None


kombu_redis.QoS.restore_unacked = _restore_unacked_unless_redis_is_gone  # type: ignore[method-assign]


_ack = kombu_redis.QoS.ack


def _ack_unless_channel_closed(self: Any, delivery_tag: Any) -> Any:
    """kombu 5.7, same outage: right after the worker reconnects it may ack (or discard, for an
    expired tick) a message delivered on the channel that died with the old connection; the ack
    then fails on that channel ("'NoneType' object has no attribute 'client'") and takes the
    worker down. Such a message cannot be acked any more: it stays in Redis' unacked set and
    comes back after the visibility timeout, when running it again changes nothing (timers
    check their token and the request's state; sweeps redo what the database says is due)."""
    if getattr(self.channel, "connection", None) is None:
        logger.warning("message %s came on a closed channel; left for redelivery", delivery_tag)
        self._delivered.pop(delivery_tag, None)
        return None
    return _ack(self, delivery_tag)


kombu_redis.QoS.ack = _ack_unless_channel_closed  # type: ignore[method-assign]
