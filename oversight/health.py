"""Health endpoints for load balancers and compose health checks.

`/healthz` says the process answers; `/readyz` says its dependencies answer too, and names
the one that does not, so an operator reading a 503 knows where to look. Both answer anyone
(load balancers do not log in), so the answer names the dependency and nothing more; why it
failed (driver messages carry host names, ports, sometimes user names) goes to the server's log.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

_REDIS_TIMEOUT_SECONDS = 1.0


@require_safe
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _log_down(dependency: str, exc: Exception) -> None:
    # One line, no traceback: probes repeat every few seconds for as long as an outage lasts.
    logger.warning("readyz: %s does not answer: %s: %s", dependency, type(exc).__name__, exc)


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        _log_down("database", exc)
        return False
    return True


def _redis_answers() -> bool:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        socket_timeout=_REDIS_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        _log_down("redis", exc)
        return False
    finally:
        client.close()
    return True


@require_safe
@never_cache
@login_not_required
def readyz(request: HttpRequest) -> JsonResponse:
    answers = {"database": _database_answers(), "redis": _redis_answers()}
    down = [name for name, answered in answers.items() if not answered]
    if down:
        return JsonResponse({"status": "unavailable", "down": down}, status=503)
    return JsonResponse({"status": "ok", "database": "ok", "redis": "ok"})
