"""Logging filters named in `settings.LOGGING`.

Beat starts the timer tick and the outbox sweeps every couple of seconds, and Celery logs each
run three times at INFO ("Sending due task", "received", "succeeded"): some 250 000 lines a day
that say nothing happened, and in `make run` they scroll the URL and the demo logins off the
screen within seconds. `QuietPeriodicTasks` drops those three lines for the tasks in
`CELERY_BEAT_SCHEDULE`; their warnings and errors still pass, and the tasks log a line of their
own when they do something (escalate, expire, deliver, purge).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from django.conf import settings


@functools.cache
def periodic_task_names() -> frozenset[str]:
    return frozenset(str(entry["task"]) for entry in settings.CELERY_BEAT_SCHEDULE.values())


class QuietPeriodicTasks(logging.Filter):
    """For the loggers `celery.beat`, `celery.worker.strategy` and `celery.app.trace`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        return _task_name(record) not in periodic_task_names()


def _task_name(record: logging.LogRecord) -> str | None:
    # The worker's lines ("received", "succeeded") carry their context as a mapping; beat's
    # "Scheduler: Sending due task %s (%s)" has the entry's name and then the task's.
    args = record.args
    if isinstance(args, Mapping):
        name = args.get("name")
        return name if isinstance(name, str) else None
    if isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return None
