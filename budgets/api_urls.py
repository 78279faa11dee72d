from __future__ import annotations

from django.urls import path

from budgets import api

urlpatterns = [
    path("costs", api.costs, name="api-costs"),
]
