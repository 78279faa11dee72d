"""Code that runs in child processes for the concurrency tests (spawned: a fresh interpreter)."""

from __future__ import annotations

import os
from typing import Any


def append_events(
    worker: int, count: int, barrier: Any, database_name: str = "", database_url: str = ""
) -> None:
    """Append `count` events as fast as possible once every worker is ready.

    Every tenth append shares an outer transaction with the next one, as a service function
    recording two events would.
    """
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from audit.events import EventType
    from audit.services import record_event

    if database_name:
        # The parent's test database, not the one DATABASE_URL names.
        connection.settings_dict["NAME"] = database_name
    connection.ensure_connection()
    barrier.wait(timeout=120)

    def append(number: int) -> None:
        record_event(
            event_type=EventType.LOGIN_FAILED,
            subject=("worker", str(worker)),
            payload={"worker": worker, "number": number},
        )

    done = 0
    while done < count:
        if done % 10 == 0 and count - done >= 2:
            with transaction.atomic():
                append(done)
                append(done + 1)
            done += 2
        else:
            append(done)
            done += 1
    connection.close()
