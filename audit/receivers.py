"""Successful logins, which Django reports only through its auth signals.

Everything else is audited by the service function that makes the change; logins have no such
function of ours (Django's LoginView owns that path), so this receiver is where they are
recorded. Failed logins are not audited one by one: the login throttle records each lockout
once (`accounts.throttle`, `accounts.services.record_lockout`).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in
from django.http import HttpRequest

from audit.events import EventType
from audit.services import record_event


def connect() -> None:
    user_logged_in.connect(record_login, dispatch_uid="audit.login_succeeded")


def record_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record_event(
        event_type=EventType.LOGIN_SUCCEEDED,
        actor=user,
        subject=user,
        payload={"remote_addr": _remote_addr(request)},
    )


def _remote_addr(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    # django-axes resolves the client address behind the configured proxies
    # (accounts.throttle.client_address); prefer it.
    address = getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")
    return str(address)[:64]
