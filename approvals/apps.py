from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _close_live_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from approvals import live

    if user is not None:
        live.end_session(user.pk)


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        # A socket must not outlive its session (SPEC §8): logging out closes the person's
        # live connections. Django reports logouts only through this signal.
        user_logged_out.connect(_close_live_sockets, dispatch_uid="approvals.end_live_session")
