from __future__ import annotations

from django.urls import path

from approvals import views

app_name = "approvals"

urlpatterns = [
    path("requests/bulk", views.bulk_decide, name="bulk"),
    path("requests/<uuid:request_id>/", views.detail, name="detail"),
    path("requests/<uuid:request_id>/approve", views.approve, name="approve"),
    path("requests/<uuid:request_id>/reject", views.reject, name="reject"),
    path("escalations/", views.escalations, name="escalations"),
    path("escalations/figures/", views.escalation_figures, name="escalation_figures"),
]
