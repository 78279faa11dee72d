"""Standing approvals (`/grants/`)."""

from __future__ import annotations

from django.urls import path

from grants import views

app_name = "grants"

urlpatterns = [
    path("", views.grant_list, name="list"),
    path("<int:grant_id>/revoke", views.revoke, name="revoke"),
]
