"""Login success and failure, which Django reports only through its auth signals.

Everything else is audited by the service function that makes the change; logins have no such
function of ours (Django's LoginView and django-axes own that path), so these receivers are the
one place they are recorded.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest

from audit.events import EventType
from audit.services import record_event


def connect() -> None:
    user_logged_in.connect(record_login, dispatch_uid="audit.login_succeeded")
    user_login_failed.connect(record_login_failure, dispatch_uid="audit.login_failed")


def record_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record_event(
        event_type=EventType.LOGIN_SUCCEEDED,
        actor=user,
        subject=user,
        payload={"remote_addr": _remote_addr(request)},
    )


def record_login_failure(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; only the name is kept. It is
    # whatever was typed, so it is cut short and cleaned before it goes into the chain.
    User = get_user_model()
    username = str(credentials.get(User.USERNAME_FIELD, "")).replace("\x00", "")[:150]
    user_pk = (
        User.objects.filter(username__iexact=username).values_list("pk", flat=True).first()
        if username
        else None
    )
    record_event(
        event_type=EventType.LOGIN_FAILED,
        actor=None,
        subject=("user", str(user_pk)) if user_pk is not None else None,
        payload={
            "username": username,
            "remote_addr": _remote_addr(request),
            # django-axes (connected before us) flags the attempt that trips or hits the lock.
            "locked_out": bool(getattr(request, "axes_locked_out", False)),
        },
    )


def _remote_addr(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    # django-axes resolves the client address behind the configured proxies; prefer it.
    address = getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")
    return str(address)[:64]
