from __future__ import annotations

from django.urls import path

from approvals import api

urlpatterns = [
    path("approval-requests", api.approval_requests, name="api-approval-requests"),
    path(
        "approval-requests/<uuid:request_id>",
        api.approval_request_detail,
        name="api-approval-request",
    ),
    path(
        "approval-requests/<uuid:request_id>/cancel", api.cancel, name="api-approval-request-cancel"
    ),
]
