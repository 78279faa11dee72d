from __future__ import annotations

from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("", views.agent_list, name="list"),
    path("<slug:name>/", views.agent_detail, name="detail"),
    path("<slug:name>/keys", views.create_key, name="create_key"),
    path("<slug:name>/keys/<int:key_id>/revoke", views.revoke_key, name="revoke_key"),
    path("<slug:name>/webhook-secret", views.rotate_webhook_secret, name="rotate_webhook_secret"),
    path("<slug:name>/status", views.change_status, name="status"),
]
