"""What a client is told while the database does not answer: 503 with Retry-After, not 500.

Any request that needs the database then fails with django.db.OperationalError, wherever it
was: a view, the session or login middleware, a context processor. Django turns every such
exception into its 500 handler (`oversight.urls.handler500`), which asks `database_unreachable`
and answers agents with the API's JSON error `database_unavailable` and people with a plain page
that needs no database. The transaction the request was in is rolled back by the server with
the connection; nothing of it was committed. `oversight.postgres` makes the failure quick and
the recovery automatic.

With DEBUG on, Django shows its debug page instead (it never calls the 500 handler then).
"""

from __future__ import annotations

import logging

import psycopg
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template import loader

from oversight.api_errors import json_error

# What agents and browsers are told to wait before trying again. The server is probed every
# second (oversight.postgres.PROBE_SECONDS), so a retry after this long finds it if it is back.
RETRY_AFTER_SECONDS = 5

# Connection exceptions (class 08); the server shutting down, crashed or starting up; too many
# connections. Anything else with a SQLSTATE was the server answering (a deadlock, a constraint).
_UNREACHABLE_SQLSTATES = ("57P01", "57P02", "57P03", "53300")


def database_unreachable(exc: BaseException | None) -> bool:
    """True for an error that means the server could not be reached or went away: psycopg's
    own failures (refused, reset, timed out, pool timeout) carry no SQLSTATE."""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    cause = exc.__cause__
    if not isinstance(cause, psycopg.Error):
        return False
    sqlstate = cause.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES


def api_unavailable() -> HttpResponse:
    return json_error(
        503,
        "database_unavailable",
        f"The database does not answer; retry in {RETRY_AFTER_SECONDS} s.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def page_unavailable(request: HttpRequest) -> HttpResponse:
    # Rendered without the request, so no context processor runs (they read the session and
    # the person, from the database).
    body = loader.get_template("503.html").render()
    return HttpResponse(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class QuietDatabaseOutage(logging.Filter):
    """For `django.request`: a request refused because the database does not answer is one
    warning line naming the error, not an error with a traceback (there would be one per
    request for as long as the outage lasts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and database_unreachable(exc) and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (the database does not answer: %s)"
            record.args = (*record.args, exc.__cause__)
            record.exc_info = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
