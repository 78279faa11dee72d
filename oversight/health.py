"""Health endpoints for load balancers and compose health checks.

`/healthz` says the process answers; `/readyz` says its dependencies answer too, and names
the one that does not, so an operator reading a 503 knows where to look.
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

_REDIS_TIMEOUT_SECONDS = 1.0


@require_safe
@never_cache
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def _check_redis() -> str | None:
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
        socket_timeout=_REDIS_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    finally:
        client.close()
    return None


@require_safe
@never_cache
@login_not_required
def readyz(request: HttpRequest) -> JsonResponse:
    failures = {
        name: error
        for name, error in (("database", _check_database()), ("redis", _check_redis()))
        if error is not None
    }
    if failures:
        names = " and ".join(sorted(failures))
        return JsonResponse(
            {"status": "unavailable", "message": f"{names} not answering", "failures": failures},
            status=503,
        )
    return JsonResponse({"status": "ok", "database": "ok", "redis": "ok"})
