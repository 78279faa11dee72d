from __future__ import annotations

from django.urls import path

from slack import views

app_name = "slack"

urlpatterns = [
    path("interactions", views.interactions, name="interactions"),
    path("link", views.link_account, name="link"),
]
