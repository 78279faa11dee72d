"""The monitoring page (`/monitoring/`, SPEC §12)."""

from __future__ import annotations

from django.urls import path

from monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("", views.page, name="page"),
    path("fairness", views.fairness_section, name="fairness"),
    path("overseers", views.overseers_section, name="overseers"),
]
