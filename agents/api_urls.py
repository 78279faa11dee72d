from __future__ import annotations

from django.urls import path

from agents import api

urlpatterns = [
    path("agents/me", api.me, name="api-agents-me"),
]
