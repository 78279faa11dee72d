from __future__ import annotations

from django.urls import path

from guardrails import views

app_name = "guardrails"

urlpatterns = [
    path("", views.policy_list, name="list"),
    path("<int:pk>/", views.policy_detail, name="detail"),
    path("simulate/", views.simulator, name="simulate"),
    path("violations/", views.violations, name="violations"),
]
