from __future__ import annotations

from django.urls import path

from guardrails import api

urlpatterns = [
    path("guardrails/check", api.check, name="api-guardrails-check"),
    path("policies", api.policies, name="api-policies"),
]
