from __future__ import annotations

from django.apps import AppConfig


class SlackConfig(AppConfig):
    name = "slack"
    verbose_name = "Slack"

    def ready(self) -> None:
        from slack import receivers  # noqa: F401  (connects the request_changed receiver)
