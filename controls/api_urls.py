from __future__ import annotations

from django.urls import path

from controls import api

urlpatterns = [path("outcomes", api.outcomes, name="api-outcomes")]
