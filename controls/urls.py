"""The autonomy controls, under an agent's page (`/agents/<name>/autonomy…`)."""

from __future__ import annotations

from django.urls import path

from controls import views

app_name = "controls"

urlpatterns = [
    path("<slug:name>/autonomy", views.set_level, name="set_autonomy"),
    path("<slug:name>/autonomy/raise", views.apply_raise, name="raise_autonomy"),
    path("<slug:name>/autonomy/restore", views.restore, name="restore_autonomy"),
]
