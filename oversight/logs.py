"""Log lines, and what they say about the request or task they came from (SPEC §12).

`OVERSIGHT_LOG_FORMAT=json` writes one JSON object per line: time, level, logger, message, and
where they apply the request id, the agent, the person and the audit sequence of the last event
appended. `text` (the default) writes the familiar one-liners.

The context travels in a contextvar, set by `RequestContextMiddleware` (first on both the pages'
and the agent API's stacks: it costs a contextvar and a header), by the API key's check (the
agent), by `audit.services.record_event` (the sequence) and by Celery's task signals (a task
carries the request id of the request that queued it). The person is read from the request
only if authentication has already loaded them: logging never runs a query.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept if it is short and plain (a proxy's or a client's correlation id);
# anything else could forge or break log lines, so a fresh one replaces it.
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TASK_HEADER = "oversight_request_id"


@dataclass(frozen=True)
class Context:
    request_id: str | None = None
    agent: str | None = None
    audit_sequence: int | None = None
    task: str | None = None
    request: HttpRequest | None = None  # for the person, once authentication has read them


_NONE = Context()
_CONTEXT: ContextVar[Context | None] = ContextVar("oversight_log_context", default=None)


def current() -> Context:
    return _CONTEXT.get() or _NONE


def begin(**fields: Any) -> None:
    """A new unit of work (a request, a task): forget the previous one's context."""
    _CONTEXT.set(Context(**fields))


def bind(**fields: Any) -> None:
    """Add to the current context (the agent once its key is checked, an audit sequence)."""
    _CONTEXT.set(replace(current(), **fields))


def end() -> None:
    _CONTEXT.set(None)


def request_id_from(header: str | None) -> str:
    if header and _SANE_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def username(request: HttpRequest | None) -> str | None:
    """The person behind `request` if authentication has loaded them already; never queries."""
    if request is None:
        return None
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        # Django's AuthenticationMiddleware: evaluated on first use (sync), or `auser()` (async).
        loaded = user._wrapped
        user = loaded if loaded is not empty else request.__dict__.get("_acached_user")
    # DRF puts the API's caller (an Agent, named by `bind`) in the same place: people only.
    get_username = getattr(user, "get_username", None)
    if get_username is None or not getattr(user, "is_authenticated", False):
        return None
    return cast(str, get_username())


class RequestContextMiddleware:
    """First on both stacks: the request id (the client's `X-Request-ID` if sane, else a new
    one), set for the request's log lines and returned in the response's header. Runs on the
    event loop in async mode: no thread hop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        ident = self._begin(request)
        response: HttpResponseBase = self.get_response(request)
        response[REQUEST_ID_HEADER] = ident
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        ident = self._begin(request)
        get_response = cast(Callable[[HttpRequest], Awaitable[HttpResponseBase]], self.get_response)
        response = await get_response(request)
        response[REQUEST_ID_HEADER] = ident
        return response

    @staticmethod
    def _begin(request: HttpRequest) -> str:
        # Not reset when the response leaves: Django logs a 4xx or 5xx after the middleware
        # returns, and that line needs the context too. The next request (or task) begins anew.
        ident = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        begin(request_id=ident, request=request)
        return ident


# --- Celery ----------------------------------------------------------------------------------


def task_headers(headers: dict[str, Any] | None) -> None:
    """before_task_publish: a task carries the id of the request (or task) that queued it."""
    ident = current().request_id
    if ident and headers is not None:
        headers.setdefault(TASK_HEADER, ident)


def task_started(task: Any) -> None:
    """task_prerun: the task's own context."""
    ident = getattr(task.request, TASK_HEADER, None) or task.request.id
    begin(request_id=ident, task=task.name)


# --- formatting ------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        context = current()
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        person = username(context.request)
        for key, value in (
            ("request_id", context.request_id),
            ("agent", context.agent),
            ("user", person),
            ("audit_sequence", context.audit_sequence),
            ("task", context.task),
        ):
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


FORMATS = ("text", "json")


def config(*, format: str, level: str) -> dict[str, Any]:
    """settings.LOGGING for the format (`text` or `json`) and the root level."""
    formatter: dict[str, Any] = (
        {"()": "oversight.logs.JsonFormatter"}
        if format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "filters": {
            "quiet_periodic_tasks": {"()": "oversight.logfilters.QuietPeriodicTasks"},
            "quiet_database_outage": {"()": "oversight.outage.QuietDatabaseOutage"},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django adds its own console handler when DEBUG is on; one line per event is enough.
            "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "axes": {"level": "WARNING"},
            # The audit PDFs' font subsetting (audit.pdf) says forty lines per PDF at INFO.
            "fontTools": {"level": "WARNING"},
            # One line per request refused while the database is down, not a traceback.
            "django.request": {"filters": ["quiet_database_outage"]},
            # Not a line per run of the every-few-seconds beat tasks (see oversight.logfilters).
            **{
                name: {"filters": ["quiet_periodic_tasks"]}
                for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
            },
        },
    }
