from __future__ import annotations

from django.apps import AppConfig


class GuardrailsConfig(AppConfig):
    name = "guardrails"
